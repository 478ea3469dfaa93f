"""Helpers for testing and benchmarking bpcore across backends.

`backend_cases` lists the backend/device pairs usable on this machine, narrowed by the
``BPCORE_BACKENDS`` environment variable; bpcore's own test and benchmark suites parametrize one
``backend`` fixture over it. `assert_close` compares an array of any backend with an expected
value, checking the namespace, device, dtype and shape before the values.

This module imports no optional backend and does not need pytest.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .backends import (
    BACKEND_CLASSES,
    BACKENDS,
    Array,
    Backend,
    NumPyBackend,
    available_backends,
    backend_class_of,
    resolve_backend,
    to_numpy,
)
from .datasets import raw_images

__all__ = [
    "ENV_BACKENDS",
    "RTOL",
    "BackendCase",
    "ReadOnlyNumPyBackend",
    "assert_close",
    "backend_cases",
    "integration_cases",
    "parametrize_backends",
    "parse_backend_names",
    "raw_images",
    "synchronize",
]

#: Relative tolerances for comparing results computed in each dtype with exact ones.
RTOL = {"float32": 2e-4, "float64": 1e-9}

#: Comma-separated backend names that narrow `backend_cases`, e.g. ``numpy,torch``.
ENV_BACKENDS = "BPCORE_BACKENDS"


@dataclass(frozen=True)
class BackendCase:
    """One backend on one device, as a test or benchmark runs it.

    Attributes
    ----------
    name : str
        The backend name (``"numpy"``, ``"torch"``, ...).
    device : str
        The device name (``"cpu"``, ``"cuda:0"``, ...).
    """

    name: str
    device: str

    @property
    def id(self) -> str:
        """A short test id: ``numpy``, ``torch-cpu``, ``torch-cuda``, ``cupy``."""
        return BACKEND_CLASSES[self.name].case_id(self.device)

    @functools.cached_property
    def backend(self) -> Backend:
        """The resolved `Backend` (imports the library on first use).

        On JAX this turns on x64 mode, so that float64 test data stays float64 whatever order
        the tests run in (a float64 network would turn it on anyway, midway through a run).
        """
        backend = resolve_backend(self.name, self.device)
        backend.enable_float64()
        return backend

    def resolve(self) -> Backend:
        """The resolved `Backend`, resolved once per case."""
        return self.backend

    @property
    def xp(self) -> Any:
        """The Array API namespace."""
        return self.resolve().xp

    @property
    def param_xp(self) -> Any:
        """The namespace of a network's parameters and gradients (NumPy's on Dask)."""
        return self.resolve().param_xp

    def asarray(self, host: Any, dtype: str | None = None) -> Array:
        """Copy a NumPy array (or anything ``numpy.asarray`` takes) to this backend and device.

        The result never shares memory with ``host`` (NumPy, PyTorch on the CPU and
        array-api-strict would otherwise wrap it without a copy), so a test can compare it with
        ``host`` to see whether code under test wrote into it.
        """
        return self.resolve().asarray(np.array(host, dtype=dtype, copy=True))

    def net_kwargs(self) -> dict[str, str]:
        """``backend=`` and ``device=`` for a network constructor."""
        return {"backend": self.name, "device": self.device}


class ReadOnlyNumPyBackend(NumPyBackend):
    """NumPy whose arrays, as created here, cannot be written: a real immutable backend.

    bpcore takes the path it takes for JAX's immutable arrays (optimizers assign new arrays,
    numerical gradients build perturbed copies with ``where``) wherever an array is not
    writeable; this backend runs that path on NumPy, where its results can be compared with the
    in-place path's, as array-api-extra tests with its read-only NumPy backend. Pass an
    instance as ``backend=``: ``TwoLayerNet(..., backend=ReadOnlyNumPyBackend.create())``.
    """

    @classmethod
    def create(cls) -> ReadOnlyNumPyBackend:
        """The backend on the CPU."""
        return cls(cls.import_namespace(), "cpu")

    def asarray(self, host: np.ndarray) -> Array:
        """A read-only copy of ``host``."""
        a = np.array(host, copy=True)
        a.flags.writeable = False
        return a


def parse_backend_names(text: str) -> list[str]:
    """Split ``"numpy, torch"`` into known backend names, raising ValueError on unknown ones."""
    names = [n.strip().lower().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(
            f"unknown backend(s) {unknown} in {text!r}; expected names from {list(BACKENDS)}"
        )
    return names


def backend_cases(names: list[str] | None = None) -> list[BackendCase]:
    """The backend/device pairs to test on this machine.

    NumPy, array-api-strict and PyTorch on the CPU; CuPy and PyTorch on the first CUDA device
    when one is present; JAX on its default device; Dask with NumPy chunks. ``names`` (or else
    ``BPCORE_BACKENDS``) narrows the list; a backend named there that is not usable here is an
    error, not a silent skip.

    Parameters
    ----------
    names : list of str, optional

    Returns
    -------
    list of BackendCase

    Raises
    ------
    ValueError
        For an unknown name, or a requested backend that is not usable here.
    """
    if names is None:
        env = os.environ.get(ENV_BACKENDS, "")
        names = parse_backend_names(env) if env.strip() else None
    # Import only the backends asked for: a run narrowed to NumPy need not load PyTorch and JAX
    # (seconds, in every pytest-xdist worker and every pytest subprocess of the docs tests).
    found: dict[str, list[str]] = {}
    for name in BACKENDS if names is None else [n for n in BACKENDS if n in names]:
        cls = BACKEND_CLASSES[name]
        try:
            found[name] = cls.device_names(cls.import_namespace())
        except ImportError:
            continue
    cases = [
        BackendCase(name, device)
        for name, devices in found.items()
        for device in BACKEND_CLASSES[name].test_devices(devices)
    ]
    if names is None:
        return cases
    missing = [n for n in names if not any(c.name == n for c in cases)]
    if missing:
        usable = sorted(name for name, devices in available_backends().items() if devices)
        raise ValueError(
            f"backend(s) {missing} were asked for but are not usable here; usable: {usable}"
        )
    return cases


def parametrize_backends(metafunc: Any, names: list[str]) -> None:
    """Parametrize a pytest test's ``backend`` argument over `backend_cases`.

    For a ``pytest_generate_tests`` hook: ``names`` are the backends given with ``--backend``
    (empty for all, or what ``BPCORE_BACKENDS`` says). An unusable or unknown backend is a usage
    error, so a run that asked for CuPy never passes without running on it.

    A test marked ``integration`` (an expensive run whose backend-specific parts other tests
    cover: a docs example, a CLI training) gets `integration_cases` instead of every case.
    """
    if "backend" not in metafunc.fixturenames:
        return
    try:
        cases = backend_cases(parse_backend_names(",".join(names)) if names else None)
    except ValueError as exc:
        import pytest  # only test runs get here

        raise pytest.UsageError(str(exc)) from None
    if metafunc.definition.get_closest_marker("integration") is not None:
        cases = integration_cases(cases)
    import pytest  # only test runs get here

    # Every case may go to any pytest-xdist worker, JAX's too: the test configuration shares
    # JAX's compiled programs between workers through its persistent cache (conftest.py).
    params = [pytest.param(case, id=case.id) for case in cases]
    metafunc.parametrize("backend", params)


def integration_cases(cases: list[BackendCase]) -> list[BackendCase]:
    """Where an expensive integration test runs: once on the CPU, and on each GPU case.

    The CPU run is NumPy's when NumPy is among ``cases``, else the first case's (so that a run
    narrowed to one backend, as ``nox -s "tests(jax)"``, still runs it once); GPU cases are
    those whose device is CUDA, which the CPU run cannot stand in for.
    """
    cpu = [c for c in cases if not c.device.startswith("cuda")]
    first = next((c for c in cpu if c.name == NumPyBackend.name), cpu[0] if cpu else None)
    return [c for c in cases if c is first or c.device.startswith("cuda")]


def synchronize(a: Array) -> None:
    """Wait until the device has finished computing ``a`` (a no-op on the CPU).

    GPU work is asynchronous: a timer read before this measures only the kernel launches. A
    Dask array is lazy: it is computed (and the result dropped).
    """
    backend_class_of(a).synchronize(a)


def assert_close(
    actual: Array,
    desired: Any,
    *,
    rtol: float = 1e-7,
    atol: float = 0.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    err_msg: str = "",
) -> None:
    """Assert that ``actual`` is an array of namespace ``xp`` on ``device`` close to ``desired``.

    Checks the namespace, device, dtype and shape first (each only when given, the shape
    always), then the values with ``numpy.testing.assert_allclose``.
    """
    if xp is not None and array_api_compat.array_namespace(actual) is not xp:
        raise AssertionError(f"expected an array of {xp.__name__}, got {type(actual)} {err_msg}")
    if device is not None and array_api_compat.device(actual) != device:
        raise AssertionError(
            f"expected device {device!r}, got {array_api_compat.device(actual)!r} {err_msg}"
        )
    if dtype is not None and actual.dtype != dtype:
        raise AssertionError(f"expected dtype {dtype}, got {actual.dtype} {err_msg}")
    a, d = to_numpy(actual), to_numpy(desired)
    if a.shape != d.shape:
        raise AssertionError(f"shape {a.shape} != expected {d.shape} {err_msg}")
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)
