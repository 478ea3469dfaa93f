"""CuPy, on CUDA GPUs: a current device, and kernels that run asynchronously."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import array_api_compat
import numpy as np

from .base import Array, Backend, Namespace, cuda_version, gpu, int_seed

__all__ = ["CUDA_DEVICE", "CuPyBackend"]

_INSTALL = (
    'pip install "cupy-cuda12x[ctk]>=14" (cupy-cuda13x for CUDA 13; in a clone of bpcore: '
    'pip install -e ".[cuda12]" or ".[cuda13]")'
)

#: ``cuda``, ``cuda:N`` (or ``gpu``, ``gpu:N``), case-insensitive.
CUDA_DEVICE = re.compile(r"^(cuda|gpu)(?::(\d+))?$")


class CuPyBackend(Backend):
    """CuPy arrays (through ``array_api_compat.cupy``) on one CUDA device."""

    name = "cupy"
    namespace_module = "array_api_compat.cupy"
    install = _INSTALL

    @property
    def reads_values_freely(self) -> bool:
        """False: a read waits for the GPU's queue."""
        return False

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_cupy_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return bool(array_api_compat.is_cupy_array(a))

    @classmethod
    def check_usable(cls) -> None:
        if cls.device_count() == 0:
            raise ImportError(
                "backend 'cupy' is installed but sees no CUDA device (is a GPU and its driver "
                f"present?); on a CUDA machine install a matching build with: {_INSTALL}, "
                "or choose backend='numpy'"
            )

    @classmethod
    def device_count(cls) -> int:
        """How many CUDA devices CuPy sees (0 without a driver or a GPU)."""
        import cupy

        try:
            return int(cupy.cuda.runtime.getDeviceCount())
        except Exception:  # CUDARuntimeError when there is no driver or no device
            return 0

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        return [f"cuda:{i}" for i in range(cls.device_count())]

    @classmethod
    def name_of(cls, device: Any) -> str:
        """``cuda:N`` for ``cupy.cuda.Device(N)``."""
        return f"cuda:{int(device.id)}"

    @classmethod
    def report(cls, xp: Namespace) -> dict[str, Any]:
        """Version and devices, each GPU's name and memory, the CUDA driver and runtime, and
        ``CUPY_TF32`` (1: float32 products may round their inputs to TF32 on NVIDIA GPUs)."""
        import os

        import cupy

        found = super().report(xp)
        found["CUPY_TF32"] = os.environ.get("CUPY_TF32", "0")
        runtime = cupy.cuda.runtime
        gpus = []
        for i in range(cls.device_count()):
            props = runtime.getDeviceProperties(i)
            gpus.append(gpu(props["name"].decode(), int(props["totalGlobalMem"])))
        found["gpus"] = gpus
        try:
            found["cuda_runtime"] = cuda_version(runtime.runtimeGetVersion())
            found["cuda_driver"] = cuda_version(runtime.driverGetVersion())  # 0: no driver
        except Exception as exc:  # CUDARuntimeError: no driver; the report says so
            found["cuda_error"] = str(exc)
        return found

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        import cupy

        count = cls.device_count()
        if device is None:
            return cupy.cuda.Device()
        if isinstance(device, cupy.cuda.Device):
            ordinal = int(device.id)
        elif isinstance(device, int) and not isinstance(device, bool):
            ordinal = device
        elif isinstance(device, str) and (m := CUDA_DEVICE.match(device.strip().lower())):
            ordinal = int(m.group(2)) if m.group(2) is not None else int(cupy.cuda.Device().id)
        else:
            raise ValueError(
                f"backend 'cupy' runs on CUDA devices; expected 'cuda', 'cuda:N', an ordinal or "
                f"a cupy.cuda.Device, got device={device!r}"
            )
        if not 0 <= ordinal < count:
            raise ValueError(f"CUDA device {ordinal} does not exist; cupy sees {count} device(s)")
        return cupy.cuda.Device(ordinal)

    def picklable_device(self) -> Any:
        return int(self.device.id)

    @classmethod
    def to_numpy(cls, a: Array) -> np.ndarray:
        return np.asarray(a.get())

    @classmethod
    def synchronize(cls, a: Array) -> None:
        a.device.synchronize()

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """The device as CuPy's current one.

        CuPy's creation functions (and array-api-compat's wrappers of them) ignore ``device=``
        and allocate, like its kernels run, on the current CUDA device; so ``device="cuda:1"``
        works only inside this context.
        """
        return self.device  # type: ignore[no-any-return]  # cupy.cuda.Device is a context

    def random_generator(self, seed: Any = None) -> Any:
        """CuPy's generator on the device: masks are drawn where they are used."""
        return _CuPyRandom(int_seed(seed), self)


class _CuPyRandom:
    """``cupy.random.default_rng(seed).random``, drawn with the backend's device current."""

    def __init__(self, seed: int, backend: CuPyBackend) -> None:
        import cupy

        self._backend = backend
        with backend.activate():
            self._rng = cupy.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"_CuPyRandom(device={self._backend.device!r})"

    def random(self, shape: tuple[int, ...], dtype_name: str) -> Array:
        """Uniform numbers in [0, 1), drawn on the device."""
        with self._backend.activate():
            return self._rng.random(shape, dtype=dtype_name)
