"""The ``bpcore`` command: ``bpcore gradcheck`` and ``bpcore info``.

Bad options and failures print one line on stderr and exit with a non-zero status, without a
traceback.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import __version__
from .backends import BACKENDS, available_backends
from .gradcheck import directional_gradient_check, gradient_check
from .networks import TwoLayerNet
from .testing import raw_images

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpcore", description="Backpropagation you can read, on any Array API backend."
    )
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "gradcheck",
        help="the chapter's gradient check: backprop against central differences",
        description=(
            "Build the book's TwoLayerNet(784, 50, 10), feed it three raw uint8 28x28 images "
            "(random strokes, labels 5, 0, 4) and compare gradient() with central differences, "
            "per parameter."
        ),
    )
    check.add_argument(
        "--backend", help=f"one of {', '.join(BACKENDS)} (default: $BPCORE_BACKEND, else numpy)"
    )
    check.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the backend's)")
    check.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    check.add_argument("--hidden", type=int, default=50, help="hidden layer size (default 50)")
    check.add_argument("--seed", type=int, default=0, help="seed of weights and images")
    check.add_argument(
        "--directional",
        action="store_true",
        help="one random direction per parameter instead of every element",
    )

    sub.add_parser("info", help="versions, available backends and their devices")
    return parser


def _gradcheck(args: argparse.Namespace) -> int:
    net = TwoLayerNet(
        784,
        args.hidden,
        10,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
    )
    x = net.backend_info.asarray(raw_images(3, seed=args.seed))
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
        return _info()
    except (ValueError, TypeError, ImportError, RuntimeError) as exc:  # RuntimeError: CUDA
        print(f"bpcore {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
