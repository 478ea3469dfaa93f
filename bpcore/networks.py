"""The book's fully connected networks, and the `Network` base class every network shares.

`TwoLayerNet` (chapter 5), `MultiLayerNet` and `MultiLayerNetExtend` (chapter 6) are here; the
convolutional ones are in `bpcore.convnets`.

A network is data: an ordered dict of layers (``net.layers``), the loss layer
(``net.last_layer``), and the parameters those layers own (``net.params``, bound to the layers:
assigning ``net.params["W1"] = new_W`` rebinds the layer too, so optimizers may replace arrays, as
they must on immutable backends). Arrays a layer keeps that are not parameters (the running
statistics of a batch normalization) are its *buffers* (``net.buffers``); checkpoints save both.

A network class is short: its constructor checks its arguments into a JSON-able ``config`` and
draws initial weights on the host, `param_shapes` says which parameters a config has, and `build`
lists the layers around given parameters. Everything else (the book's ``predict``, ``loss``,
``accuracy``, ``gradient``, ``numerical_gradient``, checkpoints, the float64 gradient check)
comes from `Network` and works for any such class.

A network is built for one backend, device and dtype, and checks at every public entry point
that what it is given belongs there (see ``_checks``). The ``unchecked_*`` methods are the same
computations on a batch that `check_batch` has already validated, for training loops and
gradient checks that validate their data once.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import array_api_compat
import numpy as np

from . import _checks, checkpoints
from .backends import Array, Backend, resolve_backend
from .gradcheck import STEP
from .initializers import initial_weights
from .layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss, Tanh

__all__ = [
    "ACTIVATIONS",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Network",
    "Params",
    "TwoLayerNet",
    "correct_predictions",
]

#: Activation layers by the names ``MultiLayerNet(activation=...)`` accepts.
ACTIVATIONS: dict[str, type[Relu] | type[Sigmoid] | type[Tanh]] = {
    "relu": Relu,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def correct_predictions(y: Array, t: Array) -> Array:
    """How many rows of scores ``y`` pick the class of ``t`` (labels or one-hot), as a 0-d array.

    Stays on the device: training loops add these up and read them back once.
    """
    xp = array_api_compat.array_namespace(y, t)
    labels = t if t.ndim == 1 else xp.argmax(t, axis=1)
    predicted = xp.argmax(y, axis=1)
    return xp.sum(
        xp.astype(predicted == xp.astype(labels, predicted.dtype), _checks.index_dtype(xp))
    )


class Params(dict[str, Array]):
    """A network's parameters: a dict whose values stay bound to the network's layers.

    Setting ``params["W1"] = W`` checks that ``W`` has the shape, dtype, backend and device of the
    value it replaces, then hands it to the layer that uses it. ``update`` and ``|=`` check every
    value before setting any. Keys cannot be added or removed.
    """

    def __init__(self, values: Mapping[str, Array], bindings: Mapping[str, tuple[Any, str]]):
        super().__init__(values)
        self._bindings = dict(bindings)

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's own pickling would set items before _bindings exists.
        return (type(self), (dict(self), self._bindings))

    def _check(self, key: str, value: Array) -> None:
        if key not in self._bindings:
            raise KeyError(f"{key!r} is not a parameter of this network; it has {list(self)}")
        old = self[key]
        if not array_api_compat.is_array_api_obj(value):
            raise TypeError(f"params[{key!r}] must be an array, got {type(value).__name__}")
        if array_api_compat.array_namespace(value) is not array_api_compat.array_namespace(old):
            raise TypeError(
                f"params[{key!r}] must be an array of {type(old).__module__.split('.')[0]}, like "
                f"the value it replaces; got one of {type(value).__module__.split('.')[0]}"
            )
        if array_api_compat.device(value) != array_api_compat.device(old):
            raise ValueError(f"params[{key!r}] must be on the network's device")
        if tuple(value.shape) != tuple(old.shape) or value.dtype != old.dtype:
            raise ValueError(
                f"params[{key!r}] must have shape {tuple(old.shape)} and dtype {old.dtype}, got "
                f"shape {tuple(value.shape)} and dtype {value.dtype}"
            )

    def bind(self, key: str, value: Array) -> None:
        """Set ``params[key]`` and its layer's attribute without the checks of ``[key] =``.

        For code that swaps in a value it built from the old one (a perturbed copy, a cast, a
        JAX tracer, which the checks would not pass); the caller restores the original.
        """
        layer, attribute = self._bindings[key]
        setattr(layer, attribute, value)
        super().__setitem__(key, value)

    def layer_of(self, key: str) -> tuple[Any, str]:
        """The layer that uses ``params[key]``, and the attribute it holds it in."""
        return self._bindings[key]

    def __setitem__(self, key: str, value: Array) -> None:
        if key in self._bindings and value is dict.__getitem__(self, key):
            return  # updated in place (params[key] += ...): nothing to check or rebind
        self._check(key, value)
        self.bind(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several parameters; all are checked before any is set."""
        new = dict(*args, **kwargs)
        for key, value in new.items():
            self._check(key, value)
        for key, value in new.items():
            self.bind(key, value)

    def __ior__(self, other: Any) -> Params:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Array:
        """Return ``params[key]``; parameters cannot be added."""
        return self[key]

    def _fixed(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a network's parameters cannot be removed (raises `TypeError`)."""
        raise TypeError("a network's parameters cannot be removed")

    __delitem__ = pop = popitem = clear = _fixed


_F = TypeVar("_F", bound=Callable[..., Any])


def _on_device(method: _F) -> _F:
    """Run a public method with the network's device current (see `Backend.activate`)."""

    @functools.wraps(method)
    def wrapper(self: Network, *args: Any, **kwargs: Any) -> Any:
        with self.backend_info.activate():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Network:
    """The book's network API over an ordered dict of layers; the base of every network.

    Subclasses provide a constructor, `param_shapes` and `build`; see the module's docstring.
    A subclass is registered by its name for `bpcore.load`.

    Attributes
    ----------
    params : Params
        The parameters, by the book's names (``"W1"``, ``"b1"``, ...), bound to the layers.
    layers : OrderedDict
        The layers in order, by the book's names.
    last_layer : SoftmaxWithLoss
        The loss layer; ``lastLayer`` is the same object, under the name of the book's ch. 5.
    backend_info : Backend
        The backend and device the arrays live on.
    """

    params: Params
    layers: OrderedDict[str, Any]
    last_layer: SoftmaxWithLoss
    backend_info: Backend
    #: The loss (0-d array, weight decay included) of the last `gradient` call.
    last_loss: Array | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        checkpoints.register_network(cls)

    def __init__(
        self,
        config: Mapping[str, Any],
        host_params: Mapping[str, np.ndarray],
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: Any = None,
    ) -> None:
        resolved = resolve_backend(backend, device)
        self._assemble(config, resolved, resolved.resolve_dtype(dtype), host_params, {}, seed)

    # -- what a network class says about itself -----------------------------------------------

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """The parameters a network of this ``config`` has: name -> shape, in the book's order."""
        raise NotImplementedError

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """The layers of a network of this ``config``, in order, holding the given ``params``."""
        raise NotImplementedError

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        config: Mapping[str, Any],
        params: Mapping[str, np.ndarray],
        *,
        buffers: Mapping[str, np.ndarray] | None = None,
        backend: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> Network:
        """Build a network of this class from its ``config`` and saved host arrays.

        No weights are drawn: the arrays are checked against `param_shapes`, copied to the
        backend and device, and the layers are built around them (how `bpcore.load` works).

        Parameters
        ----------
        config : mapping
            As ``net.config`` returned it.
        params, buffers : mapping of str to numpy.ndarray
            As ``net.params`` and ``net.buffers`` held them (``bpcore.to_numpy`` of each).
        backend, device
            As for the constructors.
        dtype : str, optional
            The network's dtype; by default that of the arrays.

        Raises
        ------
        ValueError
            When an array is missing or has another shape than the config says.
        """
        resolved = resolve_backend(backend, device)
        if dtype is None:
            dtype = str(next(iter(params.values())).dtype) if params else "float32"
        net = cls.__new__(cls)
        net._assemble(config, resolved, resolved.resolve_dtype(dtype), params, buffers or {}, None)
        return net

    def _assemble(
        self,
        config: Mapping[str, Any],
        backend: Backend,
        dtype_name: str,
        host_params: Mapping[str, np.ndarray],
        host_buffers: Mapping[str, np.ndarray],
        seed: Any,
    ) -> None:
        """Check the host arrays, copy them to the device, build and bind the layers.

        Layers that draw random numbers (``generator``: dropout) get generators on the device,
        seeded from ``seed`` (a stream apart from the one that drew the weights).
        """
        self._config = dict(config)
        self.backend_info = backend
        self._dtype_name = dtype_name
        expected = self.param_shapes(self._config)
        with backend.activate():  # CuPy allocates on the current device, whatever device= says
            params = {
                key: backend.param_asarray(np.asarray(a).astype(dtype_name))
                for key, a in self._checked_host(expected, host_params).items()
            }
        self.layers = self.build(self._config, params)
        self.last_layer = SoftmaxWithLoss()
        bindings = {}
        by_id = {id(value): key for key, value in params.items()}
        for layer in self.layers.values():
            for attribute in getattr(layer, "param_names", ()):
                bindings[by_id[id(getattr(layer, attribute))]] = (layer, attribute)
        self.params = Params({key: params[key] for key in expected}, bindings)
        random_layers = [layer for layer in self.layers.values() if hasattr(layer, "generator")]
        if random_layers:
            with backend.activate():
                for layer, layer_seed in zip(
                    random_layers, _layer_seeds(seed, len(random_layers)), strict=True
                ):
                    layer.generator = backend.random_generator(layer_seed)
        if host_buffers:
            self.load_arrays({}, host_buffers)

    def _checked_host(
        self, expected: Mapping[str, tuple[int, ...]], host: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        missing = [key for key in expected if key not in host]
        if missing:
            raise ValueError(f"no array for parameter(s) {missing} of {type(self).__name__}")
        for key, shape in expected.items():
            if tuple(host[key].shape) != tuple(shape) or host[key].dtype.kind != "f":
                raise ValueError(
                    f"parameter {key} has shape {tuple(host[key].shape)} and dtype "
                    f"{host[key].dtype}, expected {tuple(shape)} and {self._dtype_name}"
                )
        return {key: host[key] for key in expected}

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
        host = self._checked_host(shapes, params) if params else {}
        with backend.activate():
            self.params.update({k: backend.param_asarray(a.astype(dtype)) for k, a in host.items()})
            self.set_buffers(
                {k: backend.param_asarray(a.astype(dtype)) for k, a in buffers.items()}
            )

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
            for attribute in getattr(layer, "buffer_names", ())
        }

    def set_buffers(self, values: Mapping[str, Array]) -> None:
        """Set buffers by the keys of `buffers` (arrays of the right shape, dtype and device)."""
        for key, value in values.items():
            name, attribute = key.rsplit("/", 1)
            setattr(self.layers[name], attribute, value)

    def check_layers(self) -> None:
        """Raise ValueError if ``layers`` and ``params`` no longer belong together.

        Both gradients of a gradient check, and every training step, must come from the layers
        the network really runs: a parameter whose layer was taken out of ``layers``, or a
        layer with parameters that ``params`` does not hold, would be silently skipped.
        Layers found consistent are remembered, so the check that runs at every public call
        costs almost nothing while the same layer objects stay.
        """
        current = tuple(self.layers.values())
        known = self.__dict__.get("_consistent_layers", ())
        if len(known) == len(current) and all(a is b for a, b in zip(known, current, strict=True)):
            return  # the same objects as last time (params' bindings never change)
        live = {id(layer) for layer in current}
        for key in self.params:
            layer, _ = self.params.layer_of(key)
            if id(layer) not in live:
                raise ValueError(
                    f"params[{key!r}] belongs to a layer that is no longer in net.layers: a "
                    f"layer with parameters is swapped by changing the layer object's class or "
                    f"methods, or by assigning net.params, not by putting a new Affine in "
                    f"net.layers"
                )
        bound = {id(self.params.layer_of(key)[0]) for key in self.params}
        for layer in self.layers.values():
            if getattr(layer, "param_names", ()) and id(layer) not in bound:
                raise ValueError(
                    f"net.layers holds {layer!r}, whose parameters are not in net.params"
                )
        self._consistent_layers = current

    @contextlib.contextmanager
    def using_dtype(self, dtype_name: str) -> Iterator[Network]:
        """A context in which this network computes in another dtype (for gradient checks).

        The parameters and buffers are rebound, cast, in place of the network's own, which are
        bound back on leaving, with the same objects and values, however the context ends.
        """
        if dtype_name == self._dtype_name:
            yield self
            return
        xp = self.backend_info.param_xp
        dtype = self.backend_info.dtype(dtype_name)
        params, buffers, name = dict(self.params), self.buffers, self._dtype_name
        try:
            for key, value in params.items():
                self.params.bind(key, xp.astype(value, dtype))
            self.set_buffers({k: xp.astype(v, dtype) for k, v in buffers.items()})
            self._dtype_name = dtype_name
            yield self
        finally:
            for key, value in params.items():
                self.params.bind(key, value)
            self.set_buffers(buffers)
            self._dtype_name = name

    # -- what the network is ------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments that define the architecture, JSON-able (a copy).

        ``type(net).from_arrays(net.config, ...)`` and ``bpcore.load`` rebuild the network
        from it.
        """
        return dict(self._config)

    @property
    def dtype_name(self) -> str:
        """The parameters' dtype by name: ``"float32"`` or ``"float64"``."""
        return self._dtype_name

    @property
    def backend(self) -> str:
        """The backend's name, such as ``"numpy"`` or ``"torch"``."""
        return self.backend_info.name

    @property
    def xp(self) -> Any:
        """The Array API namespace of the network's inputs.

        Also that of its parameters, except on Dask, whose parameters are NumPy arrays (see
        ``backend_info.param_xp``).
        """
        return self.backend_info.xp

    @property
    def device(self) -> Any:
        """The device the parameters live on, as the backend names it."""
        return self.backend_info.device

    @property
    def dtype(self) -> Any:
        """The floating dtype of the parameters (the namespace's dtype object)."""
        return self.backend_info.dtype(self._dtype_name)

    @property
    def computes_batches(self) -> bool:
        """Whether a lazy backend (Dask) computes each batch before the forward pass.

        True for a network with a layer whose ``computes_input`` is true (convolution and
        pooling, whose shifted slices of padded images split lazy chunks into thousands of
        pieces): on Dask the dataset stays a chunked array, and each mini-batch is computed to
        NumPy and runs eagerly. Eager backends are not affected.
        """
        return any(getattr(layer, "computes_input", False) for layer in self.layers.values())

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``(input_size,)``, or ``(C, H, W)`` for a convolutional net."""
        if "input_dim" in self._config:
            return tuple(int(d) for d in self._config["input_dim"])
        return (int(self._config["input_size"]),)

    @property
    def input_size(self) -> int:
        """Number of input features per sample."""
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        """Number of classes."""
        return int(self._config["output_size"])

    @property
    def weight_decay_lambda(self) -> float:
        """Strength of the L2 penalty ``0.5 * lambda * sum(W**2)`` added to the loss."""
        return float(self._config.get("weight_decay_lambda", 0.0))

    @property
    def lastLayer(self) -> SoftmaxWithLoss:
        """`last_layer`, under the name the book's chapter 5 gives it."""
        return self.last_layer

    @lastLayer.setter
    def lastLayer(self, layer: SoftmaxWithLoss) -> None:
        self.last_layer = layer

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return (
            f"{type(self).__name__}({args}, backend={self.backend!r}, device={self.device!r}, "
            f"dtype={self._dtype_name!r})"
        )

    def summary(self) -> str:
        """A table of the layers, their output shapes and parameter counts, as Keras prints.

        The output shapes are those of one sample run through the layers in inference mode (a
        batch of one zero input, on the network's device; the layers are left as they were);
        ``N`` stands for the batch. Ends with the number of parameters, the dtype, the backend
        and the device. Returned as a string whose ``repr`` is the table itself, so that a
        notebook cell shows it as ``print`` would.
        """
        rows = []
        with self.keeping_layers(), self.backend_info.activate():
            x = self.backend_info.asarray(np.zeros((1, *self.input_shape), dtype=self._dtype_name))
            for name, layer in self.layers.items():
                if getattr(layer, "takes_train_flg", False):
                    x = layer.forward(x, False)
                else:
                    x = layer.forward(x)
                count = sum(
                    _size(getattr(layer, a).shape) for a in getattr(layer, "param_names", ())
                )
                rows.append((f"{name} ({type(layer).__name__})", _shape(x.shape), count))
        rows.append((f"last_layer ({type(self.last_layer).__name__})", "()", 0))
        total = sum(_size(p.shape) for p in self.params.values())
        size = total * np.dtype(self._dtype_name).itemsize
        name_width = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
        shape_width = max(len("Output shape"), *(len(r[1]) for r in rows)) + 2
        rule = "-" * (name_width + shape_width + 12)
        lines = [
            type(self).__name__,
            rule,
            f"{'Layer (type)':<{name_width}}{'Output shape':<{shape_width}}{'Params':>12}",
            rule,
            *(f"{a:<{name_width}}{b:<{shape_width}}{c:>12,}" for a, b, c in rows),
            rule,
            f"Total params: {total:,} ({size / 1024:,.1f} KiB)",
            f"dtype: {self._dtype_name}, backend: {self.backend}, device: {self.device}",
        ]
        return _Text("\n".join(lines))

    # -- the book's API -----------------------------------------------------------------------

    @_on_device
    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Return the scores (logits) for a batch, shape ``(N, output_size)``.

        Parameters
        ----------
        x : array, shape (N, input_size) or (N, ...); (N, C, H, W) for a convolutional net
            Inputs of any integer or real dtype, on the network's backend and device; they are
            cast to the network's dtype.
        train_flg : bool, default False
            Run the layers that behave differently in training (dropout, batch normalization)
            in training mode, as the book's ``predict(x, train_flg)``; a training pass updates
            the running statistics.
        """
        return self.unchecked_predict(self.check_inputs(x), train_flg)

    @_on_device
    def loss(self, x: Array, t: Array, train_flg: bool = False) -> Array:
        """Return the mean cross-entropy loss, plus the weight decay, as a 0-d array.

        Parameters
        ----------
        x : array, shape (N, input_size) or (N, C, H, W)
        t : array, shape (N,) of class labels or (N, output_size) of one-hot rows
        train_flg : bool, default False
            As for `predict`.
        """
        return self.unchecked_loss(*self.check_batch(x, t), train_flg)

    @_on_device
    def accuracy(self, x: Array, t: Array, batch_size: int | None = None) -> float:
        """Return the fraction of samples whose highest score is the label's class.

        Computed in inference mode. ``batch_size`` splits ``x`` into batches of that many
        samples (the last one may be smaller; the book's convolutional nets skip it), to bound
        the memory of a large evaluation; the counts stay on the device and are read once.
        The labels are checked (read) first on every backend: the result is read back anyway.
        """
        x, t = self.check_batch(x, t, values=True)
        n = int(x.shape[0])
        step = n if batch_size is None else _checks.check_positive_int(batch_size, "batch_size")
        hits = self.unchecked_hits(x[: min(step, n), ...], t[: min(step, n), ...])
        for start in range(step, n, step):
            stop = min(start + step, n)  # a stop past the end is not in the Array API
            hits = hits + self.unchecked_hits(x[start:stop, ...], t[start:stop, ...])
        return float(hits) / n

    @_on_device
    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Return the gradients of `loss` by backpropagation, keyed like ``params``."""
        x, t = self.check_batch(x, t)
        self.check_layers()
        return self.unchecked_gradient(x, t)

    @_on_device
    def numerical_gradient(self, x: Array, t: Array, *, h: float | None = None) -> dict[str, Array]:
        """Return the gradients of `loss` by central differences, keyed like ``params``.

        Slow (two forward passes per parameter element): a reference for `gradient`. The
        differences are taken in float64 whenever the backend's device has it (see
        `using_dtype`), and the result is cast to the network's dtype; see
        `bpcore.gradient_check`.

        Parameters
        ----------
        x, t : array
            As for `loss`.
        h : float, optional
            The step; by default 1e-5 in float64 and 1e-2 in float32.
        """
        with self.checking(x, t) as (x, t):
            grads = self.unchecked_numerical_gradient(x, t, h=h)
        xp = self.backend_info.param_xp
        return {key: xp.astype(g, self.dtype) for key, g in grads.items()}

    def save(self, path: Any) -> Any:
        """Save this network to an ``.npz`` checkpoint (no pickle, written atomically).

        Load it on any backend with `bpcore.load`. Returns the path written.
        """
        return checkpoints.save(self, path)

    def save_params(self, file_name: Any = "params.pkl") -> Any:
        """The book's ``save_params``: `save` this network to ``file_name``.

        The file is a bpcore checkpoint (an ``.npz`` archive, whatever its name), not a pickle:
        loading it cannot run code. `load_params` reads it back.
        """
        return checkpoints.save(self, file_name)

    def load_params(self, file_name: Any = "params.pkl") -> None:
        """The book's ``load_params``: set parameters and buffers from a checkpoint of this net.

        Raises ValueError, and changes nothing, when the file is not a bpcore checkpoint of
        this class and configuration (a pickle, such as the book's own ``params.pkl``, is
        refused: unpickling a file can run any code in it).
        """
        checkpoints.load_into(self, file_name)

    # -- checks at the entry points -------------------------------------------------------------

    def check_inputs(self, x: Any, name: str = "x") -> Array:
        """Validate a batch of inputs and return it cast to the network's dtype."""
        return _checks.check_x(x, self.backend_info, self.dtype, self.input_shape, name=name)

    def check_batch(
        self,
        x: Any,
        t: Any,
        names: tuple[str, str] = ("x", "t"),
        *,
        values: bool | None = None,
    ) -> tuple[Array, Array]:
        """Validate a batch and its labels; return them ready for the ``unchecked_*`` methods.

        Raises ValueError or TypeError naming the problem (wrong library, device, shape, dtype,
        labels out of range); see the module ``_checks``. ``values`` says whether to read the
        labels' values, which waits for the device: by default only where that is free
        (`bpcore.backends.Backend.reads_values_freely`); elsewhere bad labels make the loss NaN.
        """
        x = self.check_inputs(x, names[0])
        t = _checks.check_labels(
            t, self.backend_info, x.shape[0], self.output_size, names[1], values=values
        )
        _checks.check_same_library(x, t)
        return x, t

    def check_dtype(self) -> str:
        """The dtype numerical gradients are taken in: float64 where the device has it."""
        return "float64" if self.backend_info.has_dtype("float64") else self._dtype_name

    @contextlib.contextmanager
    def checking(self, x: Any, t: Any) -> Iterator[tuple[Array, Array]]:
        """A context for comparing gradients: the batch checked, cast, and the dtype promoted.

        Validates ``x`` and ``t`` (`check_batch`) and the layers (`check_layers`: both
        gradients must come from the layers the network really runs), computes in
        `check_dtype` (`using_dtype`), and yields the batch as `cast_batch` makes it.
        """
        x, t = self.check_batch(x, t, values=True)
        self.check_layers()
        with self.holding_masks(), self.keeping_buffers(), self.using_dtype(self.check_dtype()):
            yield self.cast_batch(x, t)

    @contextlib.contextmanager
    def holding_masks(self) -> Iterator[None]:
        """A context in which dropout layers reuse their last mask instead of drawing anew.

        So `gradient` and `numerical_gradient` differentiate one and the same function. A
        layer with no mask yet (or one of another shape) draws one at its next training pass
        and keeps it.
        """
        layers = [layer for layer in self.layers.values() if hasattr(layer, "hold_mask")]
        held = [layer.hold_mask for layer in layers]
        try:
            for layer in layers:
                layer.hold_mask = True
            yield
        finally:
            for layer, was in zip(layers, held, strict=True):
                layer.hold_mask = was

    @contextlib.contextmanager
    def keeping_buffers(self) -> Iterator[None]:
        """A context after which the buffers (running statistics) are as they were before."""
        buffers = self.buffers
        try:
            yield
        finally:
            self.set_buffers(buffers)

    @contextlib.contextmanager
    def keeping_layers(self, *others: Any) -> Iterator[None]:
        """A context after which the layers, the loss layer and ``others`` are as before.

        Attribute for attribute (dict attributes, such as an optimizer's state, copied): what a
        pass through the layers leaves in them (inputs, masks, gradients) is undone, for
        passes that are not the user's (a summary's sample, a traced compiled step).
        """
        objects = [*self.layers.values(), self.last_layer, *others]
        saved = [
            (obj, {k: dict(v) if isinstance(v, dict) else v for k, v in vars(obj).items()})
            for obj in objects
        ]
        try:
            yield
        finally:
            for obj, attributes in saved:
                vars(obj).clear()
                vars(obj).update(attributes)

    def cast_batch(self, x: Array, t: Array) -> tuple[Array, Array]:
        """A checked batch in the network's current dtype, labels as one-hot rows, computed.

        For gradient checks: their thousands of forward passes reuse one small batch, computed
        once if it is lazy, whose class labels are turned into the one-hot rows the loss layer
        would otherwise build anew at every pass (the same values, so the same losses).
        """
        x, t = self.backend_info.compute(x, t)
        xp = array_api_compat.array_namespace(x)
        x = xp.astype(x, self.dtype)
        if t.ndim == 1:
            classes = xp.arange(self.output_size, device=array_api_compat.device(t))
            t = xp.expand_dims(xp.astype(t, classes.dtype), axis=1) == classes
        return x, xp.astype(t, self.dtype)

    # -- the computations, on checked batches ---------------------------------------------------

    def unchecked_predict(self, x: Array, train_flg: bool = False) -> Array:
        """`predict` on a batch `check_inputs` has validated.

        Layers whose ``takes_train_flg`` is true get ``train_flg`` (the book tests the layer's
        class name; an attribute lets any layer say so).
        """
        if self.computes_batches:
            (x,) = self.backend_info.compute(x)
        for layer in self.layers.values():
            if getattr(layer, "takes_train_flg", False):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def unchecked_hits(self, x: Array, t: Array) -> Array:
        """How many samples of a checked batch the network gets right, in inference mode.

        A 0-d array that stays on the device (`correct_predictions` of `unchecked_predict`).
        """
        if self.computes_batches:
            x, t = self.backend_info.compute(x, t)
        return correct_predictions(self.unchecked_predict(x), t)

    def unchecked_loss(self, x: Array, t: Array, train_flg: bool = False) -> Array:
        """`loss` on a batch `check_batch` has validated."""
        return self._penalized(self.last_layer.forward(self.unchecked_predict(x, train_flg), t))

    def unchecked_evaluation(self, x: Array, t: Array) -> tuple[Array, Array]:
        """How many samples of a checked batch are right, and its `loss`, in inference mode.

        Both from one forward pass, as 0-d arrays on the device (for evaluation loops).
        """
        if self.computes_batches:
            x, t = self.backend_info.compute(x, t)
        scores = self.unchecked_predict(x)
        return correct_predictions(scores, t), self._penalized(self.last_layer.forward(scores, t))

    def _penalized(self, loss: Array) -> Array:
        """``loss`` plus the weight decay ``0.5 * lambda * sum(W**2)`` over the weights."""
        lam = self.weight_decay_lambda
        if lam:
            xp = self.backend_info.param_xp
            for key, W in self.params.items():
                if key.startswith("W"):
                    loss = loss + 0.5 * lam * xp.sum(W * W)
        return loss

    def unchecked_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """`gradient` on a batch `check_batch` has validated: the book's backward pass.

        The forward pass runs in training mode (``train_flg=True``: fresh dropout masks, batch
        statistics, running statistics updated), as the book's ``gradient`` does. Keeps the
        loss in `last_loss`. On a lazy backend (Dask) the gradients, the loss, the loss layer's
        scores and labels and the buffers are computed here, together, in one pass, and a
        batch whose labels the loss layer found invalid raises ValueError then, with the
        buffers as they were.
        """
        if self.computes_batches:
            x, t = self.backend_info.compute(x, t)
        before = self.buffers if self.backend_info.is_lazy else {}
        self.last_loss = self.unchecked_loss(x, t, True)
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for layer in reversed(layers[1:]):
            dout = layer.backward(dout)
        # Nobody needs the gradient with respect to the input: skip that product where the
        # first layer offers it.
        first = layers[0]
        getattr(first, "backward_params", first.backward)(dout)
        lam = self.weight_decay_lambda
        grads: dict[str, Array] = {}
        for key in self.params:
            layer, attribute = self.params.layer_of(key)
            g = getattr(layer, "d" + attribute)
            grads[key] = g + lam * getattr(layer, attribute) if (lam and attribute == "W") else g
        if not self.backend_info.is_lazy:
            return grads
        last = self.last_layer
        grads, self.last_loss, last.y, last.t, valid, buffers = self.backend_info.compute(
            grads, self.last_loss, last.y, last.t, last.labels_valid, self.buffers
        )
        if not bool(valid):  # computed with the rest, so reading it costs nothing more
            self.set_buffers(before)
            _checks.raise_for_label_values(last.t, self.output_size)
        self.set_buffers(buffers)
        return grads

    def holding_labels(self, x: Array, t: Array) -> contextlib.AbstractContextManager[Any]:
        """A context in which the loss layer reuses what it builds from ``t`` for a batch ``x``.

        The label rows in the scores' dtype and the test of their validity, made once rather
        than at every forward pass of a numerical gradient (`checking` has already turned
        class labels into one-hot rows, so what is saved there is mostly the test): for the
        book's 784-50-10 net on NumPy, 8.9 s instead of 13.3 s (best of three, 2 CPU cores).
        A loss layer without ``holding_labels`` builds them every time.
        """
        hold = getattr(self.last_layer, "holding_labels", None)
        if hold is None:
            return contextlib.nullcontext()
        xp = array_api_compat.array_namespace(x)
        scores = xp.zeros(
            (x.shape[0], self.output_size), dtype=self.dtype, device=array_api_compat.device(x)
        )
        return hold(scores, t)  # type: ignore[no-any-return]

    def unchecked_numerical_gradient(
        self, x: Array, t: Array, *, h: float | None = None
    ) -> dict[str, Array]:
        """Central differences of `unchecked_loss`, in the network's current dtype.

        The book's ``numerical_gradient``: each parameter element moved by ``±h`` in turn, in
        the way the backend allows (in place, by ``where``, or compiled on JAX), the loss taken
        in training mode as the book's ``MultiLayerNetExtend`` does. Every loss is computed from
        the buffers as they were at the start; to compare with `gradient`, hold the dropout
        masks fixed (`checking` does). The parameters and buffers are
        the same objects, with the same values, afterwards.
        """
        h = STEP[self._dtype_name] if h is None else h
        keys = list(self.params)
        originals = [self.params[key] for key in keys]
        buffers = self.buffers

        def loss_at(values: list[Array]) -> Array:
            # Parameters with one element moved: their shapes, dtypes and device, so bind them
            # without the checks of params[key] = W (a JAX tracer would not pass them).
            for key, value in zip(keys, values, strict=True):
                if self.params[key] is not value:
                    self.params.bind(key, value)
            # Every loss from the same state: a layer that updates its buffers in forward
            # (running statistics) must not carry one evaluation's update into the next.
            self.set_buffers(buffers)
            return self.unchecked_loss(x, t, True)

        try:
            with self.holding_labels(x, t):
                grads = self.backend_info.central_differences(loss_at, originals, h)
        finally:
            for key, value in zip(keys, originals, strict=True):
                self.params.bind(key, value)
            self.set_buffers(buffers)
        return dict(zip(keys, grads, strict=True))


class _Text(str):
    """A string that shows as itself (a table) where a notebook shows a value's ``repr``."""

    def __repr__(self) -> str:
        return str(self)


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(["N", *(str(int(d)) for d in shape[1:])]) + ")"


def _layer_seeds(seed: Any, count: int) -> list[Any]:
    """Seeds for ``count`` random layers, apart from the stream ``default_rng(seed)`` drew."""
    if isinstance(seed, np.random.Generator):
        return [int(s) for s in seed.integers(2**63, size=count)]
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # spawn() children differ from the parent's own stream, which drew the weights.
    return list(sequence.spawn(count))


def _dense_config(
    input_size: Any,
    hidden_size_list: Any,
    output_size: Any,
    activation: Any,
    weight_decay_lambda: Any,
) -> dict[str, Any]:
    """The checked configuration of a fully connected network of any depth."""
    if isinstance(hidden_size_list, (str, bytes)) or not isinstance(hidden_size_list, Iterable):
        raise TypeError(
            f"hidden_size_list must be a list of positive integers, got {hidden_size_list!r}"
        )
    hidden = [
        _checks.check_positive_int(h, f"hidden_size_list[{i}]")
        for i, h in enumerate(hidden_size_list)
    ]
    if isinstance(weight_decay_lambda, bool) or not isinstance(weight_decay_lambda, (int, float)):
        raise TypeError(f"weight_decay_lambda must be a number, got {weight_decay_lambda!r}")
    if not weight_decay_lambda >= 0 or weight_decay_lambda == float("inf"):
        raise ValueError(
            f"weight_decay_lambda must be a finite number >= 0, got {weight_decay_lambda!r}"
        )
    n_in = _checks.check_positive_int(input_size, "input_size")
    n_out = _checks.check_positive_int(output_size, "output_size")
    return {
        "input_size": n_in,
        "hidden_size_list": hidden,
        "output_size": n_out,
        "activation": _check_activation(activation),
        "weight_decay_lambda": float(weight_decay_lambda),
    }


def _check_activation(activation: Any) -> str:
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        valid = ", ".join(repr(n) for n in ACTIVATIONS)
        raise ValueError(f"unknown activation {activation!r}; expected one of {valid}")
    return activation.lower()


def _dense_shapes(sizes: Sequence[int]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, len(sizes)):
        shapes[f"W{i}"] = (sizes[i - 1], sizes[i])
        shapes[f"b{i}"] = (sizes[i],)
    return shapes


def _dense_layers(
    params: Mapping[str, Array], names: Sequence[str], activation: Callable[[], Any]
) -> OrderedDict[str, Any]:
    """Affine, activation, Affine, ...: ``names`` for them in order, ending with an Affine."""
    layers: OrderedDict[str, Any] = OrderedDict()
    for i, name in enumerate(names):
        k = i // 2 + 1
        layers[name] = Affine(params[f"W{k}"], params[f"b{k}"]) if i % 2 == 0 else activation()
    return layers


class TwoLayerNet(Network):
    """The book's two-layer network: Affine, ReLU, Affine, softmax with cross-entropy loss.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        Layer sizes, all positive.
    weight_init_std : float or str, default 0.01
        Standard deviation of the initial weights, or ``"relu"``/``"he"``/``"sigmoid"``/
        ``"xavier"`` for a scale from each layer's fan-in.
    backend : str or module, optional
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"``, ``"dask"`` or a
        namespace module; by default the ``BPCORE_BACKEND`` environment variable, else
        ``"numpy"``.
    device : str, int or device object, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; the backend's default when omitted.
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
        Seeds the host generator that draws the initial weights: the same seed gives
        bit-identical weights on every backend.

    Attributes
    ----------
    params : Params
        ``"W1"``, ``"b1"``, ``"W2"``, ``"b2"``: arrays of the backend (NumPy arrays on Dask).
    layers : OrderedDict
        ``"Affine1"``, ``"Relu1"``, ``"Affine2"``.
    last_layer : SoftmaxWithLoss

    Examples
    --------
    >>> import numpy as np
    >>> from bpcore import TwoLayerNet
    >>> net = TwoLayerNet(784, 50, 10, backend="numpy", seed=0)
    >>> x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    >>> net.predict(x).shape
    (3, 10)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float | str = 0.01,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: Any = None,
    ) -> None:
        config = {
            "input_size": _checks.check_positive_int(input_size, "input_size"),
            "hidden_size": _checks.check_positive_int(hidden_size, "hidden_size"),
            "output_size": _checks.check_positive_int(output_size, "output_size"),
        }
        sizes = [config["input_size"], config["hidden_size"], config["output_size"]]
        host = initial_weights(sizes, weight_init_std, "float64", seed)
        super().__init__(config, host, backend=backend, device=device, dtype=dtype, seed=seed)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``W1``, ``b1``, ``W2``, ``b2``, shaped by the three sizes."""
        return _dense_shapes([config["input_size"], config["hidden_size"], config["output_size"]])

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """``Affine1``, ``Relu1``, ``Affine2``."""
        return _dense_layers(params, ["Affine1", "Relu1", "Affine2"], Relu)


class MultiLayerNet(Network):
    """The book's fully connected network of any depth, with optional weight decay.

    Parameters
    ----------
    input_size : int
    hidden_size_list : sequence of int
        Sizes of the hidden layers, e.g. ``[100, 100, 100]``; may be empty.
    output_size : int
    activation : {"relu", "sigmoid", "tanh"}, default "relu"
    weight_init_std : float or str, default "relu"
        As for `TwoLayerNet`; the default is He initialization.
    weight_decay_lambda : float, default 0
        Adds ``0.5 * weight_decay_lambda * sum(W**2)`` over every weight matrix to the loss.
    backend, device, dtype, seed
        As for `TwoLayerNet`.

    Attributes
    ----------
    params : Params
        ``"W1"``, ``"b1"``, ..., one pair per Affine layer.
    layers : OrderedDict
        ``"Affine1"``, ``"Activation_function1"``, ..., ``"Affine{n}"`` as in the book.
    last_layer : SoftmaxWithLoss
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = "relu",
        weight_decay_lambda: float = 0,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: Any = None,
    ) -> None:
        config = _dense_config(
            input_size, hidden_size_list, output_size, activation, weight_decay_lambda
        )
        sizes = [config["input_size"], *config["hidden_size_list"], config["output_size"]]
        host = initial_weights(sizes, weight_init_std, "float64", seed)
        super().__init__(config, host, backend=backend, device=device, dtype=dtype, seed=seed)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``W1``, ``b1``, ..., one pair per Affine layer."""
        return _dense_shapes(
            [config["input_size"], *config["hidden_size_list"], config["output_size"]]
        )

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """``Affine1``, ``Activation_function1``, ..., ``Affine{n}``, as in the book."""
        n_affine = len(config["hidden_size_list"]) + 1
        names = []
        for i in range(1, n_affine + 1):
            names += [f"Affine{i}", f"Activation_function{i}"]
        return _dense_layers(params, names[:-1], ACTIVATIONS[config["activation"]])


class MultiLayerNetExtend(Network):
    """The book's extended network (chapter 6): `MultiLayerNet` with dropout and batch norm.

    Each hidden layer is ``Affine``, then ``BatchNormalization`` (with ``use_batchnorm``), the
    activation, then ``Dropout`` (with ``use_dropout``); the last is an ``Affine``.

    Parameters
    ----------
    input_size : int
    hidden_size_list : sequence of int
    output_size : int
    activation : {"relu", "sigmoid", "tanh"}, default "relu"
    weight_init_std : float or str, default "relu"
    weight_decay_lambda : float, default 0
        As for `MultiLayerNet`.
    use_dropout : bool, default False
    dropout_ration : float, default 0.5
        The dropout ratio, under the book's name for it.
    use_batchnorm : bool, default False
    backend, device, dtype, seed
        As for `TwoLayerNet`; ``seed`` also seeds the dropout masks (drawn on the device).

    Attributes
    ----------
    params : Params
        ``"W1"``, ``"b1"``, ..., then ``"gamma1"``, ``"beta1"``, ... for each batch
        normalization, in the book's order.
    layers : OrderedDict
        ``"Affine1"``, ``"BatchNorm1"``, ``"Activation_function1"``, ``"Dropout1"``, ...,
        ``"Affine{n}"``, as in the book.
    buffers : dict
        The running statistics, ``"BatchNorm1/running_mean"``, ...

    Notes
    -----
    `predict` and `loss` take the book's ``train_flg`` (default False: inference);
    `gradient` and `numerical_gradient` run in training mode, as in the book.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = "relu",
        weight_decay_lambda: float = 0,
        use_dropout: bool = False,
        dropout_ration: float = 0.5,
        use_batchnorm: bool = False,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        seed: Any = None,
    ) -> None:
        config = _dense_config(
            input_size, hidden_size_list, output_size, activation, weight_decay_lambda
        )
        Dropout(dropout_ration)  # checks the ratio before anything is drawn
        config.update(
            use_dropout=bool(use_dropout),
            dropout_ration=float(dropout_ration),
            use_batchnorm=bool(use_batchnorm),
        )
        sizes = [config["input_size"], *config["hidden_size_list"], config["output_size"]]
        host = initial_weights(sizes, weight_init_std, "float64", seed)
        for key, shape in MultiLayerNetExtend.param_shapes(config).items():
            if key.startswith(("gamma", "beta")):
                host[key] = (np.ones if key.startswith("gamma") else np.zeros)(shape)
        super().__init__(config, host, backend=backend, device=device, dtype=dtype, seed=seed)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """``W1``, ``b1``, ..., then ``gamma1``, ``beta1``, ... with batch normalization."""
        hidden = config["hidden_size_list"]
        shapes = _dense_shapes([config["input_size"], *hidden, config["output_size"]])
        if config.get("use_batchnorm"):
            for i, size in enumerate(hidden, start=1):
                shapes[f"gamma{i}"] = (size,)
                shapes[f"beta{i}"] = (size,)
        return shapes

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """The book's layers, by the book's names (see the class docstring)."""
        activation = ACTIVATIONS[config["activation"]]
        layers: OrderedDict[str, Any] = OrderedDict()
        n_hidden = len(config["hidden_size_list"])
        for i in range(1, n_hidden + 1):
            layers[f"Affine{i}"] = Affine(params[f"W{i}"], params[f"b{i}"])
            if config.get("use_batchnorm"):
                beta = params[f"beta{i}"]
                layers[f"BatchNorm{i}"] = BatchNormalization(
                    params[f"gamma{i}"],
                    beta,
                    running_mean=beta * 0.0,  # zeros of beta's library, device and dtype
                    running_var=beta * 0.0,
                )
            layers[f"Activation_function{i}"] = activation()
            if config.get("use_dropout"):
                layers[f"Dropout{i}"] = Dropout(config.get("dropout_ration", 0.5))
        k = n_hidden + 1
        layers[f"Affine{k}"] = Affine(params[f"W{k}"], params[f"b{k}"])
        return layers
