"""`Backend`: an array library and a device, and what bpcore needs to know about that library.

The base class serves any Array API library bpcore has no class for (pass its namespace module as
``backend=``); each library with something of its own (device names, lazy arrays, immutable
arrays, a current device, asynchronous kernels) has a subclass in this package that overrides
only what differs. Nothing outside this package asks which library it is talking to.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import array_api_compat
import numpy as np

__all__ = [
    "DTYPES", "Array", "Backend", "HostRandom", "Namespace", "cuda_driver_version",
    "cuda_version", "gpu", "int_seed", "replaced",
]  # fmt: skip

#: An array of any supported backend (the Array API has no common static type).
Array = Any
#: An Array API namespace module, such as ``array_api_compat.numpy``.
Namespace = Any

#: Floating dtypes a network can compute in, by name (the half-precision ones where the library
#: has them: `Backend.has_dtype`).
DTYPES = ("float32", "float64", "float16", "bfloat16")
# Not in the Array API standard: inspection (``dtypes()``) does not list them.
_EXTENDED = ("float16", "bfloat16")


class Backend:
    """An array library and a device: where a network's arrays live.

    Build one with `bpcore.backends.resolve_backend`; networks keep theirs in
    ``net.backend_info``. This base class is the generic "any Array API module" backend; the
    subclasses (`NumPyBackend`, `CuPyBackend`, `TorchBackend`, `JAXBackend`, `DaskBackend`,
    `StrictBackend`) add what their library needs. A new backend is one more subclass.

    Parameters
    ----------
    xp : module
        The Array API namespace (as ``array_api_compat.array_namespace`` returns it).
    device : object
        The library's own device object, as ``array_api_compat.device`` reports it for arrays
        created here.

    Attributes
    ----------
    name : str
        bpcore's name for the library (``"numpy"``, ``"torch"``, ...); for the generic backend,
        the namespace module's name.
    xp, device
        As given.
    """

    #: bpcore's name for the library; on the generic backend, set from the namespace module.
    name: str = ""
    #: The module that is the library's Array API namespace.
    namespace_module: ClassVar[str] = ""
    #: What to run when the library is missing.
    install: ClassVar[str] = ""
    #: Whether arrays are lazy graphs that run only when computed (Dask's).
    is_lazy: ClassVar[bool] = False
    #: The library's own 2-d convolution for `bpcore.layers.Convolution` (see `bpcore.kernels`):
    #: an object with ``accepts(x, W, stride, pad)`` (False: the layer's own code runs for
    #: that input and geometry), ``forward(x, W, b, stride, pad)`` and
    #: ``backward(x, W, dout, stride, pad, input_grad) -> (dx or None, dW, db)``; None where
    #: the layer's Array API code is the only path.
    native_conv2d: ClassVar[Any] = None
    #: The library's own max pooling for `bpcore.layers.Pooling`: ``forward(x, pool_h, pool_w,
    #: stride, pad) -> (out, state)`` or None where it cannot (padding over half the window),
    #: and ``backward(x, dout, state, pool_h, pool_w, stride, pad) -> dx``; None where the
    #: layer's Array API code is the only path.
    native_max_pool2d: ClassVar[Any] = None
    #: The library's own ReLU gradient for `bpcore.layers.Relu`: ``(out, dout) -> dx``, taken
    #: where ``out`` and ``dout`` are its arrays of one shape and dtype; None where the layer's
    #: Array API code is the only path.
    native_relu_backward: ClassVar[Any] = None

    def __init__(self, xp: Namespace, device: Any) -> None:
        self.xp = xp
        self.device = device
        if not type(self).name:
            self.name = str(getattr(xp, "__name__", type(xp).__name__))

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device_name!r})"

    @property
    def device_name(self) -> str:
        """The device as bpcore's ``device=`` options name it, on every backend: ``"cpu"``,
        ``"cuda:0"``, ... (`device` is the library's own object, which each prints its way)."""
        return self.name_of(self.device)

    @classmethod
    def name_of(cls, device: Any) -> str:
        """bpcore's name for the library's ``device`` object (see `device_name`)."""
        return str(device)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Backend)
            and type(other) is type(self)
            and other.xp is self.xp
            and other.device == self.device
        )

    def __hash__(self) -> int:
        return hash((type(self), self.name, str(self.device)))

    def __reduce__(self) -> tuple[Any, ...]:
        # A module does not pickle or deep-copy: rebuild from the names (networks deep-copy).
        module = getattr(self.xp, "__name__", "")
        return (_restore, (type(self), module, self.picklable_device()))

    def picklable_device(self) -> Any:
        """The device in a form that pickles and that `parse_device` takes back."""
        return self.device

    # -- the library ---------------------------------------------------------------------------

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        """Whether ``xp`` (a compat namespace or the plain library module) is this library's."""
        return False

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        """Whether ``a`` is an array of this library."""
        return False

    @classmethod
    def import_namespace(cls) -> Namespace:
        """Import the library's namespace, or raise ImportError saying what to install."""
        try:
            return importlib.import_module(cls.namespace_module)
        except ImportError as exc:
            raise ImportError(
                f"backend {cls.name!r} is not installed here ({exc}); install it with: "
                f"{cls.install}"
            ) from exc

    @classmethod
    def check_usable(cls) -> None:
        """Raise ImportError if the library imports but cannot run here (CuPy with no GPU)."""

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        """The names of the devices the library sees here (``"cpu"``, ``"cuda:0"``, ...)."""
        return [str(array_api_compat.device(xp.asarray(0.0)))]

    @classmethod
    def report(cls, xp: Namespace) -> dict[str, Any]:
        """What a bug report needs about the library here: its version, devices, GPUs, CUDA.

        The base class gives ``version`` and ``devices``; a library that can see GPUs adds
        ``gpus`` (name and memory of each) and the CUDA versions it knows.
        """
        library = importlib.import_module(cls.name) if cls.name else xp
        return {
            "version": str(getattr(library, "__version__", "unknown")),
            "devices": cls.device_names(xp),
        }

    @classmethod
    def test_devices(cls, devices: list[str]) -> list[str]:
        """Which of ``devices`` a test run covers: by default, the first."""
        return devices[:1]

    @classmethod
    def case_id(cls, device: str) -> str:
        """A short test id for this library on ``device``: by default, the library's name."""
        return cls.name

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        """The library's device object for ``device`` (None: its default), or ValueError."""
        probe = xp.asarray(0.0) if device is None else xp.asarray(0.0, device=device)
        return array_api_compat.device(probe)

    @classmethod
    def to_numpy(cls, a: Array) -> np.ndarray:
        """``a`` as a NumPy array: through DLPack, the standard's way out of a library."""
        try:
            return np.from_dlpack(a)
        except (AttributeError, TypeError, RuntimeError, BufferError):
            return np.asarray(a)

    @classmethod
    def read_floats(cls, values: Sequence[Any]) -> np.ndarray:
        """Many 0-d arrays (a training loop's losses and hit counts) as one float64 NumPy
        array: stacked on the device and read back once, not once each (each read waits for
        the device). Python and NumPy numbers pass through, and so do arrays already computed
        into another library's (a Dask network's losses are NumPy's)."""

        def host(a: Any) -> np.ndarray:
            return cls.to_numpy(a) if cls.owns_array(a) else Backend.to_numpy(a)

        arrays = [v for v in values if not isinstance(v, (int, float, np.generic))]
        if not arrays:
            return np.asarray(values, dtype=np.float64)
        if len(arrays) < len(values):  # mixed: rare (a book-style network's own numbers)
            return np.array([float(host(v)) for v in values], dtype=np.float64)
        xp = array_api_compat.array_namespace(*arrays)
        return np.asarray(host(xp.stack(arrays)), dtype=np.float64)

    @classmethod
    def synchronize(cls, a: Array) -> None:
        """Wait until the device has finished computing ``a`` (nothing to wait for here)."""

    @classmethod
    def compute(cls, *values: Any) -> tuple[Any, ...]:
        """Compute lazy arrays among ``values``, all in one pass; eager ones pass through."""
        return values

    def overflowing(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which floating overflow is silent (NumPy's warnings off).

        Under loss scaling (`bpcore.precision.LossScaler`) a step that overflows float16 is
        expected: it is detected and skipped. Only NumPy warns about it; elsewhere nothing.
        """
        return contextlib.nullcontext()

    # -- where arrays go -----------------------------------------------------------------------

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which this backend's device is the current one (only CuPy needs it).

        Every public entry point of a network runs inside ``with backend.activate():``.
        """
        return contextlib.nullcontext()

    def asarray(self, host: np.ndarray) -> Array:
        """A NumPy array on this backend and device, with its dtype.

        It may share ``host``'s memory where the backend computes in host memory (NumPy,
        array-api-strict, PyTorch on the CPU); elsewhere it is a copy.
        """
        return self.xp.asarray(host, device=self.device)

    @property
    def param_xp(self) -> Namespace:
        """The namespace of a network's parameters: `xp`, except on Dask."""
        return self.xp

    def param_asarray(self, host: np.ndarray) -> Array:
        """Copy a NumPy array to where this backend keeps parameters (see `param_xp`)."""
        return self.asarray(host)

    def param_array(self, host: np.ndarray, dtype_name: str) -> Array:
        """A host array as a parameter of the dtype named ``dtype_name`` (see `param_asarray`).

        Cast on the host, except to bfloat16, which NumPy lacks: that cast is made on the
        device, from float32 (a rounding of the same values).
        """
        if dtype_name == "bfloat16":
            device = self.param_asarray(np.asarray(host, dtype=np.float32))
            return self.param_xp.astype(device, getattr(self.param_xp, dtype_name))
        return self.param_asarray(np.asarray(host).astype(dtype_name))

    def indices(self, host: np.ndarray) -> Array:
        """Integer indices, from the host, for ``take`` on this backend's data."""
        return self.asarray(host)

    def persist(self, a: Array) -> Array:
        """Keep a lazy array's chunks computed in memory; eager arrays pass through."""
        return a

    @property
    def reads_values_freely(self) -> bool:
        """Whether reading array values to the host costs no device synchronization.

        True where arrays live in host memory and are computed eagerly (NumPy,
        array-api-strict, PyTorch on the CPU, and, to be safe, libraries bpcore has no class
        for); false where a read would wait for a device's queue (CuPy, PyTorch on a GPU, JAX,
        which dispatches asynchronously even on the CPU) or run a lazy graph (Dask). Where it
        is false, a network's entry points do not read labels at every call (see
        ``bpcore._checks``): a bad batch makes the loss and the gradients NaN instead.
        """
        return True

    @classmethod
    def writes_in_place(cls, a: Array) -> bool:
        """Whether ``a`` may be written to (an optimizer's update, a perturbed element)."""
        return bool(array_api_compat.is_writeable_array(a))

    # -- compiling -----------------------------------------------------------------------------

    def cache_compilations(self, folder: Any) -> None:
        """Keep compiled programs in ``folder``, for later processes; nothing to keep here.

        For applications (``bpcore train`` calls it), before anything is compiled: it changes
        the library's settings for the whole process.
        """

    def compile(
        self, fn: Callable[..., Any], *, donate_argnums: tuple[int, ...] = ()
    ) -> Callable[..., Any] | None:
        """``fn`` compiled into one program for this device, or None to run it eagerly.

        ``fn`` must be a pure function of arrays (and of nested dicts and lists of them).
        Arguments in ``donate_argnums`` may have their memory reused for the results. Only JAX
        compiles here; the other libraries run bpcore's layers eagerly, as the book does.
        """
        return None

    # -- random numbers ------------------------------------------------------------------------

    def random_generator(self, seed: Any = None) -> Any:
        """A seeded source of uniform numbers in [0, 1) on this backend's device.

        The Array API has no random numbers, so each library draws in its own way; the object
        returned has one method, ``random(shape, dtype_name) -> array``. This base class draws
        on the host with NumPy and copies to the backend (what NumPy, Dask and array-api-strict
        use); libraries with a generator of their own draw on the device (no host round trip per
        draw). The same ``seed`` gives the same numbers on one library; libraries differ.

        Parameters
        ----------
        seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
            Anything ``numpy.random.default_rng`` accepts; None draws fresh entropy.
        """
        return HostRandom(self, seed)

    # -- dtypes --------------------------------------------------------------------------------

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for a name of `DTYPES` (ValueError if it has none)."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise ValueError(f"backend {self.name!r} has no dtype {name!r}") from None

    def enable_float64(self) -> None:
        """Make float64 arrays really float64 (JAX's process-wide x64 switch); else nothing."""

    def has_dtype(self, name: str) -> bool:
        """Whether this device can hold arrays of the named dtype (some GPUs lack float64).

        Asking about float64 calls `enable_float64` first: without it JAX would answer yes and
        then silently compute in float32.
        """
        if name == "float64":
            self.enable_float64()
        if not hasattr(self.xp, name):
            return False  # no float16 in array-api-strict, no bfloat16 in NumPy or CuPy
        dtype = self.dtype(name)
        try:
            info = self.xp.__array_namespace_info__()
            if name not in _EXTENDED and name not in info.dtypes(device=self.device):
                return False
        except (AttributeError, TypeError, NotImplementedError):
            pass  # a namespace without the inspection API: try an allocation instead
        try:
            self.xp.zeros((1,), dtype=dtype, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            return False
        return True

    def resolve_dtype(self, dtype: Any) -> str:
        """Validate ``dtype`` (a name or the namespace's dtype object) and return its name.

        A refused dtype changes nothing (JAX's x64 mode is left alone).
        """
        for name in DTYPES:
            if isinstance(dtype, str) and dtype == name:
                break
            if not isinstance(dtype, str) and hasattr(self.xp, name) and dtype == self.dtype(name):
                break
        else:
            valid = ", ".join(repr(n) for n in DTYPES)
            raise ValueError(f"unsupported dtype {dtype!r}; expected one of {valid}")
        if not self.has_dtype(name):
            raise ValueError(
                f"dtype {name!r} is not supported by backend {self.name!r} on device "
                f"{self.device!r}; use 'float32'"
                + (" (bfloat16 is on torch and jax)" if name == "bfloat16" else "")
            )
        return name

    # -- numerical differences -----------------------------------------------------------------

    def central_differences(
        self, f: Callable[[list[Array]], Array], arrays: Sequence[Array], h: float
    ) -> list[Array]:
        """The gradient of ``f`` with respect to each of ``arrays``, by central differences.

        ``f`` takes a list shaped like ``arrays`` (a network's parameters) and returns a 0-d
        array; each element of each array is moved by ``±h`` in turn. The base class takes one
        array after the other with `central_difference`; a backend with a faster way for
        several at once (JAX compiles them into one program) overrides this.
        """
        arrays = list(arrays)
        grads = []
        for k, x in enumerate(arrays):

            def f_k(a: Array, k: int = k) -> Array:
                return f(replaced(arrays, k, a))

            grads.append(self.central_difference(f_k, x, h))
        return grads

    def central_difference(self, f: Callable[[Array], Array], x: Array, h: float) -> Array:
        """Gradient of the scalar function ``f`` at ``x`` by central differences.

        ``f`` is called with arrays shaped like ``x`` in which one element is moved by ``±h`` and
        must return a 0-d array; ``x`` is not changed. The losses stay on the device until they
        are stacked at the end, so a GPU is never waited for per element.
        """
        xp = array_api_compat.array_namespace(x)
        shape = tuple(x.shape)
        if not self.writes_in_place(x):
            return _difference_by_where(f, x, h, xp)
        # One working copy, moved one element at a time: O(1) work per element besides f. The
        # moved values are computed once, on the host, in x's dtype (so rounded as the device
        # would round them), and written as Python numbers: per element, three writes and no
        # other array operation (no read, no arithmetic), which on libraries with a large cost
        # per call (array-api-strict, PyTorch) is most of the time left besides f. The losses
        # are subtracted once, at the end.
        host = (self.to_numpy if self.owns_array(x) else Backend.to_numpy)(x)
        step = host.dtype.type(h)
        work = xp.asarray(x, copy=True, device=array_api_compat.device(x))
        plus, minus = [], []
        for idx in itertools.product(*(range(d) for d in shape)):  # C order, like reshape
            value = host[idx]
            work[idx] = float(value + step)
            plus.append(f(work))
            work[idx] = float(value - step)
            minus.append(f(work))
            work[idx] = float(value)
        if not plus:
            return xp.zeros_like(x)
        return xp.reshape(xp.stack(plus) - xp.stack(minus), shape) / (2 * h)


class HostRandom:
    """Uniform numbers drawn on the host by a seeded NumPy generator, copied to a backend."""

    def __init__(
        self, backend: Backend, seed: Any = None, asarray: Callable[[Any], Array] | None = None
    ) -> None:
        self._backend = backend
        self._rng = np.random.default_rng(seed)
        self._asarray = backend.asarray if asarray is None else asarray

    def __repr__(self) -> str:
        return f"HostRandom(backend={self._backend.name!r})"

    def random(self, shape: tuple[int, ...], dtype_name: str) -> Array:
        """Uniform numbers in [0, 1) of ``shape`` and dtype ``dtype_name``, on the backend."""
        return self._asarray(self._rng.random(shape, dtype=np.dtype(dtype_name)))

    def get_state(self) -> np.ndarray:
        """The generator's state, as bytes in a uint8 array (its NumPy state, as JSON)."""
        return np.frombuffer(json.dumps(self._rng.bit_generator.state).encode(), np.uint8)

    def set_state(self, state: np.ndarray) -> None:
        """Go on from a state `get_state` returned."""
        self._rng.bit_generator.state = json.loads(np.asarray(state, np.uint8).tobytes())


def gpu(name: str, memory_bytes: int | None, **more: Any) -> dict[str, Any]:
    """One GPU in a backend's `Backend.report`: its name and total memory in GiB (None if the
    library does not say), and whatever else the library reports about it."""
    memory = None if memory_bytes is None else round(memory_bytes / 2**30, 1)
    return {"name": name, "memory_gib": memory, **more}


def cuda_version(code: int) -> str | None:
    """CUDA's integer version (12040) as people write it (``12.4``); None for 0 (no driver)."""
    return f"{code // 1000}.{code % 1000 // 10}" if code > 0 else None


def cuda_driver_version() -> str | None:
    """The CUDA version the installed NVIDIA driver supports, asked of the driver itself.

    Any library that sees a GPU can report it this way (``cuDriverGetVersion``, through
    ctypes); None where there is no driver.
    """
    import ctypes
    import sys

    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        driver = ctypes.CDLL(name)
        code = ctypes.c_int(0)
        if driver.cuDriverGetVersion(ctypes.byref(code)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return cuda_version(code.value)


def int_seed(seed: Any) -> int:
    """A non-negative 63-bit integer seed from anything ``numpy.random.default_rng`` accepts.

    For libraries whose generators take an integer: the same ``seed`` gives the same integer,
    and None gives fresh entropy.
    """
    return int(np.random.default_rng(seed).integers(2**63))


def replaced(arrays: Sequence[Array], k: int, a: Array) -> list[Array]:
    """``arrays`` as a new list, with ``a`` in place of the ``k``-th."""
    return [*arrays[:k], a, *arrays[k + 1 :]]


def _difference_by_where(f: Callable[[Array], Array], x: Array, h: float, xp: Namespace) -> Array:
    """Central differences on an array that cannot be written: each perturbed copy by ``where``.

    O(size) per element, the same order as reading the parameter once in the forward pass.
    """
    shape = tuple(x.shape)
    size = int(np.prod(shape))
    if size == 0:
        return xp.zeros_like(x)
    positions = xp.reshape(xp.arange(size, device=array_api_compat.device(x)), shape)
    plus, minus = x + h, x - h
    diffs = []
    for i in range(size):
        at = positions == i
        diffs.append(f(xp.where(at, plus, x)) - f(xp.where(at, minus, x)))
    return xp.reshape(xp.stack(diffs), shape) / (2 * h)


def _restore(cls: type[Backend], module: str, device: Any) -> Backend:
    if cls.name:
        xp = cls.import_namespace()
        cls.check_usable()
    else:  # the generic backend: the namespace of one of the module's arrays
        xp = array_api_compat.array_namespace(importlib.import_module(module).asarray(0.0))
    return cls(xp, cls.parse_device(xp, device))
