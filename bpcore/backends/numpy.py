"""NumPy, on the CPU: the reference backend, and the one ``import bpcore`` needs."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .base import Array, Backend, Namespace

__all__ = ["NumPyBackend"]


class NumPyBackend(Backend):
    """NumPy arrays (through ``array_api_compat.numpy``) on the ``"cpu"`` device."""

    name = "numpy"
    namespace_module = "array_api_compat.numpy"
    install = "pip install numpy"

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_numpy_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return isinstance(a, (np.ndarray, np.generic))

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        return ["cpu"]

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        if device not in (None, "cpu"):
            raise ValueError(f"backend 'numpy' has only the 'cpu' device, got device={device!r}")
        return "cpu"

    def overflowing(self) -> Any:
        """NumPy's overflow and invalid-value warnings off (see `Backend.overflowing`)."""
        return np.errstate(over="ignore", invalid="ignore")

    @classmethod
    def to_numpy(cls, a: Array) -> np.ndarray:
        return np.asarray(a)

    @classmethod
    def writes_in_place(cls, a: Array) -> bool:
        """Whether ``a`` is an ndarray with its writeable flag (asked once per parameter per
        step: the flag is cheaper to read than the generic check)."""
        return isinstance(a, np.ndarray) and bool(a.flags.writeable)
