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


import numpy as np
import pytest

from bpcore.backends import DaskBackend
from bpcore.testing import backend_cases, parametrize_backends, parse_backend_names


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
