"""``bpcore bench``: one training step of the book's networks on every backend, beside its peers.

Times the rows users run (the book's loop, the Trainer's step, the compiled step) on every
backend and device named (all installed ones by default), and the peers (the book's NumPy code,
PyTorch eager, the matrix-product floor), in interleaved rounds (`bpcore.bench`). Prints a table
(with a progress bar on a terminal while it runs); ``--json`` gives one document,
``--plot`` a chart, ``--baseline`` marks the rows slower than an earlier run's.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..backends import BACKENDS
from ..bench.workloads import BENCH_DTYPES, BENCH_OPTIMIZERS
from ._common import EPILOG, human, options, output_file, positive_int, seed
from .compare import parse_backends

__all__ = ["add_parser", "run"]


def _models(text: str) -> list[str]:
    from ..bench import parse_model

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one model")
    for name in names:
        try:
            parse_model(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    return names


def _sizes(text: str) -> list[int]:
    sizes = [positive_int(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one batch size")
    return sizes


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench`` and its options to the ``bpcore`` parser."""
    bench = sub.add_parser(
        "bench",
        help="time a training step on every backend, beside the book's code and PyTorch",
        description=(
            "Time one training step (SGD, or Adam) of the book's networks on every backend and "
            "device named (all installed ones by default): the book's loop through the public API, "
            "the Trainer's step and the compiled step where a backend has one, beside the "
            "book's NumPy code, PyTorch eager and (for MLPs) the matrix-product floor. Rounds "
            "are interleaved across rows; the first call (warm-up, compilation) is reported "
            "apart; every row waits for its device. Exit status 1 when a row fails."
        ),
        epilog=EPILOG,
    )
    bench.add_argument(
        "--models",
        type=_models,
        metavar="NAMES",
        help="comma-separated: mlp (784-50-10), mlp-H or mlp-H-H... (hidden sizes), convnet, "
        "deepconvnet (default: mlp,mlp-1000,convnet,deepconvnet)",
    )
    bench.add_argument(
        "--backends",
        metavar="NAMES",
        help=f"comma-separated names, each optionally name:device (of {', '.join(BACKENDS)}); "
        "default: every installed backend, on the CPU and the first GPU it has",
    )
    bench.add_argument(
        "--batch-sizes",
        type=_sizes,
        metavar="SIZES",
        help="comma-separated; several make a sweep (default 100)",
    )
    bench.add_argument(
        "--dtype",
        type=str.lower,
        choices=list(BENCH_DTYPES),
        default="float32",
        help="what the steps compute in (default float32); a mixed precision times the backends "
        "that have its half dtype, and PyTorch eager with autocast",
    )
    bench.add_argument(
        "--optimizer",
        type=str.lower,
        choices=list(BENCH_OPTIMIZERS),
        default="sgd",
        help="what every row steps with, at the book's learning rate: sgd (0.01, the default) or "
        "adam (0.001); bpcore's, the book's code's and torch.optim's",
    )
    bench.add_argument("--rounds", type=positive_int, help="timed rounds per row (default 10)")
    bench.add_argument("--seed", type=seed, default=0, help="seed of weights and batch")
    bench.add_argument(
        "--quick",
        action="store_true",
        help="mlp and convnet at batch 100, 5 rounds (about a minute on 2 CPU cores); "
        "--models, --batch-sizes and --rounds override its parts",
    )
    bench.add_argument("--no-peers", action="store_true", help="time bpcore's rows only")
    bench.add_argument(
        "--json", action="store_true", help="print the report as one JSON document on stdout"
    )
    bench.add_argument("--plot", type=output_file, metavar="PNG", help="write a chart")
    bench.add_argument(
        "--baseline",
        metavar="OLD.json",
        help="an earlier --json document: mark rows slower (or faster) beyond the noise",
    )
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bpcore bench``: 0 when every row ran and trained, else 1."""
    from ..bench import DEFAULT_MODELS, QUICK, load_baseline, run_bench
    from ..bench.report import optimizer_of

    preset: dict[str, Any] = QUICK if args.quick else {"rounds": 10}
    models: list[str] = args.models or preset.get("models") or list(DEFAULT_MODELS)
    batch_sizes: list[int] = args.batch_sizes or preset.get("batch_sizes") or [100]
    rounds: int = args.rounds or preset["rounds"]
    backends = parse_backends(args.backends)
    with options():  # unknown backends, devices, a bad baseline, a missing extra: usage errors
        from ..backends import resolve_backend
        from ..bench.timing import stats_of

        stats_of([1.0])  # pytest-benchmark is there
        old = load_baseline(args.baseline) if args.baseline else None
        if old is not None and optimizer_of(old["settings"]) != args.optimizer:
            raise ValueError(
                f"--baseline {args.baseline} stepped with {optimizer_of(old['settings'])}, this "
                f"run with {args.optimizer}: pass --optimizer {optimizer_of(old['settings'])}"
            )
        resolved = [
            resolve_backend(*b) if isinstance(b, tuple) else resolve_backend(b)
            for b in (backends or [])
        ] or None
        if args.plot:
            import matplotlib  # noqa: F401  (the chart is drawn after minutes of timing)
    report = run_bench(
        models,
        resolved,
        batch_sizes=batch_sizes,
        dtype=args.dtype,
        optimizer=args.optimizer,
        rounds=rounds,
        seed=args.seed,
        peers=not args.no_peers,
        progress=True,
    )
    if old is not None:
        report.mark_baseline(old)
    print(report.format(), file=human(args))
    if args.plot:
        report.plot(args.plot)
    if args.json:
        print(report.dumps())
    if report.failed:
        print("bpcore bench: a row failed (see FAILED above)", file=sys.stderr)
    return 1 if report.failed else 0
