"""``bpcore info``: the environment for a bug report (versions, backends, GPUs, threads)."""

from __future__ import annotations

import argparse
import json

from ._common import EPILOG

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``info`` and its options to the ``bpcore`` command's subparsers."""
    info = sub.add_parser(
        "info",
        epilog=EPILOG,
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
    info.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bpcore info``: print the report, exit status 0."""
    from ..environment import environment_info, format_environment

    info = environment_info()
    print(json.dumps(info) if args.json else format_environment(info))
    return 0
