"""``bpcore compare``: the same seeded network on every backend, layer by layer, in lock step.

Each layer's forward output and backward gradients on every backend named (all installed ones
by default) against a float64 NumPy reference (`bpcore.compare`); exit status 1 when a result
leaves its tolerance, and the report names the first backend, layer and pass where it did.
"""

from __future__ import annotations

import argparse
import sys

from ..backends import BACKENDS
from ._common import EPILOG, UsageError, human, options, positive_int, seed

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``compare`` and its options to the ``bpcore`` parser."""
    from ..compare import COMPARE_MODELS

    compare = sub.add_parser(
        "compare",
        help="compare every backend's layers with float64 NumPy, in lock step",
        description=(
            "Build the same seeded network on every backend named (all installed ones by "
            "default), from identical weights, train them in lock step and compare each layer's "
            "forward output and backward gradients with a float64 NumPy reference, within "
            "tolerances from the dtype and the layer's size. Also compares the compiled step "
            "with the eager one where a backend has both (JAX). Exit status 1 when a result "
            "leaves its tolerance: the report names the first backend, layer and pass."
        ),
        epilog=EPILOG,
    )
    compare.add_argument(
        "--backends",
        metavar="NAMES",
        help=f"comma-separated names, each optionally name:device (of {', '.join(BACKENDS)}); "
        "default: every installed backend on its default device",
    )
    compare.add_argument("--model", choices=list(COMPARE_MODELS), default="mlp")
    compare.add_argument("--steps", type=positive_int, default=2, help="SGD steps (default 2)")
    compare.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    compare.add_argument(
        "--dtype", type=str.lower, choices=["float32", "float64"], default="float32"
    )
    compare.add_argument("--seed", type=seed, default=0, help="seed of weights and batch")
    compare.add_argument(
        "--no-compiled", action="store_true", help="skip the compiled-against-eager comparison"
    )
    compare.add_argument(
        "--reference-kernels",
        action="store_true",
        help="run the layers on their Array API code only, not on a library's own kernels "
        "(PyTorch's convolution): see bpcore.kernels",
    )
    compare.add_argument(
        "--json", action="store_true", help="print the report as one JSON document on stdout"
    )
    compare.set_defaults(handler=run)


def parse_backends(text: str | None) -> list[str | tuple[str, str]] | None:
    """``"numpy,torch:cpu"`` as names and (name, device) pairs; None for every installed one."""
    if text is None:
        return None
    chosen: list[str | tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, device = item.partition(":")
        name = name.lower().replace("-", "_")
        if name not in BACKENDS:
            raise UsageError(f"unknown backend {name!r}; expected names from {', '.join(BACKENDS)}")
        chosen.append((name, device) if device else name)
    if not chosen:
        raise UsageError("--backends names no backend")
    return chosen


def run(args: argparse.Namespace) -> int:
    """Run ``bpcore compare``: 0 when every result is within its tolerance, else 1."""
    from ..compare import compare_backends

    backends = parse_backends(args.backends)
    with options():  # an unknown or missing backend or device is a usage error
        from ..backends import resolve_backend

        resolved = [
            resolve_backend(*b) if isinstance(b, tuple) else resolve_backend(b)
            for b in (backends or [])
        ] or None
    from ..kernels import reference_kernels

    with reference_kernels(args.reference_kernels):
        report = compare_backends(
            resolved,
            model=args.model,
            steps=args.steps,
            batch_size=args.batch_size,
            dtype=args.dtype,
            seed=args.seed,
            compiled=not args.no_compiled,
        )
    print(report.format(), file=human(args))
    if args.json:
        print(report.dumps())
    if not report.passed:
        print("bpcore compare: a result left its tolerance", file=sys.stderr)
    return 0 if report.passed else 1
