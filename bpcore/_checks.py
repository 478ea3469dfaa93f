"""Validation of what users pass to a network, at the entry points only.

Every check here runs before any parameter or layer is touched, and raises a ValueError or
TypeError that names the problem and what was expected, instead of a broadcasting error from deep
inside or, worse, a silently wrong result.

What a check may cost at every call is what costs no read of the data: the library, the device,
shapes and dtypes. Label values (in range, whole numbers, one-hot rows) are read only where that
costs no device synchronization (`Backend.reads_values_freely`: NumPy, array-api-strict, PyTorch
on the CPU), or where the caller reads back anyway (accuracy, gradient checks, a Trainer's
dataset, checked once). Elsewhere (JAX, CuPy, PyTorch on a GPU, Dask) the check is folded into
the loss: `bpcore.layers.SoftmaxWithLoss` turns the loss and its gradient into NaN for a batch
with a label out of range or a row that is not a distribution, so nothing wrong passes silently
and the book's loop never waits for the device.
"""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat
import numpy as np

from .backends import Array, Backend, backend_class_of, index_dtype, is_kind, namespace
from .labels import are_distributions

__all__ = [
    "adopt",
    "check_array",
    "check_label_values",
    "check_labels",
    "check_positive_int",
    "check_same_library",
    "check_x",
    "raise_for_label_values",
]


def check_positive_int(value: Any, what: str) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return int(value)


def adopt(a: Any, backend: Backend) -> Any:
    """``a`` moved to ``backend`` where that is what the user means; anything else as it is.

    A NumPy array (the book's batches, any backend's host data) is copied to the network's
    device, once per call: the book's loop runs unchanged on every backend. An array of
    another library moves by DLPack when both libraries support it and it lands on the
    network's device. Whatever cannot move is returned as it is, for `check_array` to name.
    """
    try:
        xp = namespace(a)  # cached by the array's type: this runs at every call
    except TypeError:
        return a
    if xp is backend.xp or xp is backend.param_xp:
        return a
    if isinstance(a, np.ndarray):
        with backend.activate():
            return backend.asarray(a)
    try:
        moved = backend.xp.from_dlpack(a)
    except Exception:  # no DLPack on one side, another device, a dtype DLPack lacks
        return a
    return moved if array_api_compat.device(moved) == backend.device else a


def check_array(a: Any, name: str, backend: Backend) -> None:
    """Check that ``a`` is an array of ``backend``'s library on its device."""
    try:
        xp = namespace(a)  # cached by the array's type: this runs at every call
    except TypeError:  # not an array of any library array-api-compat knows
        xp = None
    if xp is None:
        raise TypeError(
            f"{name} must be an array of backend {backend.name!r}, got {type(a).__name__}"
        )
    if xp is not backend.xp and xp is not backend.param_xp:  # Dask networks take NumPy too
        raise TypeError(
            f"{name} is an array of {_library(a)} that cannot move to this network's backend "
            f"{backend.name!r} by itself; move it there first: "
            f"net.xp.asarray(bpcore.to_numpy({name}), device=net.device)"
        )
    dev = array_api_compat.device(a)
    if dev != backend.device:
        raise ValueError(
            f"{name} is on device {backend.name_of(dev)!r} but this network is on "
            f"{backend.device_name!r}; move it "
            f"there first: net.xp.asarray({name}, device=net.device)"
        )


def check_same_library(x: Any, t: Any) -> None:
    """Check that inputs and labels come from one library (a Dask network takes two)."""
    if namespace(x) is not namespace(t):
        raise TypeError(
            f"x and t must be arrays of one library, got {_library(x)} and {_library(t)}; on "
            f"Dask give both as Dask arrays (chunked alike along the batch), or both as NumPy"
        )


def _is_real(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is an integer or real floating dtype (not bool)."""
    return is_kind(xp, dtype, ("integral", "real floating")) and dtype != xp.bool


def _library(a: Any) -> str:
    return backend_class_of(a).name or type(a).__module__.split(".")[0]


def check_x(
    x: Any, backend: Backend, dtype: Any, sample_shape: tuple[int, ...], name: str = "x"
) -> Array:
    """Validate a batch of inputs and return it cast to the network's dtype.

    Accepts any integer or real floating dtype (the book feeds raw uint8 images with
    ``normalize=False``). For a ``sample_shape`` of one axis ``(D,)``, any shape ``(N, ...)``
    with ``D`` values per sample; for images ``(C, H, W)``, exactly ``(N, C, H, W)``.
    """
    x = adopt(x, backend)
    check_array(x, name, backend)
    xp = namespace(x)
    if not _is_real(xp, x.dtype):
        raise TypeError(f"{name} must hold integers or real floats, got dtype {x.dtype}")
    n_features = 1
    for d in sample_shape:
        n_features *= d
    expected = "(N, " + ", ".join(str(d) for d in sample_shape) + ")"
    if x.ndim < 2:
        raise ValueError(
            f"{name} must be a batch of shape {expected}, got shape {tuple(x.shape)}; "
            f"for one sample use x[None, ...]"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); expected N >= 1")
    if len(sample_shape) > 1 and tuple(x.shape[1:]) != tuple(sample_shape):
        flat = " (flattened images: load them with flatten=False)" if x.ndim == 2 else ""
        raise ValueError(
            f"{name} must be a batch of images of shape {expected} (N, channels, height, "
            f"width), got shape {tuple(x.shape)}{flat}"
        )
    features = 1
    for d in x.shape[1:]:
        features *= d
    if features != n_features:
        raise ValueError(
            f"{name} has {features} features per sample (shape {tuple(x.shape)}), but the "
            f"network expects {n_features}"
        )
    return x if x.dtype == dtype else xp.astype(x, dtype)


def check_labels(
    t: Any,
    backend: Backend,
    n: int,
    n_classes: int,
    name: str = "t",
    *,
    values: bool | None = None,
    x_name: str = "x",
) -> Array:
    """Validate labels for a batch of ``n`` samples and return them ready for the loss layer.

    Integer labels ``(n,)`` (or a column ``(n, 1)``) must lie in ``[0, n_classes)``; float
    labels of shape ``(n,)`` must be whole numbers, and are converted to integers. Rows of shape
    ``(n, n_classes)`` (one-hot or probabilities) must be finite, non-negative and sum to 1.

    Parameters
    ----------
    values : bool, optional
        Whether to read the values, which waits for the device: by default where that is
        free (`Backend.reads_values_freely`). Without it only the library, device, dtype and
        shape are checked, and float labels that are not whole numbers in range become -1,
        which the loss layer turns into a NaN loss. Labels that arrive as NumPy arrays are
        read on the host, on every backend (before they move), where that costs nothing.
    """
    host = t if isinstance(t, np.ndarray) else None  # read where reading costs nothing
    t = adopt(t, backend)
    check_array(t, name, backend)
    xp = namespace(t)
    if not _is_real(xp, t.dtype):
        raise TypeError(f"{name} must hold integer class labels or one-hot rows, got {t.dtype}")
    if t.ndim == 0 or t.shape[0] != n:
        got = "a scalar" if t.ndim == 0 else f"{t.shape[0]} labels (shape {tuple(t.shape)})"
        raise ValueError(f"{x_name} holds a batch of {n} samples but {name} holds {got}")
    if t.ndim == 2 and t.shape[1] == 1 and n_classes > 1:
        # A column of class labels, as the book's ch07/gradient_check.py passes (shape (1, 1)).
        t = xp.reshape(t, (n,))
    if t.ndim == 2 and t.shape[1] != n_classes:
        raise ValueError(
            f"{name} has one-hot rows of width {t.shape[1]}, but the network has {n_classes} "
            f"outputs"
        )
    if t.ndim > 2:
        raise ValueError(
            f"{name} must be class labels of shape ({n},) or one-hot rows of shape ({n}, "
            f"{n_classes}), got shape {tuple(t.shape)}"
        )
    if values is None:
        values = backend.reads_values_freely
    if host is not None:
        check_label_values(host, n_classes, name)
        values = False  # read already, on the host
    if t.ndim == 1:
        return _check_class_labels(t, xp, n_classes, name, values)
    if values:
        _check_one_hot(t, xp, n_classes, name)
    return t


def check_label_values(t: Array, n_classes: int, name: str = "t") -> None:
    """Raise the ValueError of `check_labels` if labels of a good shape hold bad values.

    For labels still on the host (a NumPy array), checked there before they are moved to a
    device, where reading them would wait for it.
    """
    xp = namespace(t)
    if t.ndim == 2 and t.shape[1] == 1 and n_classes > 1:
        t = xp.reshape(t, (t.shape[0],))
    if t.ndim == 2:
        _check_one_hot(t, xp, n_classes, name)
    else:
        _check_class_labels(t, xp, n_classes, name, True)


def raise_for_label_values(t: Array, n_classes: int, name: str = "t") -> None:
    """Raise the ValueError of `check_labels` for labels the loss layer found invalid.

    For labels checked without reading their values, then computed (Dask's, which compute
    with the gradients): a float label that was not a whole number in range reads as -1.
    """
    check_label_values(t, n_classes, name)
    raise ValueError(f"{name} holds labels the loss found invalid")  # pragma: no cover


def _check_class_labels(t: Array, xp: Any, n_classes: int, name: str, values: bool) -> Array:
    floating = is_kind(xp, t.dtype, "real floating")
    index = index_dtype(xp)
    if floating:
        in_range = (t >= 0) & (t < n_classes) & (t == xp.round(t))  # NaN fails them all
    else:
        # Compare in the default integer dtype: n_classes may not fit the labels' own dtype
        # (uint8 and 300 classes).
        t = t if t.dtype == index else xp.astype(t, index)
        if not values:
            return t  # the loss layer turns a label out of range into a NaN loss
        in_range = (t >= 0) & (t < n_classes)
    if not values:
        # -1 for a label that is not a whole number in range: the loss layer sees it as such.
        return xp.astype(xp.where(in_range, t, -1.0), index)
    if bool(xp.all(in_range)):  # the one host sync of this check
        return xp.astype(t, index) if floating else t
    lo, hi = float(xp.min(t)), float(xp.max(t))
    if floating and not bool(xp.all(t == xp.round(t))):
        raise ValueError(f"{name} holds fractional or NaN class labels; expected whole numbers")
    raise ValueError(
        f"{name} holds class labels from {lo:g} to {hi:g}; expected integers in [0, "
        f"{n_classes - 1}] for a network with {n_classes} outputs"
    )


def _check_one_hot(t: Array, xp: Any, n_classes: int, name: str) -> None:
    rows = t if is_kind(xp, t.dtype, "real floating") else xp.astype(t, xp.float32)
    if not bool(are_distributions(rows, xp)):
        raise ValueError(
            f"{name} has rows of width {n_classes} that are not one-hot: each row must be "
            f"non-negative and sum to 1"
        )
