"""One ``backend`` fixture drives every test and benchmark over every backend usable here.

The backends are numpy, array_api_strict, torch, jax and dask on the CPU (those installed), plus
cupy and torch on CUDA when a GPU is present; ``BPCORE_BACKENDS=numpy,torch`` or ``--backend numpy
--backend torch`` narrows them. A backend asked for by name but not usable here is an error, not
a skip.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

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
