"""array-api-strict: the standard and nothing more, with simulated devices."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import array_api_compat

from .base import Backend, Namespace

__all__ = ["StrictBackend"]


class StrictBackend(Backend):
    """array-api-strict, whose devices (``CPU_DEVICE``, ``device1``, ...) are simulated.

    One of them, ``no_float64``, lacks float64, as some GPUs do.
    """

    name = "array_api_strict"
    namespace_module = "array_api_strict"
    install = (
        'pip install "array-api-strict>=2.3" (in a clone of bpcore: pip install -e ".[strict]")'
    )

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_array_api_strict_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return type(a).__module__.split(".")[0] == "array_api_strict"

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        return [cls.name_of(d) for d in xp.__array_namespace_info__().devices()]

    @classmethod
    def name_of(cls, device: Any) -> str:
        """``cpu`` for the default CPU_DEVICE (as ``device="cpu"`` picks it), else its name."""
        # array-api-strict names its devices in repr only: Device('device1') -> device1
        name = re.sub(r"^.*\('(.*)'\)$", r"\1", repr(device))
        return "cpu" if name == "CPU_DEVICE" else name

    @classmethod
    def test_devices(cls, devices: list[str]) -> list[str]:
        return ["cpu"]

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        info = xp.__array_namespace_info__()
        devices = info.devices()
        if device is None or (isinstance(device, str) and device.lower() == "cpu"):
            return info.default_device()
        if isinstance(device, str):
            with contextlib.suppress(TypeError, ValueError):  # not a name: the check below says so
                device = xp.Device(device)
        if device in devices:
            return device
        raise ValueError(
            f"backend 'array_api_strict' has no device {device!r}; it has "
            + ", ".join(repr(d) for d in devices)
        )
