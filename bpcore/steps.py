"""One training step of the book's loop, as one call: compiled into one program on JAX.

The book trains with::

    grads = net.gradient(x_batch, t_batch)
    optimizer.update(net.params, grads)

`compile_step` gives the same step as a function, ``loss = step(x_batch, t_batch)``. On most
backends it runs exactly those two lines. On JAX, whose operations are slow one at a time
(each is dispatched, and compiled for each new shape), it traces them once, through the same
layer and optimizer objects, and compiles the whole step (forward, backward, update) with
``jax.jit``. The network's state (parameters, buffers, dropout keys) and the optimizer's state
(arrays, and its scalars such as Adam's step count) go in and come out as arrays on the
device; nothing is read back to the host, and no tracer is left in a layer or the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backends import Array, namespace
from .book import trainable
from .layers import draws_random
from .networks import NetworkState, correct_predictions
from .optimizers import Optimizer

__all__ = ["TrainingStep", "compile_evaluation", "compile_step"]


def compile_step(network: Any, optimizer: Optimizer, *, donate: bool = True) -> TrainingStep:
    """Return the book's training step for ``network`` and ``optimizer`` as one function.

    ``step = compile_step(net, optimizer)``, then ``loss = step(x_batch, t_batch)`` for every
    mini-batch: the gradient of the batch, then ``optimizer.update(net.params, grads)``. The
    batch is checked as `Network.gradient` checks it (no read of its values). Compiled with
    ``jax.jit`` on JAX; the same two calls, eagerly, on every other backend.

    Parameters
    ----------
    network : Network
    optimizer : Optimizer
        Updates ``network.params``; its state (``optimizer.state()``) is kept up to date.
    donate : bool, default True
        On JAX, let the step reuse the memory of the parameters and optimizer state it
        replaces. Arrays taken from ``net.params`` before a step are then invalid after it;
        read them again from ``net.params``.
    """
    return TrainingStep(network, optimizer, donate=donate)


class TrainingStep:
    """The book's training step as one call; see `compile_step`.

    Parameters
    ----------
    network, optimizer, donate
        As for `compile_step`.
    checked : bool, default True
        Check each batch as `Network.gradient` does; a `Trainer`, which checks its datasets
        once, passes False.

    Attributes
    ----------
    last_hits : array or None
        How many samples of the last batch the network's scores got right, a 0-d array on the
        device (the scores of the forward pass before the update).
    """

    def __init__(
        self, network: Any, optimizer: Optimizer, *, donate: bool = True, checked: bool = True
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a bpcore optimizer, got {optimizer!r}")
        # Any: the compiled step also uses a bpcore network's state (has_state says so).
        self.network: Any = trainable(network)
        self.optimizer = optimizer
        self.checked = checked
        self.last_hits: Array | None = None
        self._program: Callable[..., Any] | None = None
        if self.network.has_state:  # a state to trace: one compiled program where it pays
            self._program = self.network.backend_info.compile(
                self._pure, donate_argnums=(0,) if donate else ()
            )
        self._host_scalars: dict[str, Any] | None = None
        self._device_scalars: dict[str, Array] = {}

    def __repr__(self) -> str:
        return f"TrainingStep({self.network!r}, {self.optimizer!r}, compiled={self.compiled})"

    @property
    def compiled(self) -> bool:
        """Whether the step runs as one compiled program (JAX)."""
        return self._program is not None

    def __call__(self, x: Array, t: Array, indices: Array | None = None) -> Array:
        """Train on one batch; return its loss (0-d, on the device, before the update).

        With ``indices``, ``x`` and ``t`` are a whole (checked) dataset on the device and the
        batch is ``take(x, indices)``: gathered inside the compiled program on JAX.
        """
        with self.network.backend_info.activate():
            return self.run(x, t, indices)

    def run(self, x: Array, t: Array, indices: Array | None = None) -> Array:
        """`__call__` with the network's device already current (a `Trainer`'s loop makes it
        current once for all its steps)."""
        net = self.network
        if self._program is not None:
            if self.checked:  # as gradient() checks, before the program runs
                x, t = net.check_batch(x, t)
                net.check_layers()
            return self._compiled_call(x, t, indices)
        # The book's two lines.
        if indices is not None:
            x, t = _gather(x, t, indices)
        grads = net.gradient(x, t) if self.checked else net.unchecked_gradient(x, t)
        self.optimizer.update(net.params, grads)
        self.last_hits = None
        return net.last_loss

    def hits(self) -> Array:
        """How many samples of the last batch were classified right (0-d, on the device)."""
        if self.last_hits is not None:
            return self.last_hits
        last = self.network.last_layer
        return correct_predictions(last.y, last.t)

    # -- the compiled step ----------------------------------------------------------------------

    def _generators(self) -> list[Any]:
        """The random generators of the layers whose state is a key to carry (JAX's)."""
        return [
            layer.generator
            for layer in self.network.layers.values()
            if draws_random(layer) and hasattr(layer.generator, "key")
        ]

    def _scalars(self) -> dict[str, Array]:
        """The optimizer's scalars (learning rate, step count, ...) as arrays on the device.

        Kept from the last step while their Python values are those the host expects, so that
        a step sends nothing to the device; a value the user changed (a new learning rate, a
        loaded state) is sent once.
        """
        _, scalars = self.optimizer.state()
        numbers = {k: v for k, v in scalars.items() if isinstance(v, (int, float))}
        if numbers != self._host_scalars:
            backend, dtype = self.network.backend_info, self.network.dtype_name
            for key, value in numbers.items():
                if self._host_scalars is None or self._host_scalars.get(key) != value:
                    host = np.asarray(value, dtype=dtype if isinstance(value, float) else None)
                    self._device_scalars[key] = backend.param_asarray(host)
            self._host_scalars = numbers
        return dict(self._device_scalars)

    def _compiled_call(self, x: Array, t: Array, indices: Array | None) -> Array:
        net, optimizer = self.network, self.optimizer
        arrays = self._optimizer_arrays()
        generators = self._generators()
        scaler = net.loss_scaler
        if scaler is not None:
            scaler.start(next(iter(net.params.values())))
        state = {
            "network": net.state(),
            "keys": [g.key for g in generators],
            "optimizer": arrays,
            "scalars": self._scalars(),
            "scaler": None if scaler is None else scaler.state(),
        }
        assert self._program is not None
        new, loss, hits = self._program(state, x, t, indices)
        net.set_state(new["network"])  # the same shapes, dtypes and device, checked when traced
        if scaler is not None:
            scaler.load_state(new["scaler"])
        for generator, key in zip(generators, new["keys"], strict=True):
            generator.key = key
        # The host's copy of the scalars moves as the device's did: the optimizer's own update,
        # of no parameters, does the bookkeeping (Adam's step count) in Python.
        optimizer.update({}, {})
        optimizer.load_state(new["optimizer"], {})  # the arrays; the scalars are up to date
        self._host_scalars = {k: getattr(optimizer, k) for k in new["scalars"]}
        self._device_scalars = dict(new["scalars"])
        net.last_loss = loss
        self.last_hits = hits
        return loss

    def _optimizer_arrays(self) -> dict[str, Array]:
        """The optimizer's state arrays, started as zeros before its first update.

        The book's optimizers keep one array per parameter, of its shape, in each dict
        attribute (``v``, ``h``, ``m``), and their first update gives the same values from
        zeros as from nothing. Starting from zeros keeps the compiled program's inputs the
        same from the first step on: one compilation instead of two.
        """
        arrays, _ = self.optimizer.state()
        params = self.network.params
        xp = self.network.backend_info.param_xp
        for name, value in vars(self.optimizer).items():
            if isinstance(value, dict) and not value:
                arrays.update({f"{name}/{key}": xp.zeros_like(p) for key, p in params.items()})
        return arrays

    def _pure(
        self, state: dict[str, Any], x: Array, t: Array, indices: Array | None
    ) -> tuple[Any, Array, Array]:
        """The step as a function of the state: traced (by ``jax.jit``), not run per step.

        Binds the traced state into the network and the optimizer, runs the book's two lines
        and collects the new state; `Network.using_state` then puts every object back as it
        was, so that no tracer stays in a layer, a generator or the optimizer.
        """
        net, optimizer = self.network, self.optimizer
        generators = self._generators()
        scaler = net.loss_scaler
        others = [*generators, optimizer, *([] if scaler is None else [scaler])]
        with net.using_state(state["network"], layers=True, others=others):
            for generator, key in zip(generators, state["keys"], strict=True):
                generator.key = key
            optimizer.load_state(state["optimizer"], state["scalars"])
            if scaler is not None:
                scaler.load_state(state["scaler"])
            if indices is not None:
                x, t = _gather(x, t, indices)
            grads = net.unchecked_gradient(x, t)
            last = net.last_layer
            loss, hits = net.last_loss, correct_predictions(last.y, last.t)
            params = dict(net.params)
            optimizer.update(params, dict(grads))  # a plain dict: no read of the flag
            arrays, scalars = optimizer.state()
            finite = getattr(grads, "finite", None)
            if finite is not None:  # an overflowed step, skipped on the device
                xp = net.backend_info.param_xp
                old, old_arrays = state["network"].params, state["optimizer"]
                params = {k: xp.where(finite, v, old[k]) for k, v in params.items()}
                arrays = {k: xp.where(finite, v, old_arrays[k]) for k, v in arrays.items()}
            new = {
                "network": NetworkState(params, net.buffers),
                "keys": [g.key for g in generators],
                "optimizer": arrays,
                "scalars": {k: scalars[k] for k in state["scalars"]},
                "scaler": None if scaler is None else scaler.state(),
            }
        return new, loss, hits


def _gather(x: Array, t: Array, indices: Array) -> tuple[Array, Array]:
    xp = namespace(x)
    return xp.take(x, indices, axis=0), namespace(t).take(t, indices, axis=0)


def compile_evaluation(network: Any) -> Callable[[Array, Array], tuple[Array, Array]]:
    """``network.unchecked_evaluation`` (hits and loss, inference mode), compiled on JAX.

    For evaluation loops: on JAX each operation run eagerly is compiled for each new shape,
    which costs more than the evaluation itself on small data. Elsewhere, as it is.
    """
    net: Any = trainable(network)
    program = None
    if net.has_state:

        def pure(state: NetworkState, x: Array, t: Array) -> tuple[Array, Array]:
            with net.using_state(state, layers=True):
                return net.unchecked_evaluation(x, t)  # type: ignore[no-any-return]

        program = net.backend_info.compile(pure)
    if program is None:
        return net.unchecked_evaluation  # type: ignore[no-any-return]

    def evaluation(x: Array, t: Array) -> tuple[Array, Array]:
        assert program is not None
        return program(net.state(), x, t)  # type: ignore[no-any-return]

    return evaluation
