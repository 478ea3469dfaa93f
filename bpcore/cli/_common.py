"""What the ``bpcore`` commands share: the usage error, argparse types, the backend options.

A private module of `bpcore.cli`: its names are for the command modules beside it, not for users.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..backends import BACKENDS, DTYPES

#: Every command's ``--help`` ends with the exit statuses and where ``--json`` output goes.
EPILOG = (
    "exit status: 0 success; 1 failure (a failed gradient check, missing or corrupt data or "
    "checkpoint, a diverging run); 2 usage error (a bad option or option value, a backend or "
    "device this machine lacks); 130 interrupted. With --json, stdout holds one JSON document "
    "and nothing else; other output goes to stderr."
)


class UsageError(Exception):
    """The options cannot work as given: exit status 2."""


@contextlib.contextmanager
def options() -> Iterator[None]:
    """Turn what building the options' objects raises into a usage error (exit status 2).

    Inside: resolving ``--backend``/``--device`` and building the network. What fails later
    (reading data, a checkpoint, training) is a failure, exit status 1.
    """
    try:
        yield
    except (ValueError, TypeError, ImportError) as exc:
        raise UsageError(str(exc)) from exc


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def seed(text: str) -> int:
    """An argparse type: a seed, an integer of at least 0 (what NumPy's generators take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def number(low: float, low_allowed: bool, high: float | None = None) -> Callable[[str], float]:
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


def output_file(text: str) -> str:
    """An argparse type: a file to write, in a folder that exists (a typo fails at once)."""
    parent = Path(text).parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {parent} to write {Path(text).name} in")
    return text


def _name(text: str) -> str:
    """A name as bpcore accepts it: case-insensitive, ``-`` for ``_`` (``array-api-strict``)."""
    return text.strip().lower().replace("-", "_")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--device``, ``--dtype``: where and in what a command computes."""
    parser.add_argument(
        "--backend",
        type=_name,
        choices=BACKENDS,
        help="the array library (default: $BPCORE_BACKEND, else numpy)",
    )
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the backend's)")
    parser.add_argument(
        "--dtype",
        type=str.lower,
        choices=list(DTYPES),
        default="float32",
        help="the parameters' dtype (default float32; float16 and bfloat16 where the backend "
        "has them)",
    )


def human(args: argparse.Namespace) -> IO[str]:
    """Where the human-readable lines go: stdout, or stderr when stdout is for ``--json``."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def finite(value: float) -> float | None:
    """A float JSON can hold (its standard has no NaN or infinity): None for those."""
    return value if math.isfinite(value) else None
