"""The book's optimizers, each with ``update(params, grads)``, on any backend.

Every update goes through `_add`: where the namespace allows writing into arrays (NumPy, CuPy,
PyTorch, array-api-strict) the parameter is updated in place, with no new allocation per step;
where it does not (JAX) a new array is assigned with ``params[key] = ...``, which a network's
``Params`` hands to its layer. So the layers always see the new values, and nothing depends on
in-place updates being possible. Optimizer state (velocities, moments) lives on the parameters'
device.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

import array_api_compat

from ._namespace import namespace
from .backends import Array

__all__ = ["OPTIMIZERS", "SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "Optimizer", "RMSprop"]

Params = MutableMapping[str, Array]
Grads = MutableMapping[str, Array]


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


def _add(params: Params, key: str, delta: Array) -> None:
    """``params[key] += delta``, in place where the array allows it."""
    p = params[key]
    if array_api_compat.is_writeable_array(p):
        p += delta
        params[key] = p  # the same object: a network's Params accepts it without a copy
    else:
        params[key] = p + delta


class Optimizer:
    """Base class: ``update(params, grads)`` changes ``params`` by one step.

    Parameters
    ----------
    lr : float
        The learning rate, positive.
    """

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = _positive(lr, "lr")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not isinstance(v, dict))
        return f"{type(self).__name__}({args})"

    def update(self, params: Params, grads: Grads) -> None:
        """Apply one step to every parameter in ``params`` from its gradient in ``grads``."""
        missing = [k for k in params if k not in grads]
        if missing:
            raise KeyError(f"grads has no entry for parameter(s) {missing}")
        for key in params:
            self._step(params, key, grads[key])

    def _step(self, params: Params, key: str, grad: Array) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent: ``W -= lr * dW``."""

    def _step(self, params: Params, key: str, grad: Array) -> None:
        _add(params, key, -self.lr * grad)


class Momentum(Optimizer):
    """SGD with momentum: ``v = momentum * v - lr * dW; W += v``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = _fraction(momentum, "momentum")
        self.v: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        v = self.v.get(key)
        v = -self.lr * grad if v is None else self.momentum * v - self.lr * grad
        self.v[key] = v
        _add(params, key, v)


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient, in the book's form (Sutskever et al.)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = _fraction(momentum, "momentum")
        self.v: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        m, lr = self.momentum, self.lr
        v = self.v.get(key)
        v = -lr * grad if v is None else m * v - lr * grad
        self.v[key] = v
        _add(params, key, m * m * v - (1 + m) * lr * grad)


class AdaGrad(Optimizer):
    """AdaGrad: ``h += dW**2; W -= lr * dW / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        h = self.h.get(key)
        h = grad * grad if h is None else h + grad * grad
        self.h[key] = h
        _add(params, key, -self.lr * grad / (namespace(h).sqrt(h) + 1e-7))


class RMSprop(Optimizer):
    """RMSprop: ``h = d * h + (1 - d) * dW**2; W -= lr * dW / (sqrt(h) + 1e-7)``, d = decay_rate."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = _fraction(decay_rate, "decay_rate")
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        h = self.h.get(key)
        d = self.decay_rate
        h = (1 - d) * grad * grad if h is None else d * h + (1 - d) * grad * grad
        self.h[key] = h
        _add(params, key, -self.lr * grad / (namespace(h).sqrt(h) + 1e-7))


class Adam(Optimizer):
    """Adam (Kingma and Ba), with the book's bias correction folded into the step size."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1 = _fraction(beta1, "beta1")
        self.beta2 = _fraction(beta2, "beta2")
        self.iter = 0
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}

    def update(self, params: Params, grads: Grads) -> None:
        """Apply one Adam step to every parameter."""
        self.iter += 1
        self._lr_t = (
            self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        )
        super().update(params, grads)

    def _step(self, params: Params, key: str, grad: Array) -> None:
        b1, b2 = self.beta1, self.beta2
        m, v = self.m.get(key), self.v.get(key)
        m = (1 - b1) * grad if m is None else m + (1 - b1) * (grad - m)
        v = (1 - b2) * grad * grad if v is None else v + (1 - b2) * (grad * grad - v)
        self.m[key], self.v[key] = m, v
        _add(params, key, -self._lr_t * m / (namespace(v).sqrt(v) + 1e-7))


#: Optimizers by the names ``Trainer(optimizer=...)`` and ``bpcore train --optimizer`` accept.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
