"""The book's optimizers, each with ``update(params, grads)``, on any backend.

Each optimizer updates its own state arrays (velocities, moments) and fresh temporaries with
augmented assignments (``v *= momentum``): NumPy, CuPy and PyTorch update those in place, which
saves an allocation and a pass over memory per operation, while on a library whose arrays are
immutable (JAX) Python falls back to ``v = v * momentum``, so the same line serves both. The
gradients passed in are never written to.

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

from .backends import Array, backend_class_of, namespace

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
    if backend_class_of(p).writes_in_place(p):
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
        """Apply one step to every parameter in ``params`` from its gradient in ``grads``.

        Gradients that say they overflowed (`bpcore.precision.Gradients`, from a network
        with loss scaling) leave the parameters and the state arrays as they are: the step is
        skipped, as ``GradScaler.step`` skips it, after one read of the flag (which waits for
        the device, as ``GradScaler``'s does). The step count (Adam's) still moves, as it does
        in a compiled step (`bpcore.compile_step`), which cannot read the flag.
        """
        missing = [k for k in params if k not in grads]
        if missing:
            raise KeyError(f"grads has no entry for parameter(s) {missing}")
        finite = getattr(grads, "finite", None)
        if finite is not None and params and not bool(finite):
            return
        if params:
            # Lazy gradients (Dask's) for ordinary parameters: computed together, in one pass.
            values = backend_class_of(grads[next(iter(params))]).compute(
                *(grads[k] for k in params)
            )
            grads = dict(zip(params, values, strict=True))
        for key in params:
            self._step(params, key, grads[key])

    def _step(self, params: Params, key: str, grad: Array) -> None:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """The state: arrays (``"m/W1"``, ...) and JSON-able scalars, for checkpoints."""
        arrays, scalars = {}, {}
        for name, value in vars(self).items():
            if isinstance(value, dict):
                arrays.update({f"{name}/{key}": array for key, array in value.items()})
            elif not name.startswith("_"):
                scalars[name] = value
        return arrays, scalars

    def load_state(self, arrays: dict[str, Array], scalars: dict[str, Any]) -> None:
        """Restore what `state` returned (arrays already on the parameters' device)."""
        for name, value in scalars.items():
            setattr(self, name, value)
        for name, value in vars(self).items():
            if isinstance(value, dict):
                value.clear()
                prefix = f"{name}/"
                value.update(
                    {k[len(prefix) :]: a for k, a in arrays.items() if k.startswith(prefix)}
                )


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

    def _velocity(self, key: str, grad: Array) -> Array:
        """``v = momentum * v - lr * dW`` for one parameter (kept in ``self.v``), returned."""
        v = self.v.get(key)
        if v is None:
            v = -self.lr * grad
        else:
            v *= self.momentum
            v -= self.lr * grad
        self.v[key] = v
        return v

    def _step(self, params: Params, key: str, grad: Array) -> None:
        _add(params, key, self._velocity(key, grad))


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, as the book's ``common/optimizer.py`` writes it.

    ``W += momentum**2 * v - (1 + momentum) * lr * dW``, with the velocity ``v`` of the steps
    before this one; then ``v = momentum * v - lr * dW``. (Sutskever et al.'s form: the first
    step moves ``W`` by ``-(1 + momentum) * lr * dW``.)
    """

    def _step(self, params: Params, key: str, grad: Array) -> None:
        m, lr = self.momentum, self.lr
        delta = grad * (-(1 + m) * lr)
        v = self.v.get(key)
        if v is not None:  # no velocity before the first step
            delta += (m * m) * v
        _add(params, key, delta)
        self._velocity(key, grad)


def _scaled_by_root(grad: Array, h: Array, scale: float) -> Array:
    """``scale * grad / (sqrt(h) + 1e-7)``, with one temporary array."""
    step = namespace(h).sqrt(h)
    step += 1e-7
    step = grad / step
    step *= scale
    return step


class AdaGrad(Optimizer):
    """AdaGrad: ``h += dW**2; W -= lr * dW / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        h = self.h.get(key)
        if h is None:
            h = grad * grad
        else:
            h += grad * grad
        self.h[key] = h
        _add(params, key, _scaled_by_root(grad, h, -self.lr))


class RMSprop(Optimizer):
    """RMSprop: ``h = d * h + (1 - d) * dW**2; W -= lr * dW / (sqrt(h) + 1e-7)``, d = decay_rate."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = _fraction(decay_rate, "decay_rate")
        self.h: dict[str, Array] = {}

    def _step(self, params: Params, key: str, grad: Array) -> None:
        d = self.decay_rate
        g2 = grad * grad
        g2 *= 1 - d
        h = self.h.get(key)
        if h is None:
            h = g2
        else:
            h *= d
            h += g2
        self.h[key] = h
        _add(params, key, _scaled_by_root(grad, h, -self.lr))


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
        # ** 0.5 rather than math.sqrt: a compiled step (bpcore.compile_step) traces this line
        # with the step count as an array.
        self._lr_t = self.lr * (1.0 - self.beta2**self.iter) ** 0.5 / (1.0 - self.beta1**self.iter)
        super().update(params, grads)

    def _step(self, params: Params, key: str, grad: Array) -> None:
        b1, b2 = self.beta1, self.beta2
        m, v = self.m.get(key), self.v.get(key)
        g2 = grad * grad
        g2 *= 1 - b2
        if m is None or v is None:
            m, v = (1 - b1) * grad, g2
        else:  # m += (1 - b1) * (grad - m), written as b1 * m + (1 - b1) * grad
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += g2
        self.m[key], self.v[key] = m, v
        step = namespace(v).sqrt(v)
        step += 1e-7
        step = m / step
        step *= -self._lr_t
        _add(params, key, step)


#: Optimizers by the names ``Trainer(optimizer=...)`` and ``bpcore train --optimizer`` accept.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
