"""``bpcore gradcheck``: the chapter's gradient check, backprop against central differences."""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from ..backends import resolve_backend
from ..gradcheck import directional_gradient_check, gradient_check
from ._common import EPILOG, add_backend_options, finite, human, options, positive_int, seed
from .models import DEFAULT_MODEL, REGISTRY, describe

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gradcheck`` and its options to the ``bpcore`` command's subparsers."""
    check = sub.add_parser(
        "gradcheck",
        epilog=EPILOG,
        help="the chapter's gradient check: backprop against central differences",
        description=(
            "Build the book's TwoLayerNet(784, 50, 10) (or a convolutional net: --model), feed "
            "it three images (labels 5, 0, 4) and compare gradient() "
            "with central differences, per parameter. Dropout masks are held fixed and batch "
            "normalization runs in training mode during the check."
        ),
    )
    add_backend_options(check)
    check.add_argument(
        "--model", choices=tuple(REGISTRY), default=DEFAULT_MODEL, help=describe("gradcheck")
    )
    check.add_argument(
        "--hidden",
        type=positive_int,
        default=50,
        help="hidden layer size of the mlp (default 50)",
    )
    check.add_argument("--seed", type=seed, default=0, help="seed of weights and images")
    check.add_argument(
        "--directional",
        action="store_true",
        help="one random direction per parameter instead of every element",
    )
    check.add_argument(
        "--json", action="store_true", help="print the check as one JSON document on stdout"
    )
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bpcore gradcheck``: 0 if every parameter's gradient agrees, else 1."""
    out = human(args)
    with options():  # an unknown or missing backend, a device it lacks: exit status 2
        backend = resolve_backend(args.backend, args.device)
        net, images = REGISTRY[args.model].build_check(args, backend)
    x = net.backend_info.asarray(images)
    t = net.backend_info.asarray(np.array([5, 0, 4]))
    print(f"{net!r}", file=out)
    # Said before the check, which takes seconds (the element-wise one, two forward passes per
    # parameter element): the user sees at once what runs, and why it takes a while.
    elements = sum(int(np.prod(p.shape)) for p in net.params.values())
    passes = 2 * len(net.params) if args.directional else 2 * elements
    print(
        f"checking {len(net.params)} parameters ({elements:,} elements) against central "
        f"differences: {passes:,} forward passes...",
        file=out,
        flush=True,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():  # the dtype the check runs in is said below
        warnings.simplefilter("ignore", UserWarning)
        if args.directional:
            check = directional_gradient_check(net, x, t, seed=args.seed)
        else:
            check = gradient_check(net, x, t)
    seconds = time.perf_counter() - start
    print(f"{check.method} check in {check.dtype}, h={check.h:g}, {seconds:.1f} s", file=out)
    if check.dtype != args.dtype:
        print(
            f"  (--dtype {args.dtype} asked; gradient checks run in {check.dtype}, where a "
            f"central difference is not rounding noise)",
            file=out,
        )
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
            "device": net.backend_info.device_name,
            "method": check.method,
            "dtype": check.dtype,
            "h": check.h,
            "tolerance": check.tolerance,
            "errors": {key: finite(float(error)) for key, error in check.items()},
            "passed": bool(check.passed),
            "seconds": round(seconds, 3),
        }
        print(json.dumps(document, allow_nan=False))
    return 0 if check.passed else 1
