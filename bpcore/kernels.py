"""Libraries' own kernels behind the layers, and the switch that forces the reference path.

The layers are written once on the Array API; that code is the reference. Where a library has
its own kernel for the same computation (PyTorch's convolution, max pooling and ReLU gradient:
oneDNN on the CPU, cuDNN on CUDA; XLA's convolution on JAX), its backend class offers it
(`bpcore.backends.Backend.native_conv2d`, ``native_max_pool2d``, ``native_relu_backward``) and
the layer uses it: the same values within rounding (tests hold every kernel to the reference,
values and gradients), several times faster where the reference has to build the im2col matrix.

``BPCORE_REFERENCE_KERNELS=1`` in the environment, or `reference_kernels` around a block, makes
every layer take the reference path: to compare the two, or to rule a library's kernel out.
``bpcore bench`` times a conv net's book loop both ways where a backend has a kernel of its
own (the row marked ``reference kernels``); ``bpcore compare --reference-kernels`` checks the
reference code against float64 NumPy, as ``bpcore compare`` checks the kernels.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

from array_api_compat import device

from .backends import backend_class_of

__all__ = [
    "native_conv2d",
    "native_max_pool2d",
    "native_relu_backward",
    "reference_kernels",
    "using_reference_kernels",
]

_FORCED: contextvars.ContextVar[bool] = contextvars.ContextVar("bpcore_reference", default=False)


@contextlib.contextmanager
def reference_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block, every layer takes the Array API reference path (``enabled=False``:
    the libraries' kernels again, where the environment does not force the reference)."""
    token = _FORCED.set(enabled)
    try:
        yield
    finally:
        _FORCED.reset(token)


def using_reference_kernels() -> bool:
    """Whether the layers take the reference path now (`reference_kernels`, or
    ``BPCORE_REFERENCE_KERNELS=1``)."""
    return _FORCED.get() or os.environ.get("BPCORE_REFERENCE_KERNELS", "") == "1"


def native_max_pool2d(x: Any) -> Any:
    """The max pooling kernel of ``x``'s library, or None: where it has none, or where the
    reference path is forced."""
    if using_reference_kernels():
        return None
    return backend_class_of(x).native_max_pool2d


def native_relu_backward(out: Any, dout: Any) -> Any:
    """The ReLU gradient kernel of ``out``'s library, or None: where it has none, where ``dout``
    is another library's array or differs from ``out`` in shape or dtype, or where the reference
    path is forced."""
    if using_reference_kernels():
        return None
    cls = backend_class_of(out)
    if cls.native_relu_backward is None or backend_class_of(dout) is not cls:
        return None
    if tuple(out.shape) != tuple(dout.shape) or out.dtype != dout.dtype:
        return None
    return cls.native_relu_backward if device(out) == device(dout) else None


def native_conv2d(x: Any, W: Any, stride: int, pad: int) -> Any:
    """The convolution kernel of ``x``'s library, or None: where it has none, where the filters
    are another library's arrays, where the kernel does not take this geometry (its
    ``accepts``), or where the reference path is forced."""
    if using_reference_kernels():
        return None
    cls = backend_class_of(x)
    if cls.native_conv2d is None or backend_class_of(W) is not cls:
        return None
    return cls.native_conv2d if cls.native_conv2d.accepts(x, W, stride, pad) else None
