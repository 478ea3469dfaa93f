"""A network's state, and the one way bpcore saves and restores it.

The state a network computes with is its parameters and its buffers: `NetworkState`, one value.
`StateMixin` gives `bpcore.networks.Network` what works on it: reading it (`state`,
``buffers``), setting it (`set_state`; `load_arrays` from a checkpoint's host arrays, checked),
and swapping one in for a while (`using_state`, and `using_dtype` on it). `using_state` is the
one save-and-restore of bpcore: gradient checks (a float64 copy, perturbed parameters),
summaries (a sample pass) and compiled steps (traced values) are all written on it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..backends import Array, Backend, resolve_backend, to_numpy
from ..layers import buffer_names, draws_random
from .building import checked_host
from .params import Params

__all__ = ["NetworkState", "StateMixin"]


class NetworkState(NamedTuple):
    """What a network computes with, as one value: its parameters and its buffers.

    Two dicts of arrays, by the keys of ``net.params`` and ``net.buffers`` (the arrays
    themselves, not copies). A named tuple, so JAX takes it as it is into a compiled program
    and back. `Network.state` gives it; `Network.using_state` swaps one in and restores.
    """

    params: dict[str, Array]
    buffers: dict[str, Array]

    def astype(self, xp: Any, dtype: Any) -> NetworkState:
        """The same state cast to ``dtype`` (new arrays of the namespace ``xp``)."""
        return NetworkState(
            {key: xp.astype(value, dtype) for key, value in self.params.items()},
            {key: xp.astype(value, dtype) for key, value in self.buffers.items()},
        )


class StateMixin:
    """The state half of `bpcore.networks.Network`: its buffers, its state, and their swaps.

    Works on the attributes a network has (its ``params``, ``layers``, ``last_layer``,
    ``backend_info``, dtype and last loss).
    """

    params: Params
    layers: Mapping[str, Any]
    last_layer: Any
    backend_info: Backend
    last_loss: Array | None
    _dtype_name: str
    _precision: Any

    @property
    def precision(self) -> str | None:
        """The mixed precision (``"mixed_float16"`` or ``"mixed_bfloat16"``), or None: the
        passes then compute in `dtype_name`."""
        return None if self._precision is None else self._precision.name

    @property
    def compute_dtype_name(self) -> str:
        """The dtype the forward and backward passes compute in, by name: that of the
        mixed precision, else `dtype_name`."""
        return self._dtype_name if self._precision is None else self._precision.compute

    def load_arrays(
        self, params: Mapping[str, np.ndarray], buffers: Mapping[str, np.ndarray] | None = None
    ) -> None:
        """Set parameters and buffers from host arrays (a checkpoint's), all checked first.

        Each array must have the shape of the value it replaces; it is cast to the network's
        dtype and copied to its device. Nothing is set if any array does not fit.
        """
        backend, dtype = self.backend_info, self._dtype_name
        buffers = dict(buffers or {})
        current = self.buffers
        unknown = [key for key in buffers if key not in current]
        if unknown:
            raise ValueError(f"{type(self).__name__} has no buffer(s) {unknown}")
        for key, value in buffers.items():
            if tuple(value.shape) != tuple(current[key].shape):
                raise ValueError(
                    f"buffer {key} has shape {tuple(value.shape)}, expected "
                    f"{tuple(current[key].shape)}"
                )
        shapes = {key: tuple(value.shape) for key, value in self.params.items()}
        host = checked_host(type(self).__name__, shapes, params, dtype) if params else {}
        with backend.activate():
            self.params.update({k: backend.param_array(a, dtype) for k, a in host.items()})
            self.set_buffers({k: backend.param_array(a, dtype) for k, a in buffers.items()})

    @property
    def buffers(self) -> dict[str, Array]:
        """Arrays the layers keep that are not parameters, by ``"<layer>/<attribute>"``.

        The running statistics of a batch normalization are buffers: saved in checkpoints and
        restored with the parameters, but not trained by gradients. Layers name theirs in a
        ``buffer_names`` attribute; the book's chapter 5 layers have none.
        """
        return {
            f"{name}/{attribute}": getattr(layer, attribute)
            for name, layer in self.layers.items()
            for attribute in buffer_names(layer)
        }

    def set_buffers(self, values: Mapping[str, Array]) -> None:
        """Set buffers by the keys of `buffers` (arrays of the right shape, dtype and device)."""
        for key, value in values.items():
            name, attribute = key.rsplit("/", 1)
            setattr(self.layers[name], attribute, value)

    def state(self) -> NetworkState:
        """The parameters and buffers as one value (the arrays themselves, not copies)."""
        return NetworkState(dict(self.params), self.buffers)

    def set_state(self, state: NetworkState) -> None:
        """Bind a state's parameters and buffers, without the checks of ``params[key] = W``.

        For states built from the network's own (a cast, a compiled step's result, JAX
        tracers), which have the shapes the layers expect.
        """
        for key, value in state.params.items():
            if self.params[key] is not value:
                self.params.bind(key, value)
        self.set_buffers(state.buffers)

    @contextlib.contextmanager
    def using_state(
        self, state: NetworkState | None = None, *, layers: bool = False, others: Sequence[Any] = ()
    ) -> Iterator[NetworkState]:
        """A context that computes with ``state`` (if given) and restores the network after.

        The one save-and-restore of bpcore (Thinc's ``Model.use_params`` is the model): on
        leaving, however the context ends, the parameters and buffers are the arrays they were
        (the same objects), and so are `dtype_name` and `last_loss`. With ``layers=True``, so
        is everything the layers, the loss layer and ``others`` (generators, an optimizer)
        keep, attribute for attribute (dict attributes copied): what passes that are not the
        user's left in them (inputs, masks, gradients, tracers) is undone. Yields the state
        saved, whose buffers a numerical gradient starts every pass from.
        """
        saved, dtype_name, last_loss = self.state(), self._dtype_name, self.last_loss
        objects = [*self.layers.values(), self.last_layer, *others] if layers else []
        kept = [
            (obj, {k: dict(v) if isinstance(v, dict) else v for k, v in vars(obj).items()})
            for obj in objects
        ]
        try:
            if state is not None:
                self.set_state(state)
            yield saved
        finally:
            for obj, attributes in kept:
                vars(obj).clear()
                vars(obj).update(attributes)
            self.set_state(saved)
            self._dtype_name, self.last_loss = dtype_name, last_loss

    def to(
        self, backend: Any = None, device: Any = None, dtype: Any = None, precision: Any = ...
    ) -> Any:
        """The same network (class, configuration, parameters, buffers) on another backend,
        device or dtype; this one is untouched.

        Parameters
        ----------
        backend : str, module or Backend, optional
            As for the constructors; by default this network's backend.
        device : optional
            By default this network's device when the backend stays, else the new backend's
            default device.
        dtype : {"float32", "float64", "float16", "bfloat16"}, optional
            By default this network's dtype.
        precision : {None, "mixed_float16", "mixed_bfloat16"}, optional
            By default this network's precision; None for none.

        Notes
        -----
        The arrays go through the host (a NumPy copy each), so the copy is exact, whatever
        the two backends. The layers of the copy keep nothing from this network's last pass.
        Its dropout layers go on from this network's generators where the library and the
        kind of device stay (the copy draws the masks this network would draw next); elsewhere
        their generators are seeded from this network's generator state, so the same network
        gives the same copy. This network's generators are read, never advanced.
        """
        stays = device is None and backend is not None and not isinstance(backend, Backend)
        if stays and resolve_backend(backend).name == self.backend_info.name:
            backend = self.backend_info  # the same library named: stay on this device
        if backend is None:
            backend = self.backend_info
            if device is not None:  # the same library on another device
                backend = self.backend_info.name
        host = {key: to_numpy(value) for key, value in self.params.items()}
        buffers = {key: to_numpy(value) for key, value in self.buffers.items()}
        copy = type(self).from_arrays(  # type: ignore[attr-defined]
            self.config,  # type: ignore[attr-defined]
            host,
            buffers=buffers,
            backend=backend,
            device=device,
            dtype=self._dtype_name if dtype is None else dtype,
            precision=self.precision if precision is ... else precision,
        )
        _carry_generators(self, copy)
        return copy

    @contextlib.contextmanager
    def using_dtype(self, dtype_name: str) -> Iterator[Any]:
        """A context in which this network computes in another dtype (for gradient checks).

        Its state, cast, is swapped in by `using_state`, which gives the network's own arrays
        back on leaving, with the same objects and values, however the context ends.
        """
        if dtype_name == self._dtype_name and self._precision is None:
            yield self
            return
        cast = self.state().astype(self.backend_info.param_xp, self.backend_info.dtype(dtype_name))
        precision = self._precision
        with self.using_state(cast):
            self._dtype_name, self._precision = dtype_name, None  # no mixed passes in there
            try:
                yield self
            finally:
                self._precision = precision


def _carry_generators(source: Any, copy: Any) -> None:
    """Start ``copy``'s random layers where ``source``'s are, as far as their libraries allow.

    A generator's state belongs to its library and kind of device: there it is set as it is.
    Elsewhere the state seeds the new generator (through a hash), so that the copy is
    reproducible. ``source``'s generators are read, not advanced.
    """
    same = (source.backend, source.backend_info.device_name) == (
        copy.backend,
        copy.backend_info.device_name,
    )
    for name, layer in source.layers.items():
        generator = layer.generator if draws_random(layer) else None
        if generator is None or not hasattr(generator, "get_state"):
            continue  # CuPy's generator cannot say where it is
        state = np.asarray(generator.get_state())
        target = copy.layers[name]
        with copy.backend_info.activate():
            if same:
                target.generator.set_state(state)
            else:
                digest = hashlib.sha256(state.tobytes()).digest()
                seed = np.random.SeedSequence(int.from_bytes(digest[:16], "little"))
                target.generator = copy.backend_info.random_generator(seed)
