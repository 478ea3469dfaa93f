"""One ``backend`` fixture drives every test over every backend usable here.

The backends are numpy, array_api_strict and torch on the CPU, plus cupy and torch on CUDA when a
GPU is present; ``BPCORE_BACKENDS=numpy,torch`` or ``--backend numpy --backend torch`` narrows
them. A backend asked for by name but not usable here is an error, not a skip.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpcore.testing import BackendCase, backend_cases, parse_backend_names

#: Tolerances for comparing results computed in each dtype.
RTOL = {"float32": 2e-4, "float64": 1e-9}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        help="run on this backend only (repeatable; overrides BPCORE_BACKENDS)",
    )


def _cases(config: pytest.Config) -> list[BackendCase]:
    names = config.getoption("--backend")
    try:
        return backend_cases(parse_backend_names(",".join(names)) if names else None)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    return "bpcore backends: " + ", ".join(f"{c.name}@{c.device}" for c in _cases(config))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("backend", cases, ids=[c.id for c in cases])


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> str:
    """The network dtype, as a name."""
    return str(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed host generator: test data is drawn on the host, then moved to the backend."""
    return np.random.default_rng(20261127)
