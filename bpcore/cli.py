"""The ``bpcore`` command: ``bpcore train``, ``bpcore gradcheck`` and ``bpcore info``.

Its exit status is a contract scripts can rely on (`EXIT_STATUS`): 0 on success, 1 on a failure
(a failed gradient check, missing or corrupt data or checkpoint, a diverging run), 2 only for a
usage error (an unknown option, or an option value that cannot work: a negative rate, an unknown
backend, one that is not installed, a device this machine does not have). Errors print one line
on stderr, without a traceback. With ``--json``, stdout holds one JSON document and nothing
else; the human-readable lines go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np

from .backends import BACKENDS, resolve_backend
from .datasets import DATASETS, raw_images
from .gradcheck import directional_gradient_check, gradient_check
from .networks import ACTIVATIONS, TwoLayerNet
from .optimizers import OPTIMIZERS
from .version import __version__

__all__ = ["EXIT_STATUS", "MODELS", "main"]

#: What ``--model`` takes, on ``train`` and ``gradcheck``.
MODELS = ("mlp", "convnet", "deepconvnet")

#: The exit statuses of ``bpcore``, by meaning.
EXIT_STATUS = {"success": 0, "failure": 1, "usage error": 2, "interrupted": 130}

_EPILOG = (
    "exit status: 0 success; 1 failure (a failed gradient check, missing or corrupt data or "
    "checkpoint, a diverging run); 2 usage error (a bad option or option value, a backend or "
    "device this machine lacks); 130 interrupted. With --json, stdout holds one JSON document "
    "and nothing else; other output goes to stderr."
)


class _UsageError(Exception):
    """The options cannot work as given: exit status 2."""


@contextlib.contextmanager
def _options() -> Iterator[None]:
    """Turn what building the options' objects raises into a usage error (exit status 2).

    Inside: resolving ``--backend``/``--device`` and building the network. What fails later
    (reading data, a checkpoint, training) is a failure, exit status 1.
    """
    try:
        yield
    except (ValueError, TypeError, ImportError) as exc:
        raise _UsageError(str(exc)) from exc


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number(low: float, low_allowed: bool, high: float | None = None) -> Any:
    """An argparse type: a finite float above ``low`` (or equal, if allowed), below ``high``."""
    interval = f"{'[' if low_allowed else '('}{low:g}, {'inf' if high is None else f'{high:g}'})"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = value >= low if low_allowed else value > low
        if not (math.isfinite(value) and inside and (high is None or value < high)):
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}")
        return value

    return parse


def _name(text: str) -> str:
    """A name as bpcore accepts it: case-insensitive, ``-`` for ``_`` (``array-api-strict``)."""
    return text.strip().lower().replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bpcore",
        description="Backpropagation you can read, on any Array API backend.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "gradcheck",
        epilog=_EPILOG,
        help="the chapter's gradient check: backprop against central differences",
        description=(
            "Build the book's TwoLayerNet(784, 50, 10) (or a convolutional net: --model), feed "
            "it three images (labels 5, 0, 4) and compare gradient() "
            "with central differences, per parameter. Dropout masks are held fixed and batch "
            "normalization runs in training mode during the check."
        ),
    )
    _where(check)
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
        "--hidden",
        type=_positive_int,
        default=50,
        help="hidden layer size of the mlp (default 50)",
    )
    check.add_argument("--seed", type=int, default=0, help="seed of weights and images")
    check.add_argument(
        "--directional",
        action="store_true",
        help="one random direction per parameter instead of every element",
    )
    check.add_argument(
        "--json", action="store_true", help="print the check as one JSON document on stdout"
    )

    train = sub.add_parser(
        "train",
        epilog=_EPILOG,
        help="train a network (the book's train_neuralnet.py) on any backend",
        description=(
            "Train a MultiLayerNet on a dataset and report its accuracy. With no options: the "
            "embedded UCI digits on numpy, offline."
        ),
    )
    train.add_argument(
        "--dataset",
        type=str.lower,
        choices=["digits", *DATASETS],
        default="digits",
        help="digits (default: embedded, offline), mnist or fashion-mnist (downloaded once)",
    )
    train.add_argument("--data-dir", help="folder looked in first for MNIST/Fashion-MNIST files")
    _where(train)
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
        type=_positive_int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="hidden layer sizes (default: 100; the conv nets' own default otherwise)",
    )
    train.add_argument(
        "--dropout",
        type=_number(0.0, True, 1.0),
        metavar="RATIO",
        help="mlp: dropout after each hidden layer, RATIO in [0, 1)",
    )
    train.add_argument(
        "--batchnorm", action="store_true", help="mlp: batch normalization in each hidden layer"
    )
    train.add_argument(
        "--activation",
        type=str.lower,
        choices=list(ACTIVATIONS),
        default="relu",
        help="the hidden layers' activation (default relu)",
    )
    train.add_argument(
        "--optimizer",
        type=str.lower,
        choices=list(OPTIMIZERS),
        default="adam",
        help="the book's optimizers (default adam)",
    )
    train.add_argument(
        "--weight-decay",
        type=_number(0.0, True),
        default=0.0,
        metavar="LAMBDA",
        help="L2 penalty 0.5*LAMBDA*sum(W**2) on the mlp's weights (default 0)",
    )
    train.add_argument(
        "--lr",
        type=_number(0.0, False),
        help="learning rate (default: the optimizer's; 0.01, or 0.001 for adam)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        help="mini-batch size (default: 32 on digits, 100 otherwise)",
    )
    train.add_argument(
        "--epochs", type=_positive_int, help="epochs (default: 20 on digits, 10 otherwise)"
    )
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
        "--json",
        action="store_true",
        help="print the results as one JSON document on stdout (the rest goes to stderr)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    info = sub.add_parser(
        "info",
        epilog=_EPILOG,
        help="the environment for a bug report: versions, backends, GPUs, threads",
        description=(
            "Report Python, the platform, bpcore's and every backend's version, the devices "
            "each backend sees (GPU names and memory, CUDA driver and runtime), the BLAS and "
            "OpenMP thread pools (threadpoolctl) and the BPCORE_* environment variables."
        ),
    )
    info.add_argument(
        "--json", action="store_true", help="print the report as one JSON document on stdout"
    )
    return parser


def _where(sub: argparse.ArgumentParser) -> None:
    """``--backend``, ``--device``, ``--dtype``: where and in what a command computes."""
    sub.add_argument(
        "--backend",
        type=_name,
        choices=BACKENDS,
        help="the array library (default: $BPCORE_BACKEND, else numpy)",
    )
    sub.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the backend's)")
    sub.add_argument(
        "--dtype",
        type=str.lower,
        choices=["float32", "float64"],
        default="float32",
        help="the parameters' dtype (default float32)",
    )


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


def _human(args: argparse.Namespace) -> IO[str]:
    """Where the human-readable lines go: stdout, or stderr when stdout is for ``--json``."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def _finite(value: float) -> float | None:
    """A float JSON can hold (its standard has no NaN or infinity): None for those."""
    return value if math.isfinite(value) else None


def _gradcheck(args: argparse.Namespace) -> int:
    out = _human(args)
    with _options():  # the network resolves --backend and --device
        net, images = _check_network(args)
    x = net.backend_info.asarray(images)
    t = net.backend_info.asarray(np.array([5, 0, 4]))
    print(f"{net!r}", file=out)
    start = time.perf_counter()
    if args.directional:
        check = directional_gradient_check(net, x, t, seed=args.seed)
    else:
        check = gradient_check(net, x, t)
    seconds = time.perf_counter() - start
    print(f"{check.method} check in {check.dtype}, h={check.h:g}, {seconds:.1f} s", file=out)
    for key, error in check.items():
        note = " (agrees to within rounding noise)" if error == 0 else ""
        print(f"  {key}: max relative error {error:.3g}{note}", file=out)
    verdict = "passed" if check.passed else "FAILED"
    print(f"{verdict} (tolerance {check.tolerance:g})", file=out)
    if args.json:
        document = {
            "network": repr(net),
            "model": args.model,
            "backend": net.backend,
            "device": str(net.device),
            "method": check.method,
            "dtype": check.dtype,
            "h": check.h,
            "tolerance": check.tolerance,
            "errors": {key: _finite(float(error)) for key, error in check.items()},
            "passed": bool(check.passed),
            "seconds": round(seconds, 3),
        }
        print(json.dumps(document, allow_nan=False))
    return 0 if check.passed else 1


def _train(args: argparse.Namespace) -> int:
    from .callbacks import HistoryLogger
    from .datasets import cache_home, load_dataset
    from .training import Trainer

    out = _human(args)
    conv = args.model != "mlp"
    if conv and (args.dropout is not None or args.batchnorm or args.weight_decay):
        raise _UsageError("--dropout, --batchnorm and --weight-decay apply to --model mlp only")
    if conv and args.hidden is not None and len(args.hidden) != 1:
        raise _UsageError(f"--hidden takes one size for the conv nets, got {len(args.hidden)}")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            raise _UsageError(
                '--plot needs matplotlib: pip install "bpcore[plot]" (or pip install matplotlib)'
            ) from None
        matplotlib.use("Agg")
    with _options():  # before any data is read: a bad backend or device fails at once
        backend = resolve_backend(args.backend, args.device)
    digits = args.dataset == "digits"
    batch_size = args.batch_size if args.batch_size is not None else (32 if digits else 100)
    epochs = args.epochs if args.epochs is not None else (20 if digits else 10)
    optimizer_param = {} if args.lr is None else {"lr": args.lr}

    (x, t), (x_test, t_test) = load_dataset(
        args.dataset, data_dir=args.data_dir, flatten=not conv, progress=not args.quiet
    )
    # A library that compiles the training step (JAX) keeps its programs for the next run.
    backend.cache_compilations(cache_home() / "compiled")
    with _options():
        net = _train_network(args, x.shape[1:])
    trainer = Trainer(
        net,
        x,
        t,
        x_test,
        t_test,
        epochs=epochs,
        mini_batch_size=batch_size,
        optimizer=args.optimizer,
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
        "network": repr(net),
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
    print(f"{net!r}", file=out)
    print(
        f"{args.dataset}: test accuracy {results['test_acc']:.4f}, train accuracy "
        f"{results['train_acc']:.4f}, loss {results['train_loss']:.4f}, "
        f"{trainer.epochs_done} epochs in {trainer.seconds:.1f} s "
        f"({results['samples_per_second']:,.0f} samples/s)",
        file=out,
    )
    if args.plot:
        _plot(trainer, args.plot, steps)
        print(f"curves saved to {args.plot}", file=out)
    if args.json:
        print(json.dumps(results, allow_nan=False))
    return 0


def _train_network(args: argparse.Namespace, sample_shape: tuple[int, ...]) -> Any:
    """The network `bpcore train --model` names, for samples of ``sample_shape``."""
    from .convnets import DeepConvNet, SimpleConvNet
    from .networks import MultiLayerNet, MultiLayerNetExtend

    where: dict[str, Any] = {"backend": args.backend, "device": args.device, "dtype": args.dtype}
    conv: dict[str, Any] = {"seed": args.seed, **where}
    if args.hidden is not None and args.model != "mlp":
        conv["hidden_size"] = args.hidden[0]
    if args.model == "convnet":
        return SimpleConvNet(tuple(sample_shape), **conv)
    if args.model == "deepconvnet":
        return DeepConvNet(tuple(sample_shape), **conv)
    activation = args.activation
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


def _info(args: argparse.Namespace) -> int:
    from .environment import environment_info, format_environment

    info = environment_info()
    print(json.dumps(info) if args.json else format_environment(info))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bpcore`` command; return its exit status (see `EXIT_STATUS`)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version (0); a bad option, after its one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_STATUS["usage error"]
    try:
        if args.command == "gradcheck":
            return _gradcheck(args)
        if args.command == "train":
            return _train(args)
        return _info(args)
    except _UsageError as exc:
        _error(args.command, f"{_one_line(exc)} (see bpcore {args.command} --help)")
        return EXIT_STATUS["usage error"]
    except KeyboardInterrupt:
        print(f"bpcore {args.command}: interrupted", file=sys.stderr)
        return EXIT_STATUS["interrupted"]
    except (ValueError, TypeError, ImportError, OSError, RuntimeError, KeyError) as exc:
        # The messages name the problem (OSError: missing or unreadable files; ValueError:
        # corrupt data or checkpoints; RuntimeError: CUDA errors).
        _error(args.command, _one_line(exc))
        return EXIT_STATUS["failure"]
    except Exception as exc:  # a diverging run, or anything unforeseen: one line, with its type
        _error(args.command, f"{type(exc).__name__}: {_one_line(exc)}")
        return EXIT_STATUS["failure"]


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _error(command: str, message: str) -> None:
    print(f"bpcore {command}: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
