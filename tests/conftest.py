"""The test suite's own configuration (the benchmarks, which time what users get, do not have it).

XLA's CPU compiler spends most of JAX's test time compiling tiny programs (every eager operation,
for every new shape: some 65 ms each on 2 cores). Without its fusion emitters and at LLVM
optimization level 0 it compiles them in about half the time, and the tests' arrays are too
small for either to pay back (measured: the pytest step of CI 8:10 -> 5:46).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bpcore.testing import parse_backend_names

FAST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
_PROBE = (
    "import jax, jax.numpy as jnp; jnp.ones(2).sum().block_until_ready(); "
    "print(jax.devices()[0].platform)"
)


def pytest_configure(config: pytest.Config) -> None:
    """Set `FAST_XLA_FLAGS` for a run that tests JAX on the CPU, if this jaxlib takes them.

    A jaxlib that no longer knows a flag aborts the process, so the flags are tried once, in a
    subprocess, by the process that starts the run (before any JAX is loaded); its pytest-xdist
    workers and CLI subprocesses inherit them. Not on a GPU, whose compiles the flags would
    change too, and not when the user set XLA_FLAGS.
    """
    if "XLA_FLAGS" in os.environ or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    names = ",".join(config.getoption("--backend")) or os.environ.get("BPCORE_BACKENDS", "")
    if names.strip() and "jax" not in parse_backend_names(names):
        return
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, "XLA_FLAGS": FAST_XLA_FLAGS},
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0 and probe.stdout.strip() == "cpu":
        os.environ["XLA_FLAGS"] = FAST_XLA_FLAGS
