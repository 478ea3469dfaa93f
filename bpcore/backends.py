"""Backends: which array library and device a network's arrays live on.

A *backend* is an Array API namespace (``array_api_compat.numpy``, ``array_api_compat.torch``,
``array_api_compat.cupy``, ``array_api_strict``, ...) plus a device and a floating dtype. Networks
resolve one when they are built and remember it; the layers never ask this module anything, they
take the namespace from their input arrays.

Optional backends are imported only when asked for (``import bpcore`` imports NumPy and
array-api-compat alone), with an error that says which extra to install when they are missing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "BACKENDS",
    "DTYPES",
    "Array",
    "Backend",
    "Namespace",
    "available_backends",
    "backend_name",
    "resolve_backend",
    "to_numpy",
]

#: An array of any supported backend (the Array API has no common static type).
Array = Any
#: An Array API namespace module, such as ``array_api_compat.numpy``.
Namespace = Any

#: The environment variable that picks the backend when none is passed.
ENV_BACKEND = "BPCORE_BACKEND"

#: Floating dtypes a network can compute in, by name.
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class _Spec:
    module: str  # the module that is the Array API namespace for this backend
    install: str  # what to run when it is missing


_CUPY_INSTALL = 'pip install "bpcore[cuda12]" (or "bpcore[cuda13]" for CUDA 13)'

# The order is the order of preference in listings; new backends (jax, dask) are added here.
_SPECS: dict[str, _Spec] = {
    "numpy": _Spec("array_api_compat.numpy", "pip install numpy"),
    "cupy": _Spec("array_api_compat.cupy", _CUPY_INSTALL),
    "torch": _Spec("array_api_compat.torch", 'pip install "bpcore[torch]"'),
    "array_api_strict": _Spec("array_api_strict", 'pip install "bpcore[strict]"'),
    # jax.numpy is an Array API namespace itself; its arrays are immutable.
    "jax": _Spec("jax.numpy", 'pip install "bpcore[jax]"'),
    # Data as Dask arrays chunked along the batch; parameters stay NumPy arrays (see Backend).
    "dask": _Spec("array_api_compat.dask.array", 'pip install "bpcore[dask]"'),
}

#: The backend names bpcore knows.
BACKENDS = tuple(_SPECS)


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in _SPECS:
        valid = ", ".join(repr(n) for n in BACKENDS)
        raise ValueError(f"unknown backend {name!r}; expected one of {valid} or a namespace module")
    return key


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
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_dask_namespace(xp):
        return "dask"
    return str(getattr(xp, "__name__", type(xp).__name__))


def _import_namespace(name: str) -> Namespace:
    spec = _SPECS[name]
    try:
        xp = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ImportError(
            f"backend {name!r} is not installed here ({exc}); install it with: {spec.install}"
        ) from exc
    if name == "cupy" and _cuda_device_count() == 0:
        raise ImportError(
            "backend 'cupy' is installed but sees no CUDA device (is a GPU and its driver "
            f"present?); on a CUDA machine install a matching build with: {_CUPY_INSTALL}, "
            "or choose backend='numpy'"
        )
    return xp


def _cuda_device_count() -> int:
    import cupy  # only called once cupy is known to import

    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError when there is no driver or no device
        return 0


def _namespace_of_module(module: ModuleType) -> tuple[str, Namespace]:
    """Map a namespace module passed as ``backend=`` to (name, compat namespace)."""
    name = backend_name(module)
    if name in _SPECS:
        # Plain ``numpy``/``torch``/``cupy`` are not fully Array API compliant: use the
        # array-api-compat wrapper, which is what ``array_namespace`` returns for their arrays.
        return name, _import_namespace(name)
    if not callable(getattr(module, "asarray", None)):
        raise TypeError(
            f"backend={module!r} is not an Array API namespace (it has no asarray); expected "
            f"one of {', '.join(repr(n) for n in BACKENDS)} or such a module"
        )
    # Any other Array API library: normalize through one of its arrays.
    return name, array_api_compat.array_namespace(module.asarray(0.0))


@dataclass(frozen=True)
class Backend:
    """An array library and a device: where a network's arrays live.

    Build one with `resolve_backend`. Networks keep theirs in ``net.backend_info``.

    Attributes
    ----------
    name : str
        bpcore's name for the library (``"numpy"``, ``"torch"``, ...).
    xp : module
        The Array API namespace (as returned by ``array_api_compat.array_namespace``).
    device : object
        The library's own device object, as ``array_api_compat.device`` reports it for arrays
        created here.
    """

    name: str
    xp: Namespace
    device: Any

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A module does not pickle or deep-copy: rebuild from the name (networks deep-copy).
        device = _jax_device_name(self.device) if self.name == "jax" else self.device
        return (_restore_backend, (self.name, getattr(self.xp, "__name__", ""), device))

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which this backend's device is the current one.

        Only CuPy needs it: its creation functions (and array-api-compat's wrappers of them)
        ignore ``device=`` and allocate, like its kernels run, on the current CUDA device. So
        every public entry point of a network on CuPy runs inside ``with backend.activate():``,
        which makes ``device="cuda:1"`` work; elsewhere it does nothing.
        """
        if self.name == "cupy":
            return self.device  # type: ignore[no-any-return]  # cupy.cuda.Device is a context
        return contextlib.nullcontext()

    def asarray(self, host: np.ndarray) -> Array:
        """Copy a NumPy array to this backend and device, keeping its dtype.

        On Dask: a Dask array chunked along the first axis (the batch) only, in chunks of
        Dask's default size (128 MiB); every other axis is whole in each chunk.
        """
        if self.name == "dask":
            import dask.array as da

            host = np.array(host, copy=True)
            return da.from_array(host, chunks=("auto", *host.shape[1:]) if host.ndim else ())
        return self.xp.asarray(host, device=self.device)

    @property
    def param_xp(self) -> Namespace:
        """The namespace of the parameters: `xp`, but NumPy's on Dask.

        A Dask network keeps its parameters (small, read by every chunk) as ordinary arrays and
        only its data as Dask arrays; the layers mix the two, which Dask allows.
        """
        if self.name == "dask":
            return array_api_compat.array_namespace(np.empty(0))
        return self.xp

    def param_asarray(self, host: np.ndarray) -> Array:
        """Copy a NumPy array to where this backend keeps parameters (see `param_xp`)."""
        if self.name == "dask":
            return np.array(host, copy=True)
        return self.asarray(host)

    def compute(self, *values: Any) -> tuple[Any, ...]:
        """Compute lazy (Dask) arrays among ``values``, all in one pass; others pass through."""
        if self.name == "dask":
            import dask

            # A 0-d Dask array computes to a NumPy scalar: keep it a 0-d array, as elsewhere.
            return tuple(
                np.asarray(v) if isinstance(v, np.generic) else v for v in dask.compute(*values)
            )
        return values

    def indices(self, host: np.ndarray) -> Array:
        """Integer indices for ``take`` on this backend's data: NumPy's on Dask, whose gathers
        with host indices keep their chunk sizes known; elsewhere a copy on the device."""
        return host if self.name == "dask" else self.asarray(host)

    def persist(self, a: Array) -> Array:
        """Keep a lazy array's chunks computed in memory (on the workers of a Dask cluster)."""
        return a.persist() if self.name == "dask" else a

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for ``"float32"`` or ``"float64"``.

        On JAX, asking for float64 turns on JAX's x64 mode for the process (without it JAX
        silently computes "float64" arrays in float32); float32 arrays stay float32.
        """
        if name == "float64" and self.name == "jax":
            _enable_jax_x64()
        return getattr(self.xp, name)

    def has_dtype(self, name: str) -> bool:
        """Whether this device can hold arrays of the named dtype (some GPUs lack float64)."""
        dtype = self.dtype(name)  # first: on JAX this turns on the x64 mode float64 needs
        try:
            info = self.xp.__array_namespace_info__()
            if name not in info.dtypes(device=self.device):
                return False
        except (AttributeError, TypeError, NotImplementedError):
            pass  # a namespace without the inspection API: try an allocation instead
        try:
            self.xp.zeros((1,), dtype=dtype, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            return False
        return True

    def resolve_dtype(self, dtype: Any) -> str:
        """Validate ``dtype`` (a name or the namespace's dtype object) and return its name."""
        for name in DTYPES:
            if isinstance(dtype, str) and dtype == name:
                break
            # getattr, not self.dtype: a dtype that is refused must not turn on JAX's x64 mode
            if not isinstance(dtype, str) and dtype == getattr(self.xp, name):
                break
        else:
            valid = ", ".join(repr(n) for n in DTYPES)
            raise ValueError(f"unsupported dtype {dtype!r}; expected one of {valid}")
        if not self.has_dtype(name):
            raise ValueError(
                f"dtype {name!r} is not supported by backend {self.name!r} on device "
                f"{self.device!r}; use 'float32'"
            )
        return name


def _enable_jax_x64() -> None:
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def _restore_backend(name: str, module: str, device: Any) -> Backend:
    if name in _SPECS:
        return resolve_backend(name, device)
    return resolve_backend(importlib.import_module(module), device)


def resolve_backend(backend: str | Namespace | None = None, device: Any = None) -> Backend:
    """Resolve a backend name or namespace module and a device.

    Parameters
    ----------
    backend : str, module or None
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"`` or ``"dask"``, or
        a namespace module
        (``numpy``, ``torch``, ``array_api_strict``, ``array_api_compat.cupy``, ...). None reads
        the ``BPCORE_BACKEND`` environment variable, and falls back to ``"numpy"``.
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
    if backend is None:
        backend = os.environ.get(ENV_BACKEND) or "numpy"
        if not isinstance(backend, str):  # pragma: no cover - os.environ holds strings
            raise TypeError(f"{ENV_BACKEND} must be a string")
        try:
            name = _canonical_name(backend)
        except ValueError as exc:
            raise ValueError(f"{ENV_BACKEND}={backend!r}: {exc}") from None
        xp = _import_namespace(name)
    elif isinstance(backend, str):
        name = _canonical_name(backend)
        xp = _import_namespace(name)
    elif isinstance(backend, ModuleType):
        name, xp = _namespace_of_module(backend)
    else:
        raise TypeError(
            f"backend must be a name or a namespace module, got {type(backend).__name__}"
        )
    return Backend(name, xp, _resolve_device(name, xp, device))


_CUDA_RE = re.compile(r"^(cuda|gpu)(?::(\d+))?$")


def _resolve_device(name: str, xp: Namespace, device: Any) -> Any:
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"backend 'numpy' has only the 'cpu' device, got device={device!r}")
        return "cpu"
    if name == "cupy":
        return _cupy_device(device)
    if name == "torch":
        return _torch_device(device)
    if name == "array_api_strict":
        return _strict_device(xp, device)
    if name == "jax":
        return _jax_device(device)
    if name == "dask":
        if device not in (None, "cpu"):
            raise ValueError(
                f"backend 'dask' keeps NumPy chunks on the 'cpu' device, got device={device!r}"
            )
        return "cpu"
    # Another Array API library: use its default device, or pass the device through to it.
    probe = xp.asarray(0.0) if device is None else xp.asarray(0.0, device=device)
    return array_api_compat.device(probe)


def _cupy_device(device: Any) -> Any:
    import cupy

    count = _cuda_device_count()
    if device is None:
        return cupy.cuda.Device()
    if isinstance(device, cupy.cuda.Device):
        ordinal = int(device.id)
    elif isinstance(device, int) and not isinstance(device, bool):
        ordinal = device
    elif isinstance(device, str) and (m := _CUDA_RE.match(device.strip().lower())):
        ordinal = int(m.group(2)) if m.group(2) is not None else int(cupy.cuda.Device().id)
    else:
        raise ValueError(
            f"backend 'cupy' runs on CUDA devices; expected 'cuda', 'cuda:N', an ordinal or a "
            f"cupy.cuda.Device, got device={device!r}"
        )
    if not 0 <= ordinal < count:
        raise ValueError(f"CUDA device {ordinal} does not exist; cupy sees {count} device(s)")
    return cupy.cuda.Device(ordinal)


def _torch_device(device: Any) -> Any:
    import torch

    if device is None:
        return torch.empty(0).device  # honours torch.set_default_device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"backend 'torch' does not know device={device!r}: {exc}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = (
            dev.index if dev.index is not None else (torch.cuda.current_device() if count else 0)
        )
        if not 0 <= index < count:
            raise ValueError(
                f"device {device!r} is not available: torch sees {count} CUDA device(s)"
            )
        dev = torch.device("cuda", index)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available to torch here")
    elif dev.type != "cpu":
        # Tensors report an indexed device ("mps:0"), which does not equal torch.device("mps").
        dev = torch.empty(0, device=dev).device
    return dev


def _jax_device(device: Any) -> Any:
    import jax

    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    if isinstance(device, int) and not isinstance(device, bool):
        platform, index = None, device
    elif isinstance(device, str) and (
        m := re.fullmatch(r"(cpu|cuda|gpu|tpu)(?::(\d+))?", device.strip().lower())
    ):
        platform = "gpu" if m.group(1) == "cuda" else m.group(1)
        index = int(m.group(2) or 0)
    else:
        raise ValueError(
            f"backend 'jax' expects device 'cpu', 'cuda', 'cuda:N', an ordinal or a jax.Device, "
            f"got device={device!r}"
        )
    try:
        devices = jax.devices(platform)
    except RuntimeError:  # no backend for that platform here
        devices = []
    if not 0 <= index < len(devices):
        raise ValueError(f"device {device!r} is not available: jax sees {jax.devices()}")
    return devices[index]


def _strict_device(xp: Namespace, device: Any) -> Any:
    devices = xp.__array_namespace_info__().devices()
    if device is None or (isinstance(device, str) and device.lower() == "cpu"):
        return xp.__array_namespace_info__().default_device()
    if isinstance(device, str):
        with contextlib.suppress(TypeError, ValueError):  # not a name: the check below says so
            device = xp.Device(device)
    if device in devices:
        return device
    raise ValueError(
        f"backend 'array_api_strict' has no device {device!r}; it has "
        + ", ".join(repr(d) for d in devices)
    )


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
    for name in BACKENDS:
        try:
            xp = importlib.import_module(_SPECS[name].module)
        except ImportError:
            continue
        found[name] = _device_names(name, xp)
    return found


def _device_names(name: str, xp: Namespace) -> list[str]:
    if name in ("numpy", "dask"):
        return ["cpu"]
    if name == "cupy":
        return [f"cuda:{i}" for i in range(_cuda_device_count())]
    if name == "torch":
        import torch

        names = ["cpu"]
        if torch.cuda.is_available():
            names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            names.append("mps")
        return names
    if name == "jax":
        import jax

        return [_jax_device_name(d) for d in jax.devices()]
    # array-api-strict names its devices in repr only: Device('device1') -> device1
    return [
        re.sub(r"^.*\('(.*)'\)$", r"\1", repr(d)) for d in xp.__array_namespace_info__().devices()
    ]


def _jax_device_name(device: Any) -> str:
    """``cpu`` for JAX's CPU device, ``cuda:N`` for its N-th GPU, as the other backends say."""
    if device.platform == "cpu":
        return "cpu" if device.id == 0 else f"cpu:{device.id}"
    if device.platform == "gpu":
        return f"cuda:{device.id}"
    return f"{device.platform}:{device.id}"


def to_numpy(a: Array) -> np.ndarray:
    """Return any backend's array (or a Python scalar or sequence) as a NumPy array.

    NumPy arrays come back as they are; PyTorch CPU tensors and array-api-strict arrays come back
    as NumPy views of the same memory (no copy); CuPy arrays and PyTorch tensors on a GPU are
    copied to the host, which waits for the device. Copy the result before writing into it.

    Parameters
    ----------
    a : array, scalar or sequence

    Returns
    -------
    numpy.ndarray
    """
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, np.generic):
        return np.asarray(a)
    if array_api_compat.is_cupy_array(a):
        return np.asarray(a.get())
    if array_api_compat.is_torch_array(a):
        return np.asarray(a.detach().cpu().numpy())
    if array_api_compat.is_array_api_obj(a):
        # DLPack is the standard's way out of a library (array-api-strict, JAX on CPU, ...).
        try:
            return np.from_dlpack(a)
        except (AttributeError, TypeError, RuntimeError, BufferError):
            return np.asarray(a)
    return np.asarray(a)
