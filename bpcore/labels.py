"""What labels are, said once: for the loss layer, the entry checks and the gradient checks.

Labels are class indices ``(N,)`` or rows ``(N, C)`` that are distributions (one-hot, or soft
labels). Both functions stay on the device: nothing here reads a value back.
"""

from __future__ import annotations

from typing import Any

from .backends import Array

__all__ = ["are_distributions", "one_hot"]


def one_hot(t: Array, n_classes: int, xp: Any, device: Any) -> Array:
    """Class labels ``(N,)`` as boolean rows ``(N, n_classes)``; a label that is no class
    (out of range) gives a row of False.

    Compared in the default integer dtype: an ``arange`` in the labels' own dtype would wrap
    around past 255 classes for uint8 labels.
    """
    classes = xp.arange(n_classes, device=device)
    labels = t if t.dtype == classes.dtype else xp.astype(t, classes.dtype)
    return xp.reshape(labels, (t.shape[0], 1)) == classes


def are_distributions(rows: Array, xp: Any) -> Array:
    """Whether every row is non-negative and sums to 1, as a 0-d boolean array (no read-back).

    One-hot rows, or probability rows (soft labels). The tolerance follows the rows' precision:
    1e-3 in float32 (rows that were computed, not typed), 1e-6 otherwise. NaN fails both.
    """
    tol = 1e-3 if rows.dtype == xp.float32 else 1e-6
    return xp.all(rows >= 0) & xp.all(xp.abs(xp.sum(rows, axis=1) - 1) <= tol)
