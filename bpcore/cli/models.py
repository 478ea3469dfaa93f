"""The networks ``--model`` names, for ``bpcore train`` and ``bpcore gradcheck``.

One registry, so that a model is added in one place: each entry says what the two commands'
``--help`` tells of it and how each command builds it. The builders take the `Backend` the
command resolved, so the network does not resolve ``--backend`` and ``--device`` again.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..backends import Backend
from ..datasets import raw_images
from ..networks import TwoLayerNet

__all__ = ["DEFAULT_MODEL", "REGISTRY", "Model", "describe"]


@dataclass(frozen=True)
class Model:
    """One ``--model`` choice.

    Attributes
    ----------
    conv : bool
        A convolutional net: it takes images unflattened, one ``--hidden`` size and none of the
        mlp's options.
    train_help, check_help : str
        What ``bpcore train --help`` and ``bpcore gradcheck --help`` say of it.
    build : callable
        ``build(args, sample_shape, backend)``: the network ``bpcore train`` trains, for samples
        of ``sample_shape``.
    build_check : callable
        ``build_check(args, backend)``: the network ``bpcore gradcheck`` checks, and the three
        raw images it checks it on.
    """

    conv: bool
    train_help: str
    check_help: str
    build: Callable[[argparse.Namespace, tuple[int, ...], Backend], Any]
    build_check: Callable[[argparse.Namespace, Backend], tuple[Any, np.ndarray]]


def _network_kwargs(args: argparse.Namespace, backend: Backend) -> dict[str, Any]:
    """The keywords every network takes here: the resolved backend, ``--dtype``,
    ``--precision`` (``train``'s) and ``--seed``."""
    return {
        "backend": backend,
        "dtype": args.dtype,
        "precision": getattr(args, "precision", None),
        "seed": args.seed,
    }


def _mlp(args: argparse.Namespace, sample_shape: tuple[int, ...], backend: Backend) -> Any:
    from ..networks import MultiLayerNet, MultiLayerNetExtend

    activation = args.activation
    kwargs: dict[str, Any] = {
        "activation": activation,
        "weight_init_std": "relu" if activation == "relu" else "sigmoid",
        "weight_decay_lambda": args.weight_decay,
        **_network_kwargs(args, backend),
    }
    hidden: list[int] = [100] if args.hidden is None else args.hidden
    if args.dropout is None and not args.batchnorm:
        return MultiLayerNet(sample_shape[0], hidden, 10, **kwargs)
    return MultiLayerNetExtend(
        sample_shape[0],
        hidden,
        10,
        use_dropout=args.dropout is not None,
        dropout_ration=0.5 if args.dropout is None else args.dropout,
        use_batchnorm=args.batchnorm,
        **kwargs,
    )


def _conv(args: argparse.Namespace, backend: Backend) -> dict[str, Any]:
    """A conv net's keywords: ``--hidden`` (`bpcore train` allows one size), else its default."""
    kwargs = _network_kwargs(args, backend)
    if args.hidden is not None:
        kwargs["hidden_size"] = args.hidden[0]
    return kwargs


def _convnet(args: argparse.Namespace, sample_shape: tuple[int, ...], backend: Backend) -> Any:
    from ..convnets import SimpleConvNet

    return SimpleConvNet(tuple(sample_shape), **_conv(args, backend))


def _deepconvnet(args: argparse.Namespace, sample_shape: tuple[int, ...], backend: Backend) -> Any:
    from ..convnets import DeepConvNet

    return DeepConvNet(tuple(sample_shape), **_conv(args, backend))


def _mlp_check(args: argparse.Namespace, backend: Backend) -> tuple[Any, np.ndarray]:
    net = TwoLayerNet(784, args.hidden, 10, **_network_kwargs(args, backend))
    return net, raw_images(3, seed=args.seed)


def _crops(side: int, seed: int) -> np.ndarray:
    """Three uniform random ``side`` x ``side`` images, shaped ``(3, 1, side, side)``."""
    # Uniform pixels, as the book's ch07/gradient_check.py draws: a convolution over the raw
    # images' zero background, with the initial zero biases, puts whole feature maps exactly on
    # ReLU's kink, where a central difference reads 1/2 and backprop 0.
    return np.random.default_rng(seed).random((3, 1, side, side))


def _convnet_check(args: argparse.Namespace, backend: Backend) -> tuple[Any, np.ndarray]:
    from ..convnets import SimpleConvNet

    side = 10
    conv = {"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1}
    net = SimpleConvNet(
        (1, side, side),
        conv,
        hidden_size=10,
        weight_init_std=0.01,
        **_network_kwargs(args, backend),
    )
    return net, _crops(side, args.seed)


def _deepconvnet_check(args: argparse.Namespace, backend: Backend) -> tuple[Any, np.ndarray]:
    from ..convnets import DeepConvNet

    side = 12
    convs = [(4, 1), (4, 1), (8, 1), (8, 2), (8, 1), (8, 1)]  # the book's pattern, narrower
    params: dict[str, Any] = {
        f"conv_param_{i}": {"filter_num": fn, "filter_size": 3, "pad": pad, "stride": 1}
        for i, (fn, pad) in enumerate(convs, start=1)
    }
    net = DeepConvNet((1, side, side), **params, hidden_size=10, **_network_kwargs(args, backend))
    return net, _crops(side, args.seed)


#: What ``--model`` takes, by name, in the order ``--help`` lists them.
REGISTRY: dict[str, Model] = {
    "mlp": Model(
        conv=False,
        train_help="MultiLayerNet, or MultiLayerNetExtend with --dropout/--batchnorm",
        check_help="TwoLayerNet(784, HIDDEN, 10) on raw 28x28 images",
        build=_mlp,
        build_check=_mlp_check,
    ),
    "convnet": Model(
        conv=True,
        train_help="the book's SimpleConvNet",
        check_help=(
            "the book's ch07 check, SimpleConvNet on random 10x10 images (10 filters of 3x3, "
            "10 hidden units)"
        ),
        build=_convnet,
        build_check=_convnet_check,
    ),
    "deepconvnet": Model(
        conv=True,
        train_help="its DeepConvNet",
        check_help="DeepConvNet's layers on random 12x12 images, 4 to 8 filters per convolution",
        build=_deepconvnet,
        build_check=_deepconvnet_check,
    ),
}

#: The ``--model`` of both commands when none is given.
DEFAULT_MODEL = "mlp"


def describe(command: Literal["train", "gradcheck"]) -> str:
    """The ``--model`` help of ``command``: each name with what that command's help says of it."""
    return "; ".join(
        f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: "
        f"{model.train_help if command == 'train' else model.check_help}"
        for name, model in REGISTRY.items()
    )
