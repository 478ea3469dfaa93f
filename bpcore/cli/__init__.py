"""The ``bpcore`` command: ``train``, ``gradcheck``, ``bench``, ``compare`` and ``info``.

Its exit status is a contract scripts can rely on (`EXIT_STATUS`): 0 on success, 1 on a failure
(a failed gradient check, missing or corrupt data or checkpoint, a diverging run), 2 only for a
usage error (an unknown option, or an option value that cannot work: a negative rate, an unknown
backend, one that is not installed, a device this machine does not have). Errors print one line
on stderr, without a traceback. With ``--json``, stdout holds one JSON document and nothing
else; the human-readable lines go to stderr.

Each command is a module here that adds its options and, beside them, its handler
(`bpcore.cli.train`, `bpcore.cli.gradcheck`, `bpcore.cli.bench`, `bpcore.cli.compare`,
`bpcore.cli.info`); the networks ``--model`` names are in `bpcore.cli.models`. This module
assembles the parser and turns errors into exit statuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..version import __version__
from . import bench, compare, gradcheck, info, train
from ._common import EPILOG, UsageError
from .models import REGISTRY

__all__ = ["EXIT_STATUS", "MODELS", "main"]

#: What ``--model`` takes, on ``train`` and ``gradcheck``.
MODELS = tuple(REGISTRY)

#: The exit statuses of ``bpcore``, by meaning.
EXIT_STATUS = {"success": 0, "failure": 1, "usage error": 2, "interrupted": 130}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    """The ``bpcore`` parser; each command's subparser sets ``handler``, the function to run."""
    parser = _Parser(
        prog="bpcore",
        description="Backpropagation you can read, on any Array API backend.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    # Subparsers are made with the parent's class: a command's bad option is one line too.
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (gradcheck, train, bench, compare, info):  # the order --help lists them in
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bpcore`` command; return its exit status (see `EXIT_STATUS`)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version (0); a bad option, after its one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_STATUS["usage error"]
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
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
