"""Initial weights, drawn on the host so that one seed gives the same network on every backend.

The Array API standard has no random numbers, and each library's own generator gives different
streams. So weights are drawn with a seeded ``numpy.random.Generator`` in float64, scaled, cast to
the network's dtype on the host, and only then copied to the backend and device: the bits that
arrive are the same everywhere.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

__all__ = ["INIT_NAMES", "init_scale", "initial_weights", "normal_weights"]

#: Names ``weight_init_std`` accepts, as in the book: He for ReLU, "Xavier" for sigmoid. The
#: book's "Xavier" is ``sqrt(1 / fan_in)``, which Keras and PyTorch call LeCun (their Xavier or
#: Glorot uses ``fan_in + fan_out``): ``"lecun"`` names the same scale.
INIT_NAMES = ("relu", "he", "sigmoid", "xavier", "lecun")


def init_scale(weight_init_std: float | str, fan_in: int) -> float:
    """Return the standard deviation for a weight matrix with ``fan_in`` inputs.

    Parameters
    ----------
    weight_init_std : float or str
        A positive standard deviation, or ``"relu"``/``"he"`` for ``sqrt(2 / fan_in)`` (He) or
        ``"sigmoid"``/``"xavier"``/``"lecun"`` for ``sqrt(1 / fan_in)``: the book calls it Xavier;
        Keras and PyTorch call it LeCun (their Xavier, or Glorot, is ``sqrt(2 / (fan_in +
        fan_out))``, which bpcore does not offer).
    fan_in : int
        Number of inputs of the layer.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown name or a standard deviation that is not a positive finite number.
    """
    if isinstance(weight_init_std, str):
        name = weight_init_std.lower()
        if name in ("relu", "he"):
            return math.sqrt(2.0 / fan_in)
        if name in ("sigmoid", "xavier", "lecun"):
            return math.sqrt(1.0 / fan_in)
        valid = ", ".join(repr(n) for n in INIT_NAMES)
        raise ValueError(
            f"unknown weight_init_std {weight_init_std!r}; expected a positive number or one of "
            f"{valid}"
        )
    if isinstance(weight_init_std, bool) or not isinstance(weight_init_std, (int, float)):
        raise TypeError(
            f"weight_init_std must be a positive number or a name, got "
            f"{type(weight_init_std).__name__}"
        )
    std = float(weight_init_std)
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"weight_init_std must be a positive finite number, got {std!r}")
    return std


def initial_weights(
    sizes: list[int], weight_init_std: float | str, dtype: str, seed: Any = None
) -> dict[str, np.ndarray]:
    """Draw the book's initial parameters on the host.

    Layer ``i`` (1-based) gets ``W{i}`` of shape ``(sizes[i-1], sizes[i])`` drawn from a normal
    distribution with the scale from `init_scale`, and ``b{i}`` of zeros. Weights are drawn in
    order W1, W2, ... from one generator.

    Parameters
    ----------
    sizes : list of int
        Input size, hidden sizes, output size.
    weight_init_std : float or str
        See `init_scale`.
    dtype : str
        ``"float32"`` or ``"float64"``.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Anything ``numpy.random.default_rng`` accepts; None draws fresh entropy.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    scales = [init_scale(weight_init_std, fan_in) for fan_in in sizes[:-1]]
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{i}"] = (scales[i - 1] * rng.standard_normal((fan_in, fan_out))).astype(dtype)
        params[f"b{i}"] = np.zeros(fan_out, dtype=dtype)
    return params


def normal_weights(
    shapes: dict[str, tuple[int, ...]], scales: dict[str, float], dtype: str, seed: Any = None
) -> dict[str, np.ndarray]:
    """Draw parameters of any shapes on the host: weights normal, the rest zeros.

    For networks whose weights are not a chain of matrices (convolutional filters). Every key
    of ``scales`` is drawn from a normal distribution of that standard deviation, in the order
    of ``shapes``, from one generator; every other key is zeros.

    Parameters
    ----------
    shapes : dict of str to tuple
        Every parameter's shape, in the network's order.
    scales : dict of str to float
        The standard deviation of each weight (see `init_scale`).
    dtype, seed
        As for `initial_weights`.
    """
    rng = np.random.default_rng(seed)
    return {
        key: (scales[key] * rng.standard_normal(shape)).astype(dtype)
        if key in scales
        else np.zeros(shape, dtype=dtype)
        for key, shape in shapes.items()
    }
