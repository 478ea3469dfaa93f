"""``bpcore train``: train a network (the book's train_neuralnet.py) on any backend."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..backends import resolve_backend
from ..datasets import DATASETS
from ..networks import ACTIVATIONS
from ..optimizers import OPTIMIZERS
from ..precision import PRECISIONS, resolve_dtypes
from ._common import (
    EPILOG,
    UsageError,
    add_backend_options,
    human,
    number,
    options,
    output_file,
    positive_int,
    seed,
)
from .models import DEFAULT_MODEL, REGISTRY, describe

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train`` and its options to the ``bpcore`` command's subparsers."""
    train = sub.add_parser(
        "train",
        epilog=EPILOG,
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
    add_backend_options(train)
    train.add_argument(
        "--precision",
        type=str.lower,
        choices=list(PRECISIONS),
        help="mixed precision: float32 parameters, the passes in float16 (with dynamic loss "
        "scaling) or bfloat16; with --dtype float32",
    )
    train.add_argument(
        "--model",
        choices=tuple(REGISTRY),
        default=DEFAULT_MODEL,
        # run() loads the data unflattened for every conv net.
        help=describe("train") + " (images are loaded unflattened for both)",
    )
    train.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="hidden layer sizes (default: 100; the conv nets' own default otherwise)",
    )
    train.add_argument(
        "--dropout",
        type=number(0.0, True, 1.0),
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
        type=number(0.0, True),
        default=0.0,
        metavar="LAMBDA",
        help="L2 penalty 0.5*LAMBDA*sum(W**2) on the mlp's weights (default 0)",
    )
    train.add_argument(
        "--lr",
        type=number(0.0, False),
        help="learning rate (default: the optimizer's; 0.01, or 0.001 for adam)",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        help="mini-batch size (default: 32 on digits, 100 otherwise)",
    )
    train.add_argument(
        "--epochs", type=positive_int, help="epochs (default: 20 on digits, 10 otherwise)"
    )
    train.add_argument(
        "--seed", type=seed, default=0, help="seed of weights and shuffles (an integer >= 0)"
    )
    train.add_argument(
        "--checkpoint",
        metavar="PATH",
        type=output_file,
        help="save a checkpoint after each epoch",
    )
    train.add_argument("--resume", metavar="PATH", help="continue from a checkpoint")
    train.add_argument(
        "--plot",
        metavar="PNG",
        type=output_file,
        help="save loss and accuracy curves (matplotlib)",
    )
    train.add_argument(
        "--history",
        metavar="PATH",
        type=output_file,
        help="write the per-epoch history (loss, accuracies, seconds) after each epoch: CSV for "
        "a .csv name, else JSON",
    )
    train.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON document on stdout (the rest goes to stderr)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    train.add_argument(
        "--validation-split",
        type=number(0.0, False, 1.0),
        metavar="FRACTION",
        help="hold out this fraction of the training set (drawn from --seed) as validation "
        "data: val_loss and val_acc after each epoch",
    )
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bpcore train``: train, report the accuracy, exit status 0."""
    from ..callbacks import HistoryLogger
    from ..datasets import cache_home, load_dataset
    from ..training import Trainer

    out = human(args)
    model = REGISTRY[args.model]
    conv = model.conv
    if conv and (args.dropout is not None or args.batchnorm or args.weight_decay):
        raise UsageError("--dropout, --batchnorm and --weight-decay apply to --model mlp only")
    if conv and args.hidden is not None and len(args.hidden) != 1:
        raise UsageError(f"--hidden takes one size for the conv nets, got {len(args.hidden)}")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            raise UsageError(
                '--plot needs matplotlib: pip install "bpcore[plot]" (or pip install matplotlib)'
            ) from None
        matplotlib.use("Agg")
    with options():  # before any data is read: a bad backend, device or dtype fails at once
        backend = resolve_backend(args.backend, args.device)
        resolve_dtypes(backend, args.dtype, args.precision)
    digits = args.dataset == "digits"
    batch_size = args.batch_size if args.batch_size is not None else (32 if digits else 100)
    epochs = args.epochs if args.epochs is not None else (20 if digits else 10)
    optimizer_param = {} if args.lr is None else {"lr": args.lr}

    (x, t), (x_test, t_test) = load_dataset(
        args.dataset, data_dir=args.data_dir, flatten=not conv, progress=not args.quiet
    )
    # A library that compiles the training step (JAX) keeps its programs for the next run.
    backend.cache_compilations(cache_home() / "compiled")
    with options():
        net = model.build(args, x.shape[1:], backend)
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
        validation_split=args.validation_split,
    )
    print(f"{net!r}", file=out)  # before the epoch lines, which go to stderr as they come
    if trainer.epochs_done >= trainer.epochs:
        print(
            f"bpcore train: nothing to train: {args.resume} has {trainer.epochs_done} epochs "
            f"done, and --epochs {epochs} is the total; give a larger --epochs to go on",
            file=sys.stderr,
        )
    trainer.train()
    steps = trainer.iter_per_epoch
    last: dict[str, float] = trainer.epoch_history[-1] if trainer.epoch_history else {}
    config = net.config
    results: dict[str, Any] = {
        "network": repr(net),
        "dataset": args.dataset,
        "backend": net.backend,
        "device": net.backend_info.device_name,
        "dtype": args.dtype,
        "precision": args.precision,
        "model": args.model,
        "hidden": config.get("hidden_size_list", [config.get("hidden_size")]),
        "seed": args.seed,
        "optimizer": type(trainer.optimizer).__name__,
        "lr": trainer.optimizer.lr,
        "batch_size": batch_size,
        "epochs": trainer.epochs_done,
        "train_loss": float(sum(trainer.train_loss_list[-steps:]) / steps),
        "train_acc": trainer.train_acc_list[-1],
        "test_acc": trainer.test_acc_list[-1],
        **{k: last[k] for k in ("test_loss", "val_loss", "val_acc") if k in last},
        "seconds": round(trainer.seconds, 3),
        "samples_per_second": round(
            trainer.x_train.shape[0] * trainer.epochs_done / max(trainer.seconds, 1e-9), 1
        ),
    }
    validation = f", validation accuracy {results['val_acc']:.4f}" if "val_acc" in results else ""
    print(
        f"{args.dataset}: test accuracy {results['test_acc']:.4f}, train accuracy "
        f"{results['train_acc']:.4f}{validation}, loss {results['train_loss']:.4f}, "
        f"{trainer.epochs_done} epoch{'' if trainer.epochs_done == 1 else 's'} in "
        f"{trainer.seconds:.1f} s ({results['samples_per_second']:,.0f} samples/s)",
        file=out,
    )
    if args.plot:
        _plot(trainer, args.plot, steps)
        print(f"curves saved to {args.plot}", file=out)
    if args.json:
        print(json.dumps(results, allow_nan=False))
    return 0


def _plot(trainer: Any, path: str, steps: int) -> None:
    """Save the loss (per step and epoch mean) and accuracy curves to ``path``."""
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
    fig.suptitle(plot_title(trainer.network), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_title(network: Any, width: int = 110) -> str:
    """The network's repr, wrapped at its commas to lines that fit the 10-inch figure."""
    import textwrap

    return "\n".join(textwrap.wrap(repr(network), width=width, break_long_words=False))
