"""The ``bpcore`` command: ``bpcore gradcheck`` and ``bpcore info``.

Bad options and failures print one line on stderr and exit with a non-zero status, without a
traceback.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backends import BACKENDS, available_backends
from .datasets import raw_images
from .gradcheck import directional_gradient_check, gradient_check
from .networks import TwoLayerNet
from .version import __version__

__all__ = ["MODELS", "main"]

#: What ``--model`` takes, on ``train`` and ``gradcheck``.
MODELS = ("mlp", "convnet", "deepconvnet")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bpcore", description="Backpropagation you can read, on any Array API backend."
    )
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "gradcheck",
        help="the chapter's gradient check: backprop against central differences",
        description=(
            "Build the book's TwoLayerNet(784, 50, 10) (or a convolutional net: --model), feed "
            "it three images (labels 5, 0, 4) and compare gradient() "
            "with central differences, per parameter. Dropout masks are held fixed and batch "
            "normalization runs in training mode during the check."
        ),
    )
    check.add_argument(
        "--backend", help=f"one of {', '.join(BACKENDS)} (default: $BPCORE_BACKEND, else numpy)"
    )
    check.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the backend's)")
    check.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    check.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help=(
            "mlp (default): TwoLayerNet(784, HIDDEN, 10) on raw 28x28 images; convnet: the "
            "book's ch07 check, SimpleConvNet on random 10x10 images (10 filters of 3x3, 10 "
            "hidden units); deepconvnet: DeepConvNet's layers on random 12x12 images, 4 to 8 "
            "filters per convolution"
        ),
    )
    check.add_argument(
        "--hidden", type=int, default=50, help="hidden layer size of the mlp (default 50)"
    )
    check.add_argument("--seed", type=int, default=0, help="seed of weights and images")
    check.add_argument(
        "--directional",
        action="store_true",
        help="one random direction per parameter instead of every element",
    )

    train = sub.add_parser(
        "train",
        help="train a network (the book's train_neuralnet.py) on any backend",
        description=(
            "Train a MultiLayerNet on a dataset and report its accuracy. With no options: the "
            "embedded UCI digits on numpy, offline."
        ),
    )
    train.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits")
    train.add_argument("--data-dir", help="folder looked in first for MNIST/Fashion-MNIST files")
    train.add_argument(
        "--backend", help=f"one of {', '.join(BACKENDS)} (default: $BPCORE_BACKEND, else numpy)"
    )
    train.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the backend's)")
    train.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    train.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help=(
            "mlp (default): MultiLayerNet, or MultiLayerNetExtend with --dropout/--batchnorm; "
            "convnet: the book's SimpleConvNet; deepconvnet: its DeepConvNet (images are "
            "loaded unflattened for both)"
        ),
    )
    train.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="hidden layer sizes (default: 100; the conv nets' own default otherwise)",
    )
    train.add_argument(
        "--dropout", type=float, metavar="RATIO", help="mlp: dropout after each hidden layer"
    )
    train.add_argument(
        "--batchnorm", action="store_true", help="mlp: batch normalization in each hidden layer"
    )
    train.add_argument("--activation", default="relu", help="relu (default), sigmoid or tanh")
    train.add_argument(
        "--optimizer",
        default="adam",
        help="sgd, momentum, nesterov, adagrad, rmsprop or adam (default)",
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="L2 penalty 0.5*LAMBDA*sum(W**2) on the mlp's weights (default 0)",
    )
    train.add_argument(
        "--lr", type=float, help="learning rate (default: the optimizer's; 0.01, or 0.001 for adam)"
    )
    train.add_argument(
        "--batch-size", type=int, help="mini-batch size (default: 32 on digits, 100 otherwise)"
    )
    train.add_argument("--epochs", type=int, help="epochs (default: 20 on digits, 10 otherwise)")
    train.add_argument("--seed", type=int, default=0, help="seed of weights and shuffles")
    train.add_argument("--checkpoint", metavar="PATH", help="save a checkpoint after each epoch")
    train.add_argument("--resume", metavar="PATH", help="continue from a checkpoint")
    train.add_argument("--plot", metavar="PNG", help="save loss and accuracy curves (matplotlib)")
    train.add_argument(
        "--history",
        metavar="PATH",
        help="write the per-epoch history (loss, accuracies, seconds) after each epoch: CSV for "
        "a .csv name, else JSON",
    )
    train.add_argument(
        "--json", action="store_true", help="end stdout with one JSON line of the results"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    sub.add_parser("info", help="versions, available backends and their devices")
    return parser


def _check_network(args: argparse.Namespace) -> tuple[Any, np.ndarray]:
    """The network `bpcore gradcheck --model` names, and three raw images shaped for it."""
    from .convnets import DeepConvNet, SimpleConvNet

    where: dict[str, Any] = {"backend": args.backend, "device": args.device, "dtype": args.dtype}
    images = raw_images(3, seed=args.seed)
    if args.model == "mlp":
        return TwoLayerNet(784, args.hidden, 10, seed=args.seed, **where), images
    side = 10 if args.model == "convnet" else 12
    # Uniform pixels, as the book's ch07/gradient_check.py draws: a convolution over the raw
    # images' zero background, with the initial zero biases, puts whole feature maps exactly on
    # ReLU's kink, where a central difference reads 1/2 and backprop 0.
    crops = np.random.default_rng(args.seed).random((3, 1, side, side))
    if args.model == "convnet":
        conv = {"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1}
        net: Any = SimpleConvNet(
            (1, side, side), conv, hidden_size=10, weight_init_std=0.01, seed=args.seed, **where
        )
        return net, crops
    convs = [(4, 1), (4, 1), (8, 1), (8, 2), (8, 1), (8, 1)]  # the book's pattern, narrower
    params: dict[str, Any] = {
        f"conv_param_{i}": {"filter_num": fn, "filter_size": 3, "pad": pad, "stride": 1}
        for i, (fn, pad) in enumerate(convs, start=1)
    }
    net = DeepConvNet((1, side, side), **params, hidden_size=10, seed=args.seed, **where)
    return net, crops


def _gradcheck(args: argparse.Namespace) -> int:
    net, images = _check_network(args)
    x = net.backend_info.asarray(images)
    t = net.backend_info.asarray(np.array([5, 0, 4]))
    print(f"{net!r}")
    start = time.perf_counter()
    if args.directional:
        check = directional_gradient_check(net, x, t, seed=args.seed)
    else:
        check = gradient_check(net, x, t)
    seconds = time.perf_counter() - start
    print(f"{check.method} check in {check.dtype}, h={check.h:g}, {seconds:.1f} s")
    for key, error in check.items():
        note = " (agrees to within rounding noise)" if error == 0 else ""
        print(f"  {key}: max relative error {error:.3g}{note}")
    verdict = "passed" if check.passed else "FAILED"
    print(f"{verdict} (tolerance {check.tolerance:g})")
    return 0 if check.passed else 1


def _train(args: argparse.Namespace) -> int:
    from .backends import resolve_backend
    from .callbacks import HistoryLogger
    from .datasets import cache_home, load_dataset
    from .optimizers import OPTIMIZERS
    from .training import Trainer

    if args.plot:
        try:
            import matplotlib
        except ImportError:
            raise ImportError(
                '--plot needs matplotlib: pip install "bpcore[plot]" (or pip install matplotlib)'
            ) from None
        matplotlib.use("Agg")
    optimizer = args.optimizer.lower()
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {args.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
        )
    digits = args.dataset == "digits"
    batch_size = args.batch_size if args.batch_size is not None else (32 if digits else 100)
    epochs = args.epochs if args.epochs is not None else (20 if digits else 10)
    optimizer_param = {} if args.lr is None else {"lr": args.lr}

    conv = args.model != "mlp"
    if conv and (args.dropout is not None or args.batchnorm or args.weight_decay):
        raise ValueError("--dropout, --batchnorm and --weight-decay apply to --model mlp only")
    (x, t), (x_test, t_test) = load_dataset(
        args.dataset, data_dir=args.data_dir, flatten=not conv, progress=not args.quiet
    )
    # A library that compiles the training step (JAX) keeps its programs for the next run.
    resolve_backend(args.backend, args.device).cache_compilations(cache_home() / "compiled")
    net = _train_network(args, x.shape[1:])
    trainer = Trainer(
        net,
        x,
        t,
        x_test,
        t_test,
        epochs=epochs,
        mini_batch_size=batch_size,
        optimizer=optimizer,
        optimizer_param=optimizer_param,
        verbose=not args.quiet,
        seed=args.seed,
        checkpoint=args.checkpoint,
        resume=args.resume,
        callbacks=[HistoryLogger(args.history)] if args.history else [],
    )
    trainer.train()
    steps = -(-x.shape[0] // batch_size)
    results = {
        "dataset": args.dataset,
        "backend": net.backend,
        "device": str(net.device),
        "dtype": args.dtype,
        "model": args.model,
        "hidden": args.hidden,
        "optimizer": type(trainer.optimizer).__name__,
        "lr": trainer.optimizer.lr,
        "batch_size": batch_size,
        "epochs": trainer.epochs_done,
        "train_loss": float(sum(trainer.train_loss_list[-steps:]) / steps),
        "train_acc": trainer.train_acc_list[-1],
        "test_acc": trainer.test_acc_list[-1],
        "seconds": round(trainer.seconds, 3),
        "samples_per_second": round(
            x.shape[0] * trainer.epochs_done / max(trainer.seconds, 1e-9), 1
        ),
    }
    print(f"{net!r}")
    print(
        f"{args.dataset}: test accuracy {results['test_acc']:.4f}, train accuracy "
        f"{results['train_acc']:.4f}, loss {results['train_loss']:.4f}, "
        f"{trainer.epochs_done} epochs in {trainer.seconds:.1f} s "
        f"({results['samples_per_second']:,.0f} samples/s)"
    )
    if args.plot:
        _plot(trainer, args.plot, steps)
        print(f"curves saved to {args.plot}")
    if args.json:
        print(json.dumps(results))
    return 0


def _train_network(args: argparse.Namespace, sample_shape: tuple[int, ...]) -> Any:
    """The network `bpcore train --model` names, for samples of ``sample_shape``."""
    from .convnets import DeepConvNet, SimpleConvNet
    from .networks import MultiLayerNet, MultiLayerNetExtend

    where: dict[str, Any] = {"backend": args.backend, "device": args.device, "dtype": args.dtype}
    conv: dict[str, Any] = {"seed": args.seed, **where}
    if args.hidden is not None and args.model != "mlp":
        conv["hidden_size"] = _one_hidden(args.hidden)
    if args.model == "convnet":
        return SimpleConvNet(tuple(sample_shape), **conv)
    if args.model == "deepconvnet":
        return DeepConvNet(tuple(sample_shape), **conv)
    activation = str(args.activation).lower()
    kwargs: dict[str, Any] = {
        "activation": activation,
        "weight_init_std": "relu" if activation == "relu" else "sigmoid",
        "weight_decay_lambda": args.weight_decay,
        "seed": args.seed,
        **where,
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


def _one_hidden(sizes: list[int]) -> int:
    if len(sizes) != 1:
        raise ValueError(f"--hidden takes one size for the conv nets, got {len(sizes)}")
    return sizes[0]


def _plot(trainer: Any, path: str, steps: int) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    loss = trainer.train_loss_list
    ax_loss.plot(
        [i / steps for i in range(1, len(loss) + 1)], loss, lw=0.5, alpha=0.6, label="per step"
    )
    epochs = range(1, len(trainer.train_acc_list) + 1)
    means = [sum(loss[(e - 1) * steps : e * steps]) / steps for e in epochs]
    ax_loss.plot(list(epochs), means, marker="o", label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(list(epochs), trainer.train_acc_list, marker="o", label="train")
    ax_acc.plot(list(epochs), trainer.test_acc_list, marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.legend()
    fig.suptitle(repr(trainer.network), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _info() -> int:
    import array_api_compat

    print(f"bpcore {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"numpy {np.__version__}, array-api-compat {array_api_compat.__version__}")
    found = available_backends()
    for name, devices in found.items():
        version = getattr(sys.modules.get(name), "__version__", "?")
        shown = ", ".join(devices) if devices else "no device"
        print(f"  {name} {version}: {shown}")
    missing = [n for n in BACKENDS if n not in found]
    if missing:
        print(f"  not installed: {', '.join(missing)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bpcore`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "gradcheck":
            return _gradcheck(args)
        if args.command == "train":
            return _train(args)
        return _info()
    except (ValueError, TypeError, ImportError, OSError, RuntimeError, KeyError) as exc:
        # One line, no traceback: the messages name the problem (RuntimeError: CUDA errors;
        # OSError: missing or unreadable files; FloatingPointError: a diverging run).
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"bpcore {args.command}: error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"bpcore {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # anything unforeseen: still one line, with its type
        print(f"bpcore {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bpcore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
