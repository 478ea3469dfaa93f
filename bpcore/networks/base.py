"""The `Network` base class: the book's network API over an ordered dict of layers.

A network is data: an ordered dict of layers (``net.layers``), the loss layer
(``net.last_layer``), and the parameters those layers own (``net.params``, bound to the layers:
assigning ``net.params["W1"] = new_W`` rebinds the layer too, so optimizers may replace arrays, as
they must on immutable backends). Arrays a layer keeps that are not parameters (the running
statistics of a batch normalization) are its *buffers* (``net.buffers``); checkpoints save both.
Parameters and buffers together are the network's *state* (`NetworkState`), which
`Network.using_state` swaps in and restores: the one save-and-restore of bpcore.

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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from .. import _checks, checkpoints, gradcheck
from ..backends import Array, Backend, resolve_backend
from ..layers import SoftmaxWithLoss, computes_input, param_names
from ..precision import LossScaler, Precision, resolve_dtypes
from . import building, passes
from .params import Params
from .passes import PassesMixin
from .state import NetworkState, StateMixin
from .summary import summary

__all__ = ["Network", "NetworkState"]


_F = TypeVar("_F", bound=Callable[..., Any])


def _on_device(method: _F) -> _F:
    """Run a public method with the network's device current (see `Backend.activate`)."""

    @functools.wraps(method)
    def wrapper(self: Network, *args: Any, **kwargs: Any) -> Any:
        with self.backend_info.activate():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Network(StateMixin, PassesMixin):
    """The book's network API over an ordered dict of layers; the base of every network.

    Subclasses provide a constructor, `param_shapes` and `build`; see the module's docstring.
    A subclass is registered by its name for `bpcore.load`. The book's API and the entry checks
    are here; the passes through the layers are in `bpcore.networks.passes`, the gradient-check
    machinery in `bpcore.gradcheck`, the building steps in `bpcore.networks.building`.

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
    #: A bpcore network's state is a `NetworkState` (see `bpcore.book.TrainableNetwork`).
    has_state = True
    #: The dynamic loss scaling of a ``"mixed_float16"`` network (None otherwise).
    loss_scaler: LossScaler | None = None
    _precision: Precision | None = None

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
        precision: Any = None,
        seed: Any = None,
    ) -> None:
        resolved = resolve_backend(backend, device)
        dtype_name, policy = resolve_dtypes(resolved, dtype, precision)
        self._assemble(config, resolved, dtype_name, host_params, {}, seed, policy)

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
        precision: Any = None,
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
        backend, device, precision
            As for the constructors.
        dtype : str, optional
            By default that of the arrays (float32 under a mixed ``precision``).

        Raises
        ------
        ValueError
            When an array is missing or has another shape than the config says.
        """
        resolved = resolve_backend(backend, device)
        if dtype is None:
            dtype = str(next(iter(params.values())).dtype) if params and not precision else None
        dtype_name, policy = resolve_dtypes(resolved, dtype, precision)
        net = cls.__new__(cls)
        net._assemble(config, resolved, dtype_name, params, buffers or {}, None, policy)
        return net

    def _assemble(
        self,
        config: Mapping[str, Any],
        backend: Backend,
        dtype_name: str,
        host_params: Mapping[str, np.ndarray],
        host_buffers: Mapping[str, np.ndarray],
        seed: Any,
        precision: Precision | None = None,
    ) -> None:
        """Check the host arrays, copy them to the device, build, bind and seed the layers."""
        self._config = dict(config)
        self.backend_info = backend
        self._dtype_name = dtype_name
        self._precision = precision
        expected = self.param_shapes(self._config)
        host = building.checked_host(type(self).__name__, expected, host_params, dtype_name)
        params = building.on_device(backend, host, dtype_name)
        self.layers = self.build(self._config, params)
        self.last_layer = SoftmaxWithLoss()
        self.params = Params(params, building.bindings(self.layers.values(), params))
        # Decided once, here, not at every call: which parameters weight decay penalizes, and
        # whether a lazy backend computes each batch before the layers see it.
        self._weights = passes.weight_keys(self.params)
        self._computes_batches = any(computes_input(layer) for layer in self.layers.values())
        building.seed_generators(backend, self.layers.values(), seed)
        if host_buffers:
            self.load_arrays({}, host_buffers)
        self.loss_scaler = building.loss_scaler(backend, precision, self.params)

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
            if param_names(layer) and id(layer) not in bound:
                raise ValueError(
                    f"net.layers holds {layer!r}, whose parameters are not in net.params"
                )
        self._consistent_layers = current
        # Layers swapped in since the network was built (a user's own activation) may ask for
        # their input computed: decided again for the new set, once.
        self._computes_batches = any(computes_input(layer) for layer in current)

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
        """The parameters' dtype by name: ``"float32"``, ``"float64"``, ``"float16"`` or
        ``"bfloat16"``."""
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
        NumPy and runs eagerly. Eager backends are not affected. Decided when the network is
        built, and again when `check_layers` finds other layers.
        """
        return self._computes_batches

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
        precision = "" if self._precision is None else f", precision={self._precision.name!r}"
        return (
            f"{type(self).__name__}({args}, backend={self.backend!r}, "
            f"device={self.backend_info.device_name!r}, "
            f"dtype={self._dtype_name!r}{precision})"
        )

    def summary(self) -> str:
        """A table of the layers, their output shapes and parameter counts, as Keras prints.

        The output shapes are those of one sample run through the layers in inference mode (a
        batch of one zero input, on the network's device; the layers are left as they were);
        ``N`` stands for the batch. Ends with the number of parameters, the dtype, the backend
        and the device. Returned as a string whose ``repr`` is the table itself, so that a
        notebook cell shows it as ``print`` would.
        """
        return summary(self)

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
        The same evaluation loop as the Trainer's (`bpcore.networks.passes.evaluate_in_batches`),
        counting hits only (`unchecked_hits`): no loss is computed, and the loss layer is left
        as it was.
        """
        x, t = self.check_batch(x, t, values=True)
        n = int(x.shape[0])
        size = n if batch_size is None else _checks.check_positive_int(batch_size, "batch_size")
        accuracy, _ = passes.evaluate_in_batches(
            lambda xb, tb: (self.unchecked_hits(xb, tb), None), x, t, size, self.backend_info
        )
        return accuracy

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
        `bpcore.gradient_check`, and `bpcore.gradcheck.numerical_gradient`, which this is.

        Parameters
        ----------
        x, t : array
            As for `loss`.
        h : float, optional
            The step; by default 1e-5 in float64 and 1e-2 in float32.
        """
        return gradcheck.numerical_gradient(self, x, t, h=h)

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
        """The book's ``load_params``: set the parameters from a file of this net's.

        A bpcore checkpoint of this class and configuration (parameters and buffers), or the
        book's own pickle of the same parameters (``ch07/params.pkl`` for `SimpleConvNet`,
        ``ch08/deep_convnet_params.pkl`` for `DeepConvNet`), read by a restricted unpickler
        that builds NumPy arrays and nothing else (`bpcore.checkpoints.read_book_params`).
        Raises ValueError, and changes nothing, when the file does not fit or holds anything
        but arrays.
        """
        checkpoints.load_params_into(self, file_name)

    # -- checks at the entry points -------------------------------------------------------------

    def check_inputs(self, x: Any, name: str = "x") -> Array:
        """Validate a batch of inputs and return it cast to the dtype the passes compute in."""
        dtype = self.backend_info.dtype(self.compute_dtype_name)
        return _checks.check_x(x, self.backend_info, dtype, self.input_shape, name=name)

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
            t,
            self.backend_info,
            x.shape[0],
            self.output_size,
            names[1],
            values=values,
            x_name=names[0],
        )
        _checks.check_same_library(x, t)
        return x, t

    # -- the gradient-check machinery, which lives in bpcore.gradcheck -------------------------

    def check_dtype(self) -> str:
        """`bpcore.gradcheck.check_dtype` of this network."""
        return gradcheck.check_dtype(self)

    def checking(self, x: Any, t: Any) -> contextlib.AbstractContextManager[tuple[Array, Array]]:
        """`bpcore.gradcheck.checking` of this network."""
        return gradcheck.checking(self, x, t)

    def holding_masks(self) -> contextlib.AbstractContextManager[None]:
        """`bpcore.gradcheck.holding_masks` of this network."""
        return gradcheck.holding_masks(self)

    def holding_labels(self, x: Array, t: Array) -> contextlib.AbstractContextManager[Any]:
        """`bpcore.gradcheck.holding_labels` of this network."""
        return gradcheck.holding_labels(self, x, t)

    def cast_batch(self, x: Array, t: Array) -> tuple[Array, Array]:
        """`bpcore.gradcheck.cast_batch` of this network."""
        return gradcheck.cast_batch(self, x, t)

    def unchecked_numerical_gradient(
        self, x: Array, t: Array, *, h: float | None = None
    ) -> dict[str, Array]:
        """`bpcore.gradcheck.unchecked_numerical_gradient` of this network."""
        return gradcheck.unchecked_numerical_gradient(self, x, t, h=h)

    def keeping_buffers(self) -> contextlib.AbstractContextManager[Any]:
        """A context after which the state is as it was before (`using_state`)."""
        return self.using_state()

    def keeping_layers(self, *others: Any) -> contextlib.AbstractContextManager[Any]:
        """A context after which the layers and ``others`` are as before (`using_state`)."""
        return self.using_state(layers=True, others=others)
