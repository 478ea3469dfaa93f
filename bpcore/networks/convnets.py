"""The book's convolutional networks: `SimpleConvNet` (chapter 7) and `DeepConvNet` (chapter 8).

Both are `bpcore.networks.Network` classes like the fully connected ones: a constructor that
checks its arguments and draws the weights on the host, `param_shapes`, and `build` (the layers,
in order). They take images of shape ``(N, C, H, W)`` (``load_mnist(flatten=False)``), and
have the book's ``accuracy(x, t, batch_size=100)``, ``save_params`` and ``load_params``, the
last two writing and reading bpcore checkpoints (never pickles).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _checks
from ..backends import Array
from ..im2col import conv_output_size
from ..initializers import init_scale, normal_weights
from ..layers import Affine, Convolution, Dropout, Pooling, Relu
from .base import Network

__all__ = ["DeepConvNet", "SimpleConvNet"]

_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")


def _check_input_dim(input_dim: Any) -> list[int]:
    if isinstance(input_dim, (str, bytes)) or not isinstance(input_dim, Sequence):
        raise TypeError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    if len(input_dim) != 3:
        raise ValueError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    return [_checks.check_positive_int(d, f"input_dim[{i}]") for i, d in enumerate(input_dim)]


def _check_conv_param(conv_param: Any, name: str) -> dict[str, int]:
    if not isinstance(conv_param, Mapping):
        raise TypeError(f"{name} must be a dict with keys {_CONV_KEYS}, got {conv_param!r}")
    missing = [key for key in _CONV_KEYS if key not in conv_param]
    unknown = [key for key in conv_param if key not in _CONV_KEYS]
    if missing or unknown:
        raise ValueError(
            f"{name} must have the keys {list(_CONV_KEYS)}; missing {missing}, unknown {unknown}"
        )
    checked = {
        key: _checks.check_positive_int(conv_param[key], f"{name}[{key!r}]")
        for key in ("filter_num", "filter_size", "stride")
    }
    pad = conv_param["pad"]
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"{name}['pad'] must be an integer >= 0, got {pad!r}")
    return {**checked, "pad": int(pad)}


def _conv_out(size: tuple[int, int], conv: Mapping[str, int], what: str) -> tuple[int, int]:
    """The (height, width) after a convolution, or ValueError when the filter does not fit."""
    out = tuple(conv_output_size(s, conv["filter_size"], conv["stride"], conv["pad"]) for s in size)
    if min(out) < 1:
        raise ValueError(
            f"{what}: a {conv['filter_size']}x{conv['filter_size']} filter with padding "
            f"{conv['pad']} does not fit images of {size[0]}x{size[1]}"
        )
    return out[0], out[1]


def _pool_out(size: tuple[int, int], what: str) -> tuple[int, int]:
    """The (height, width) after 2x2 max pooling with stride 2."""
    if min(size) < 2:
        raise ValueError(f"{what}: 2x2 pooling needs at least 2x2 pixels, got {size[0]}x{size[1]}")
    return size[0] // 2, size[1] // 2


class SimpleConvNet(Network):
    """The book's chapter 7 network: conv, ReLU, 2x2 max pool, affine, ReLU, affine, softmax.

    Parameters
    ----------
    input_dim : (int, int, int), default (1, 28, 28)
        Channels, height, width of the images (non-square images work too).
    conv_param : dict, default ``{'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}``
    hidden_size : int, default 100
    output_size : int, default 10
    weight_init_std : float or str, default 0.01
        As for `TwoLayerNet` (a name scales each layer by its fan-in).
    backend, device, dtype, precision, seed
        As for `TwoLayerNet`.

    Attributes
    ----------
    params : Params
        ``"W1"`` (filters, shape ``(FN, C, FS, FS)``), ``"b1"``, ``"W2"``, ``"b2"``, ``"W3"``,
        ``"b3"``.
    layers : OrderedDict
        ``"Conv1"``, ``"Relu1"``, ``"Pool1"``, ``"Affine1"``, ``"Relu2"``, ``"Affine2"``.

    Notes
    -----
    The size after pooling is computed per axis and rounded down, where the book's
    ``filter_num * (conv_output_size / 2) ** 2`` is wrong for an odd output size.
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (1, 28, 28),
        conv_param: Mapping[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: float | str = 0.01,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        precision: Any = None,
        seed: Any = None,
    ) -> None:
        if conv_param is None:
            conv_param = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        config = {
            "input_dim": _check_input_dim(input_dim),
            "conv_param": _check_conv_param(conv_param, "conv_param"),
            "hidden_size": _checks.check_positive_int(hidden_size, "hidden_size"),
            "output_size": _checks.check_positive_int(output_size, "output_size"),
        }
        shapes = self.param_shapes(config)
        scales = {
            key: init_scale(weight_init_std, _fan_in(shapes[key])) for key in ("W1", "W2", "W3")
        }
        host = normal_weights(shapes, scales, "float64", seed)
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
        """``W1`` (filters), ``b1``, ``W2``, ``b2``, ``W3``, ``b3``."""
        c, h, w = config["input_dim"]
        conv = config["conv_param"]
        fn, fs = conv["filter_num"], conv["filter_size"]
        pooled = _pool_out(_conv_out((h, w), conv, "SimpleConvNet"), "SimpleConvNet")
        hidden, out = config["hidden_size"], config["output_size"]
        return {
            "W1": (fn, c, fs, fs),
            "b1": (fn,),
            "W2": (fn * pooled[0] * pooled[1], hidden),
            "b2": (hidden,),
            "W3": (hidden, out),
            "b3": (out,),
        }

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """``Conv1``, ``Relu1``, ``Pool1``, ``Affine1``, ``Relu2``, ``Affine2``."""
        conv = config["conv_param"]
        return OrderedDict(
            [
                ("Conv1", Convolution(params["W1"], params["b1"], conv["stride"], conv["pad"])),
                ("Relu1", Relu()),
                ("Pool1", Pooling(pool_h=2, pool_w=2, stride=2)),
                ("Affine1", Affine(params["W2"], params["b2"])),
                ("Relu2", Relu()),
                ("Affine2", Affine(params["W3"], params["b3"])),
            ]
        )

    def accuracy(self, x: Array, t: Array, batch_size: int | None = 100) -> float:
        """The fraction of correct predictions, computed ``batch_size`` samples at a time.

        Every sample counts, the last partial batch included (the book's loop skips it but
        divides by all of them).
        """
        return super().accuracy(x, t, batch_size)


#: The book's defaults for the six convolutions of `DeepConvNet`.
DEEP_CONV_PARAMS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Network):
    """The book's chapter 8 network, which reaches 99% on MNIST.

    Three blocks of (conv, ReLU, conv, ReLU, 2x2 max pool), then affine, ReLU, dropout,
    affine, dropout, softmax. Weights are He-initialized from each layer's fan-in.

    Parameters
    ----------
    input_dim : (int, int, int), default (1, 28, 28)
    conv_param_1, ..., conv_param_6 : dict
        As in the book: 16, 16, 32, 32, 64, 64 filters of 3x3, padding 1 (2 for the fourth).
    hidden_size : int, default 50
    output_size : int, default 10
    backend, device, dtype, precision, seed
        As for `TwoLayerNet`; ``seed`` also seeds the dropout masks.

    Attributes
    ----------
    params : Params
        ``"W1"`` to ``"W6"`` (filters), ``"W7"``, ``"W8"``, and ``"b1"`` to ``"b8"``.
    layers : OrderedDict
        ``"Conv1"``, ``"Relu1"``, ``"Conv2"``, ``"Relu2"``, ``"Pool1"``, ..., ``"Affine1"``,
        ``"Relu7"``, ``"Dropout1"``, ``"Affine2"``, ``"Dropout2"``. The book keeps a list; the
        order is the same, and ``list(net.layers.values())[i]`` is the book's
        ``net.layers[i]``.

    Notes
    -----
    The book's ``loss`` always runs in training mode (dropout on); here `loss` takes
    ``train_flg`` (default False) like every network's, and `gradient` trains. The fan-ins are
    computed from the geometry, equal to the book's hard-coded ones for its defaults.
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (1, 28, 28),
        conv_param_1: Mapping[str, int] | None = None,
        conv_param_2: Mapping[str, int] | None = None,
        conv_param_3: Mapping[str, int] | None = None,
        conv_param_4: Mapping[str, int] | None = None,
        conv_param_5: Mapping[str, int] | None = None,
        conv_param_6: Mapping[str, int] | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float32",
        precision: Any = None,
        seed: Any = None,
    ) -> None:
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        conv_params = [
            _check_conv_param(DEEP_CONV_PARAMS[i] if p is None else p, f"conv_param_{i + 1}")
            for i, p in enumerate(given)
        ]
        config = {
            "input_dim": _check_input_dim(input_dim),
            "conv_params": conv_params,
            "hidden_size": _checks.check_positive_int(hidden_size, "hidden_size"),
            "output_size": _checks.check_positive_int(output_size, "output_size"),
        }
        shapes = self.param_shapes(config)
        scales = {f"W{i}": init_scale("relu", _fan_in(shapes[f"W{i}"])) for i in range(1, 9)}
        host = normal_weights(shapes, scales, "float64", seed)
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
        """``W1``, ``b1``, ..., ``W8``, ``b8``."""
        channels, h, w = config["input_dim"]
        size = (h, w)
        shapes: dict[str, tuple[int, ...]] = {}
        for i, conv in enumerate(config["conv_params"], start=1):
            fn, fs = conv["filter_num"], conv["filter_size"]
            shapes[f"W{i}"] = (fn, channels, fs, fs)
            shapes[f"b{i}"] = (fn,)
            channels = fn
            size = _conv_out(size, conv, f"DeepConvNet conv_param_{i}")
            if i % 2 == 0:
                size = _pool_out(size, f"DeepConvNet after conv_param_{i}")
        hidden, out = config["hidden_size"], config["output_size"]
        shapes["W7"] = (channels * size[0] * size[1], hidden)
        shapes["b7"] = (hidden,)
        shapes["W8"] = (hidden, out)
        shapes["b8"] = (out,)
        return shapes

    @staticmethod
    def build(config: Mapping[str, Any], params: Mapping[str, Array]) -> OrderedDict[str, Any]:
        """The book's 20 layers, in its order (see the class docstring)."""
        layers: OrderedDict[str, Any] = OrderedDict()
        for i, conv in enumerate(config["conv_params"], start=1):
            layers[f"Conv{i}"] = Convolution(
                params[f"W{i}"], params[f"b{i}"], conv["stride"], conv["pad"]
            )
            layers[f"Relu{i}"] = Relu()
            if i % 2 == 0:
                layers[f"Pool{i // 2}"] = Pooling(pool_h=2, pool_w=2, stride=2)
        layers["Affine1"] = Affine(params["W7"], params["b7"])
        layers["Relu7"] = Relu()
        layers["Dropout1"] = Dropout(0.5)
        layers["Affine2"] = Affine(params["W8"], params["b8"])
        layers["Dropout2"] = Dropout(0.5)
        return layers

    def accuracy(self, x: Array, t: Array, batch_size: int | None = 100) -> float:
        """As `SimpleConvNet.accuracy`, in inference mode (no dropout)."""
        return super().accuracy(x, t, batch_size)


def _fan_in(shape: tuple[int, ...]) -> int:
    """Inputs per output of a weight: ``C*FH*FW`` for filters, rows for a matrix."""
    fan_in = 1
    for d in shape[1:] if len(shape) == 4 else shape[:1]:
        fan_in *= d
    return fan_in
