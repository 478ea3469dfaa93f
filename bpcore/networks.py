"""The book's networks, `TwoLayerNet` and `MultiLayerNet`, on any backend.

A network is built for one backend, device and dtype, and checks at every public entry point that
what it is given belongs there (see ``_checks``). Its ``params`` dict and its layers share the
same arrays: assigning ``net.params["W1"] = new_W`` rebinds the layer too, so optimizers may
replace arrays (as they must on immutable backends) instead of updating them in place.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import array_api_compat

from . import _checks
from .backends import Array, Backend, resolve_backend
from .gradcheck import network_numerical_gradient
from .initializers import init_scale, initial_weights
from .layers import Affine, Relu, Sigmoid, SoftmaxWithLoss, Tanh

__all__ = ["ACTIVATIONS", "MultiLayerNet", "Params", "TwoLayerNet", "correct_predictions"]

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
        xp.astype(predicted == xp.astype(labels, predicted.dtype), _checks._index_dtype(xp))
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

    def _bind(self, key: str, value: Array) -> None:
        layer, attribute = self._bindings[key]
        setattr(layer, attribute, value)
        super().__setitem__(key, value)

    def __setitem__(self, key: str, value: Array) -> None:
        if key in self._bindings and value is dict.__getitem__(self, key):
            return  # updated in place (params[key] += ...): nothing to check or rebind
        self._check(key, value)
        self._bind(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several parameters; all are checked before any is set."""
        new = dict(*args, **kwargs)
        for key, value in new.items():
            self._check(key, value)
        for key, value in new.items():
            self._bind(key, value)

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
    def wrapper(self: _Network, *args: Any, **kwargs: Any) -> Any:
        with self.backend_info.activate():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class _Network:
    """What `TwoLayerNet` and `MultiLayerNet` share: the book's API over a stack of layers."""

    params: Params
    layers: OrderedDict[str, Any]
    last_layer: SoftmaxWithLoss
    #: The loss (0-d array, weight decay included) of the last `gradient` call.
    last_loss: Array | None = None

    def __init__(
        self,
        config: dict[str, Any],
        weight_init_std: float | str,
        backend: Any,
        device: Any,
        dtype: Any,
        seed: Any,
    ) -> None:
        sizes = self._sizes_of(config)
        for fan_in in sizes[:-1]:
            init_scale(weight_init_std, fan_in)  # reject a bad init before importing a backend
        resolved = resolve_backend(backend, device)
        dtype_name = resolved.resolve_dtype(dtype)
        host = initial_weights(sizes, weight_init_std, dtype_name, seed)
        params = {k: resolved.param_asarray(v) for k, v in host.items()}
        self._setup(config, resolved, dtype_name, params)

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def _sizes_of(config: Mapping[str, Any]) -> list[int]:
        raise NotImplementedError

    def _layer_names(self, n_affine: int) -> list[str]:
        raise NotImplementedError

    def _activation(self) -> Any:
        raise NotImplementedError

    def _setup(
        self, config: dict[str, Any], backend: Backend, dtype_name: str, params: dict[str, Array]
    ) -> None:
        """Build layers around ``params`` (arrays already on ``backend`` in ``dtype_name``)."""
        self._config = config
        self.backend_info = backend
        self._dtype_name = dtype_name
        sizes = self._sizes_of(config)
        n_affine = len(sizes) - 1
        names = self._layer_names(n_affine)
        self.layers = OrderedDict()
        bindings: dict[str, tuple[Any, str]] = {}
        for i in range(1, n_affine + 1):
            affine = Affine(params[f"W{i}"], params[f"b{i}"])
            self.layers[names[2 * i - 2]] = affine
            bindings[f"W{i}"] = (affine, "W")
            bindings[f"b{i}"] = (affine, "b")
            if i < n_affine:
                self.layers[names[2 * i - 1]] = self._activation()()
        self.last_layer = SoftmaxWithLoss()
        self.params = Params({k: params[k] for k in bindings}, bindings)

    def _with_dtype(self, dtype_name: str) -> _Network:
        """A copy of this network whose parameters are cast to ``dtype_name``."""
        xp = self.backend_info.param_xp
        twin = type(self).__new__(type(self))
        dtype = self.backend_info.dtype(dtype_name)
        cast = {k: xp.astype(v, dtype) for k, v in self.params.items()}
        twin._setup(dict(self._config), self.backend_info, dtype_name, cast)
        # The twin must compute what this network computes: the user's layers, in the user's
        # order, including any swapped in since construction (a custom activation, a layer under
        # test), or a gradient check run on the twin would check stock layers instead. The
        # caller has run _check_bindings, so every parameter's layer is one of self.layers.
        twin_of = {
            id(bound): twin.params._bindings[key][0]
            for key, (bound, _) in self.params._bindings.items()
        }
        layers: OrderedDict[str, Any] = OrderedDict()
        for name, layer in self.layers.items():
            stock = twin_of.get(id(layer))
            if stock is None:  # no parameters: a copy of the user's layer (state is per call)
                layers[name] = copy.copy(layer)
            elif type(stock) is type(layer):
                layers[name] = stock
            else:  # the user's Affine subclass, around the twin's cast parameters
                mine = layers[name] = copy.copy(layer)
                mine.W, mine.b = stock.W, stock.b
                for key, (bound, attribute) in twin.params._bindings.items():
                    if bound is stock:
                        twin.params._bindings[key] = (mine, attribute)
        twin.layers = layers
        twin.last_layer = copy.copy(self.last_layer)
        return twin

    def _check_bindings(self) -> None:
        """Raise if a parameter's layer was taken out of ``layers`` (its gradient would be lost)."""
        live = {id(layer) for layer in self.layers.values()}
        for key, (layer, _) in self.params._bindings.items():
            if id(layer) not in live:
                raise ValueError(
                    f"params[{key!r}] belongs to a layer that is no longer in net.layers: a "
                    f"layer with parameters is swapped by changing the layer object's class or "
                    f"methods, or by assigning net.params, not by putting a new Affine in "
                    f"net.layers"
                )
        bound = {id(layer) for layer, _ in self.params._bindings.values()}
        for layer in self.layers.values():
            if isinstance(layer, Affine) and id(layer) not in bound:
                raise ValueError(
                    f"net.layers holds {layer!r}, whose parameters are not in net.params"
                )

    # -- what the network is ------------------------------------------------------------------

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
    def input_size(self) -> int:
        """Number of input features."""
        return self._sizes_of(self._config)[0]

    @property
    def output_size(self) -> int:
        """Number of classes."""
        return self._sizes_of(self._config)[-1]

    @property
    def weight_decay_lambda(self) -> float:
        """Strength of the L2 penalty ``0.5 * lambda * sum(W**2)`` added to the loss."""
        return float(self._config.get("weight_decay_lambda", 0.0))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return (
            f"{type(self).__name__}({args}, backend={self.backend!r}, device={self.device!r}, "
            f"dtype={self._dtype_name!r})"
        )

    # -- the book's API -----------------------------------------------------------------------

    @_on_device
    def predict(self, x: Array) -> Array:
        """Return the scores (logits) for a batch, shape ``(N, output_size)``.

        Parameters
        ----------
        x : array, shape (N, input_size) or (N, ...)
            Inputs of any integer or real dtype, on the network's backend and device; they are
            cast to the network's dtype.
        """
        return self._predict(self._x(x))

    @_on_device
    def loss(self, x: Array, t: Array) -> Array:
        """Return the mean cross-entropy loss, plus the weight decay, as a 0-d array.

        Parameters
        ----------
        x : array, shape (N, input_size)
        t : array, shape (N,) of class labels or (N, output_size) of one-hot rows
        """
        x, t = self._xt(x, t)
        return self._loss(x, t)

    @_on_device
    def accuracy(self, x: Array, t: Array) -> float:
        """Return the fraction of samples whose highest score is the label's class."""
        x, t = self._xt(x, t)
        return float(self._accuracy(x, t))

    @_on_device
    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Return the gradients of `loss` by backpropagation, keyed like ``params``."""
        x, t = self._xt(x, t)
        self._check_bindings()
        return self._gradient(x, t)

    @_on_device
    def numerical_gradient(self, x: Array, t: Array, *, h: float | None = None) -> dict[str, Array]:
        """Return the gradients of `loss` by central differences, keyed like ``params``.

        Slow (two forward passes per parameter element): a reference for `gradient`. The
        differences are taken in float64 whenever the backend's device has it, and the result is
        cast to the network's dtype; see `bpcore.gradient_check`.

        Parameters
        ----------
        x, t : array
            As for `loss`.
        h : float, optional
            The step; by default 1e-5 in float64 and 1e-2 in float32.
        """
        x, t = self._xt(x, t)
        return network_numerical_gradient(self, x, t, h=h)

    def save(self, path: Any) -> Any:
        """Save this network to an ``.npz`` checkpoint (no pickle, written atomically).

        Load it on any backend with `bpcore.load`. Returns the path written.
        """
        from .checkpoints import save

        return save(self, path)

    # -- the unchecked internals (inputs already validated and cast) --------------------------

    def _x(self, x: Any) -> Array:
        return _checks.check_x(x, self.backend_info, self.dtype, self.input_size)

    def _xt(self, x: Any, t: Any) -> tuple[Array, Array]:
        x = self._x(x)
        t = _checks.check_labels(t, self.backend_info, x.shape[0], self.output_size)
        _checks.check_same_library(x, t)
        return x, t

    def _predict(self, x: Array) -> Array:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def _loss(self, x: Array, t: Array) -> Array:
        loss = self.last_layer.forward(self._predict(x), t)
        lam = self.weight_decay_lambda
        if lam:
            xp = self.backend_info.param_xp
            for key, W in self.params.items():
                if key.startswith("W"):
                    loss = loss + 0.5 * lam * xp.sum(W * W)
        return loss

    def _accuracy(self, x: Array, t: Array) -> Array:
        hits = correct_predictions(self._predict(x), t)
        return self.xp.astype(hits, self.dtype) / x.shape[0]

    def _gradient(self, x: Array, t: Array) -> dict[str, Array]:
        self.last_loss = self._loss(x, t)  # kept (on the device) for training loops to record
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for layer in reversed(layers[1:]):
            dout = layer.backward(dout)
        # Nobody needs the gradient with respect to the input: skip that matrix product.
        layers[0].backward_params(dout)
        lam = self.weight_decay_lambda
        grads: dict[str, Array] = {}
        for key, (layer, attribute) in self.params._bindings.items():
            g = layer.dW if attribute == "W" else layer.db
            grads[key] = g + lam * layer.W if (lam and attribute == "W") else g
        # On Dask the gradients (sums over the batch's chunks), the loss and the scores are still
        # lazy: one compute runs the forward and backward passes once for all of them, on the
        # cluster (the Trainer's running accuracy then reads scores and labels for free).
        last = self.last_layer
        grads, self.last_loss, last.y, last.t = self.backend_info.compute(
            grads, self.last_loss, last.y, last.t
        )
        return grads


def _check_activation(activation: Any) -> str:
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        valid = ", ".join(repr(n) for n in ACTIVATIONS)
        raise ValueError(f"unknown activation {activation!r}; expected one of {valid}")
    return activation.lower()


class TwoLayerNet(_Network):
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
        super().__init__(config, weight_init_std, backend, device, dtype, seed)

    @staticmethod
    def _sizes_of(config: Mapping[str, Any]) -> list[int]:
        return [config["input_size"], config["hidden_size"], config["output_size"]]

    def _layer_names(self, n_affine: int) -> list[str]:
        return ["Affine1", "Relu1", "Affine2"]

    def _activation(self) -> type[Relu]:
        return Relu


class MultiLayerNet(_Network):
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
        if isinstance(hidden_size_list, (str, bytes)) or not isinstance(hidden_size_list, Iterable):
            raise TypeError(
                f"hidden_size_list must be a list of positive integers, got {hidden_size_list!r}"
            )
        hidden = [
            _checks.check_positive_int(h, f"hidden_size_list[{i}]")
            for i, h in enumerate(hidden_size_list)
        ]
        if isinstance(weight_decay_lambda, bool) or not isinstance(
            weight_decay_lambda, (int, float)
        ):
            raise TypeError(f"weight_decay_lambda must be a number, got {weight_decay_lambda!r}")
        if not weight_decay_lambda >= 0 or weight_decay_lambda == float("inf"):
            raise ValueError(
                f"weight_decay_lambda must be a finite number >= 0, got {weight_decay_lambda!r}"
            )
        config = {
            "input_size": _checks.check_positive_int(input_size, "input_size"),
            "hidden_size_list": hidden,
            "output_size": _checks.check_positive_int(output_size, "output_size"),
            "activation": _check_activation(activation),
            "weight_decay_lambda": float(weight_decay_lambda),
        }
        super().__init__(config, weight_init_std, backend, device, dtype, seed)

    @staticmethod
    def _sizes_of(config: Mapping[str, Any]) -> list[int]:
        return [config["input_size"], *config["hidden_size_list"], config["output_size"]]

    def _layer_names(self, n_affine: int) -> list[str]:
        names = []
        for i in range(1, n_affine + 1):
            names += [f"Affine{i}", f"Activation_function{i}"]
        return names[:-1]

    def _activation(self) -> Any:
        return ACTIVATIONS[self._config["activation"]]
