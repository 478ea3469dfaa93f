"""The book's fully connected networks: `TwoLayerNet` (chapter 5), `MultiLayerNet` and
`MultiLayerNetExtend` (chapter 6).

Each is a constructor that checks its arguments and draws the weights on the host,
`param_shapes`, and `build`, which lists the layers in order; everything else comes from
`bpcore.networks.Network`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..backends import Array
from ..initializers import initial_weights
from ..layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, Tanh
from .base import Network

__all__ = ["ACTIVATIONS", "MultiLayerNet", "MultiLayerNetExtend", "TwoLayerNet"]

#: Activation layers by the names ``MultiLayerNet(activation=...)`` accepts.
ACTIVATIONS: dict[str, type[Relu] | type[Sigmoid] | type[Tanh]] = {
    "relu": Relu,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


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
    dtype : {"float32", "float64", "float16", "bfloat16"}, default "float32"
        The parameters' dtype, and that of the passes; float16 and bfloat16 where the backend
        has them (`bpcore.backends.Backend.has_dtype`).
    precision : {None, "mixed_float16", "mixed_bfloat16"}, optional
        A mixed precision (`bpcore.precision`): float32 parameters, passes in half precision
        (with dynamic loss scaling for float16).
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
        precision: Any = None,
        seed: Any = None,
    ) -> None:
        config = {
            "input_size": _checks.check_positive_int(input_size, "input_size"),
            "hidden_size": _checks.check_positive_int(hidden_size, "hidden_size"),
            "output_size": _checks.check_positive_int(output_size, "output_size"),
        }
        sizes = [config["input_size"], config["hidden_size"], config["output_size"]]
        host = initial_weights(sizes, weight_init_std, "float64", seed)
        super().__init__(
            config,
            host,
            backend=backend,
            device=device,
            dtype=dtype,
            precision=precision,
            seed=seed,
        )

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
    backend, device, dtype, precision, seed
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
        precision: Any = None,
        seed: Any = None,
    ) -> None:
        config = _dense_config(
            input_size, hidden_size_list, output_size, activation, weight_decay_lambda
        )
        sizes = [config["input_size"], *config["hidden_size_list"], config["output_size"]]
        host = initial_weights(sizes, weight_init_std, "float64", seed)
        super().__init__(
            config,
            host,
            backend=backend,
            device=device,
            dtype=dtype,
            precision=precision,
            seed=seed,
        )

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
    backend, device, dtype, precision, seed
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
        precision: Any = None,
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
        super().__init__(
            config,
            host,
            backend=backend,
            device=device,
            dtype=dtype,
            precision=precision,
            seed=seed,
        )

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
