"""One ``backend`` fixture drives every test and benchmark over every backend usable here.

The backends are numpy, array_api_strict, torch, jax and dask on the CPU (those installed), plus
cupy and torch on CUDA when a GPU is present; ``BPCORE_BACKENDS=numpy,torch`` or ``--backend numpy
--backend torch`` narrows them. A backend asked for by name but not usable here is an error, not
a skip.
"""

from __future__ import annotations

import os
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per pytest-xdist worker (there is a worker per core): the libraries' own pools
    # (OpenMP in PyTorch, OpenBLAS) would otherwise fight the other workers for the same cores,
    # which costs far more than it gives on the small arrays of the tests. Read when each
    # library loads, so set before any of them is imported; CLI subprocesses inherit them.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# JAX compiles every operation for each new shape (eagerly too): its compiled programs go to a
# cache on disk that every pytest-xdist worker reads, so that the workers, which share JAX's
# cases between them, compile a shape once between them rather than once each. Set before JAX
# is imported, which reads them then.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"bpcore-tests-jax-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def _fast_xla_compiles() -> dict[str, str]:
    """Have XLA's CPU compiler compile the tests' programs in about half the time, if it can.

    Compiling (every eager operation, for every new shape) is most of JAX's test time, and the
    tests' arrays are too small for XLA's fusion emitters and LLVM optimizations to pay back
    what they cost to compile (measured on 2 cores: 73 s -> 41 s for the JAX gradient checks of
    the conv nets and the step tests). A jaxlib that no longer knows a flag aborts the process,
    so the flags are tried once, in a subprocess, by the process that starts the run; its
    pytest-xdist workers and CLI subprocesses inherit them. A user's XLA_FLAGS win. Returns
    the variables to set.
    """
    import importlib.util
    import subprocess
    import sys

    if "XLA_FLAGS" in os.environ or os.environ.get("PYTEST_XDIST_WORKER"):
        return {}
    if importlib.util.find_spec("jax") is None:
        return {}
    flags = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
    probe = subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; jnp.ones(2).sum().block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        check=False,
    )
    return {"XLA_FLAGS": flags} if probe.returncode == 0 else {}


os.environ.update(_fast_xla_compiles())

# Imported only now (hence noqa: E402): the libraries read the variables above when they load.
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bpcore.backends import DaskBackend  # noqa: E402
from bpcore.testing import backend_cases, parametrize_backends, parse_backend_names  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        help="run on this backend only (repeatable; overrides BPCORE_BACKENDS)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    names = config.getoption("--backend")
    try:
        cases = backend_cases(parse_backend_names(",".join(names)) if names else None)
    except ValueError as exc:
        return f"bpcore backends: {exc}"
    return "bpcore backends: " + ", ".join(f"{c.name}@{c.device}" for c in cases)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_backends(metafunc, metafunc.config.getoption("--backend"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first: pytest-xdist hands tests out in this order, and a long test handed out
    last keeps one core busy while the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _dask_in_the_test_thread(request: pytest.FixtureRequest):
    """Dask cases compute in the test's own thread, as the other backends do.

    Dask's default (threaded) scheduler would run each step's few small tasks on a pool of
    threads competing for the worker's one core; the graphs are the same either way, and
    tests/test_dask.py runs them on a real cluster of worker processes.
    """
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend")
    if getattr(case, "name", None) != DaskBackend.name:
        yield
        return
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> str:
    """The network dtype, as a name."""
    return str(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed host generator: test data is drawn on the host, then moved to the backend."""
    return np.random.default_rng(20261127)


@pytest.fixture
def fashion_mnist_dir():
    """Real Fashion-MNIST from Debian's dataset-fashion-mnist package.

    CI installs it and sets BPCORE_REQUIRE_DATA=1, so that its absence fails the run instead of
    skipping the tests that need it.
    """
    from pathlib import Path

    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "t10k-labels-idx1-ubyte.gz").is_file():
        if os.environ.get("BPCORE_REQUIRE_DATA") == "1":
            pytest.fail(f"{folder} is missing: apt-get install dataset-fashion-mnist")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return folder
