"""Backends: which array library and device a network's arrays live on.

A *backend* is an Array API namespace (``array_api_compat.numpy``, ``array_api_compat.torch``,
``array_api_compat.cupy``, ``array_api_strict``, ``jax.numpy``, ...) plus a device. Networks
resolve one when they are built and remember it; the layers never ask this package anything,
they take the namespace from their input arrays.

Each library is one class (`NumPyBackend`, `CuPyBackend`, `TorchBackend`, `StrictBackend`,
`JAXBackend`, `DaskBackend`, and the generic `Backend` for any other Array API module) holding
everything that differs about it; the rest of bpcore never tests a library's name. Optional
libraries are imported only when asked for (``import bpcore`` imports NumPy and array-api-compat
alone), with an error that says which extra to install when they are missing.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .base import DTYPES, Array, Backend, Namespace
from .cupy import CuPyBackend
from .dask import DaskBackend
from .jax import JAXBackend
from .namespace import index_dtype, is_kind, namespace
from .numpy import NumPyBackend
from .strict import StrictBackend
from .torch import TorchBackend

__all__ = [
    "BACKENDS",
    "BACKEND_CLASSES",
    "DTYPES",
    "ENV_BACKEND",
    "Array",
    "Backend",
    "CuPyBackend",
    "DaskBackend",
    "JAXBackend",
    "Namespace",
    "NumPyBackend",
    "StrictBackend",
    "TorchBackend",
    "available_backends",
    "backend_class_of",
    "backend_name",
    "index_dtype",
    "is_kind",
    "namespace",
    "resolve_backend",
    "to_numpy",
]

#: The environment variable that picks the backend when none is passed.
ENV_BACKEND = "BPCORE_BACKEND"

#: The backend classes by name, in the order of preference in listings.
BACKEND_CLASSES: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        NumPyBackend,
        CuPyBackend,
        TorchBackend,
        StrictBackend,
        JAXBackend,
        DaskBackend,
    )
}

#: The backend names bpcore knows.
BACKENDS = tuple(BACKEND_CLASSES)


def _class_named(name: str) -> type[Backend]:
    key = name.strip().lower().replace("-", "_")
    if key not in BACKEND_CLASSES:
        valid = ", ".join(repr(n) for n in BACKENDS)
        raise ValueError(f"unknown backend {name!r}; expected one of {valid} or a namespace module")
    return BACKEND_CLASSES[key]


def _class_of_namespace(xp: Namespace) -> type[Backend]:
    for cls in BACKEND_CLASSES.values():
        if cls.owns_namespace(xp):
            return cls
    return Backend


_CLASS_BY_TYPE: dict[type, type[Backend]] = {}


def backend_class_of(a: Any) -> type[Backend]:
    """The backend class of an array's library (the generic `Backend` for an unknown one).

    Looked up by the array's type, and cached.
    """
    try:
        return _CLASS_BY_TYPE[type(a)]
    except KeyError:
        pass
    found = next((c for c in BACKEND_CLASSES.values() if c.owns_array(a)), Backend)
    _CLASS_BY_TYPE[type(a)] = found
    return found


def backend_name(xp: Namespace) -> str:
    """Return bpcore's name for an Array API namespace.

    Parameters
    ----------
    xp : module
        A namespace such as ``array_api_compat.numpy`` or ``array_api_strict``, or the plain
        library module (``numpy``, ``torch``, ``cupy``).

    Returns
    -------
    str
        One of `BACKENDS` for a known library, else the module's ``__name__``.
    """
    cls = _class_of_namespace(xp)
    return cls.name or str(getattr(xp, "__name__", type(xp).__name__))


def _namespace_of_module(module: ModuleType) -> tuple[type[Backend], Namespace]:
    """Map a namespace module passed as ``backend=`` to (class, compat namespace)."""
    cls = _class_of_namespace(module)
    if cls is not Backend:
        # Plain ``numpy``/``torch``/``cupy`` are not fully Array API compliant: use the
        # array-api-compat wrapper, which is what ``array_namespace`` returns for their arrays.
        xp = cls.import_namespace()
        cls.check_usable()
        return cls, xp
    if not callable(getattr(module, "asarray", None)):
        raise TypeError(
            f"backend={module!r} is not an Array API namespace (it has no asarray); expected "
            f"one of {', '.join(repr(n) for n in BACKENDS)} or such a module"
        )
    # Any other Array API library: normalize through one of its arrays.
    return Backend, array_api_compat.array_namespace(module.asarray(0.0))


def resolve_backend(
    backend: str | Namespace | Backend | None = None, device: Any = None
) -> Backend:
    """Resolve a backend name or namespace module and a device.

    Parameters
    ----------
    backend : str, module, Backend or None
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"`` or ``"dask"``, or
        a namespace module (``numpy``, ``torch``, ``array_api_strict``, ``array_api_compat.cupy``,
        ...), or a `Backend` object, returned as it is. None reads the ``BPCORE_BACKEND``
        environment variable, and falls back to ``"numpy"``.
    device : str, int, device object or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a CUDA ordinal, or the library's own device object.
        None means the library's default device.

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        For an unknown backend name, or a device the backend does not have.
    ImportError
        For a known backend that is not installed (or CuPy with no CUDA device); the message says
        what to install.
    """
    if isinstance(backend, Backend):
        if device is not None and backend.parse_device(backend.xp, device) != backend.device:
            raise ValueError(f"device={device!r} differs from the device of {backend!r}")
        return backend
    if backend is None:
        backend = os.environ.get(ENV_BACKEND) or "numpy"
        try:
            cls = _class_named(backend)
        except ValueError as exc:
            raise ValueError(f"{ENV_BACKEND}={backend!r}: {exc}") from None
        xp = cls.import_namespace()
    elif isinstance(backend, str):
        cls = _class_named(backend)
        xp = cls.import_namespace()
    elif isinstance(backend, ModuleType):
        cls, xp = _namespace_of_module(backend)
    else:
        raise TypeError(
            f"backend must be a name or a namespace module, got {type(backend).__name__}"
        )
    cls.check_usable()
    return cls(xp, cls.parse_device(xp, device))


def available_backends() -> dict[str, list[str]]:
    """Report which backends import here and which devices each one sees.

    Importing an optional backend can take a while (PyTorch, CuPy); this function does it, but
    ``import bpcore`` does not.

    Returns
    -------
    dict
        Backend name -> list of device names, for each backend that imports. A backend that
        imports but sees no device (CuPy without a CUDA GPU) maps to an empty list; a backend
        that does not import is left out.

    Examples
    --------
    >>> import bpcore
    >>> bpcore.available_backends()["numpy"]
    ['cpu']
    """
    found: dict[str, list[str]] = {}
    for name, cls in BACKEND_CLASSES.items():
        try:
            xp = cls.import_namespace()
        except ImportError:
            continue
        found[name] = cls.device_names(xp)
    return found


def to_numpy(a: Array) -> np.ndarray:
    """Return any backend's array (or a Python scalar or sequence) as a NumPy array.

    NumPy arrays come back as they are; PyTorch CPU tensors and array-api-strict arrays come back
    as NumPy views of the same memory (no copy); CuPy arrays and PyTorch tensors on a GPU are
    copied to the host, which waits for the device; Dask arrays are computed. Copy the result
    before writing into it.

    Parameters
    ----------
    a : array, scalar or sequence

    Returns
    -------
    numpy.ndarray
        bfloat16, which NumPy lacks, comes back as float32 (the same values).
    """
    if not array_api_compat.is_array_api_obj(a) and not isinstance(a, np.generic):
        return np.asarray(a)
    if str(getattr(a, "dtype", "")).endswith("bfloat16"):
        xp = array_api_compat.array_namespace(a)
        a = xp.astype(a, xp.float32)
    return backend_class_of(a).to_numpy(a)
