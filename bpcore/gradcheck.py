"""Checking backpropagation against central differences, on any backend.

The numbers here are computed in float64 whenever the backend's device has it, whatever the
network's own dtype: a central difference in float32 is mostly rounding noise (its error is about
``eps * |loss| / h``, some 1e-5 for h = 1e-2), while in float64 it agrees with backprop to 1e-8 or
better. On a device without float64 the check runs in float32 with a larger step and a looser
tolerance (see `TOLERANCE`).

Two checks are offered:

* `gradient_check`: every parameter element, two forward passes each. The element-wise loop
  keeps every loss on the device and stacks them at the end, so a GPU is never waited for per
  element; on immutable arrays (JAX) the perturbed copy is built with ``where`` instead of an
  in-place write.
* `directional_gradient_check`: one random unit direction per parameter, two forward passes per
  parameter (Chainer's approach), for networks too large for the element-wise check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import array_api_compat
import numpy as np

from ._namespace import namespace
from .backends import Array

__all__ = [
    "STEP",
    "TOLERANCE",
    "GradientCheck",
    "directional_gradient_check",
    "gradient_check",
    "network_numerical_gradient",
]

#: Default central-difference step by the dtype the differences are taken in.
STEP = {"float64": 1e-5, "float32": 1e-2}
#: Default pass/fail threshold on the maximum relative error, by that dtype.
TOLERANCE = {"float64": 1e-5, "float32": 1e-2}
# A central difference cannot resolve less than the rounding noise of the two losses it
# subtracts, about eps * |loss| / h; errors within ten times that are not counted.
_NOISE_MARGIN = 10.0


class GradientCheck(dict[str, float]):
    """Per-parameter maximum relative error between backprop and numerical gradients.

    A dict of parameter name -> error. For the backprop gradient ``a`` and the numerical
    gradient ``n`` of one element, the error is ``max(|a - n| - noise, 0) / max(|a|, |n|)``,
    where ``noise = 10 * eps * (|loss| + 1) / h`` bounds the rounding noise of a central
    difference; a parameter's error is the largest over its elements. So an element whose two
    gradients agree to within what a central difference can resolve counts as exact, and any
    other disagreement is measured relative to the gradient.

    Attributes
    ----------
    dtype : str
        The dtype the check was computed in (``"float64"`` unless the device lacks it).
    h : float
        The central-difference step.
    tolerance : float
        The threshold `passed` compares against.
    method : str
        ``"elementwise"`` or ``"directional"``.
    """

    def __init__(
        self, errors: Mapping[str, float], *, dtype: str, h: float, tolerance: float, method: str
    ) -> None:
        super().__init__(errors)
        self.dtype = dtype
        self.h = h
        self.tolerance = tolerance
        self.method = method

    @property
    def passed(self) -> bool:
        """Whether every error is at most `tolerance`."""
        return all(err <= self.tolerance for err in self.values())

    def __repr__(self) -> str:
        errors = ", ".join(f"{k}: {v:.3g}" for k, v in self.items())
        return (
            f"GradientCheck({{{errors}}}, dtype={self.dtype!r}, h={self.h:g}, "
            f"tolerance={self.tolerance:g}, method={self.method!r})"
        )


def _central_difference(f: Callable[[Array], Array], x: Array, h: float) -> Array:
    """Gradient of the scalar function ``f`` at ``x`` by central differences; ``x`` is not changed.

    ``f`` is called with arrays shaped like ``x`` in which one element is moved by ``±h`` and
    must return a 0-d array; the results stay on the device until they are stacked at the end.
    """
    xp = namespace(x)
    shape = tuple(x.shape)
    size = int(np.prod(shape))
    diffs = []
    if array_api_compat.is_writeable_array(x):
        # One working copy, moved one element at a time: O(1) work per element besides f.
        work = xp.asarray(x, copy=True, device=array_api_compat.device(x))
        for idx in itertools.product(*(range(d) for d in shape)):  # C order, like reshape
            original = x[idx]
            work[idx] = original + h
            f_plus = f(work)
            work[idx] = original - h
            f_minus = f(work)
            work[idx] = original
            diffs.append(f_plus - f_minus)
    elif array_api_compat.is_jax_array(x) and (vectorized := _central_difference_jax(f, x, h)):
        return vectorized[0]
    else:
        # Immutable arrays: build each perturbed copy with where; O(size) per element, the same
        # order as reading the parameter once in the forward pass.
        positions = xp.reshape(xp.arange(size, device=array_api_compat.device(x)), shape)
        plus, minus = x + h, x - h
        for i in range(size):
            at = positions == i
            diffs.append(f(xp.where(at, plus, x)) - f(xp.where(at, minus, x)))
    if not diffs:
        return xp.zeros_like(x)
    return xp.reshape(xp.stack(diffs), shape) / (2 * h)


# How many elements JAX perturbs in one vectorized batch. Memory: this many copies of the
# forward pass's activations at once, which is little for the small batches a check is run on.
_JAX_BATCH = 256


def _central_difference_jax(f: Callable[[Array], Array], x: Array, h: float) -> tuple[Array] | None:
    """`_central_difference` for JAX: every element's pair of losses in compiled batches.

    An eager loop would dispatch some twenty operations per element from Python; instead
    ``jax.lax.map`` vectorizes the function over batches of `_JAX_BATCH` element indices and runs
    them as one compiled program. That needs a traceable ``f`` (no Python decisions on array
    values), as the networks' own layers are; for one that is not (a custom layer calling
    ``bool`` on an array), returns None and the caller loops eagerly instead.
    """
    import jax

    xp = namespace(x)
    shape = tuple(x.shape)
    size = int(np.prod(shape))
    if size == 0:
        return (xp.zeros_like(x),)
    positions = xp.reshape(xp.arange(size), shape)

    def difference(i: Array) -> Array:
        step = xp.where(positions == i, xp.asarray(h, dtype=x.dtype), xp.zeros_like(x))
        return f(x + step) - f(x - step)

    try:
        diffs = jax.lax.map(difference, xp.arange(size), batch_size=_JAX_BATCH)
    except jax.errors.ConcretizationTypeError:  # f is not traceable
        return None
    finally:
        f(x)  # once more, eagerly: the layers keep concrete arrays from forward, not tracers
    return (xp.reshape(diffs, shape) / (2 * h),)


def _working_net(net: Any) -> tuple[Any, str]:
    """The network to take differences on: ``net`` itself, or a float64 copy of it."""
    net._check_bindings()  # both gradients must come from the layers the network really runs
    if net._dtype_name != "float64" and net.backend_info.has_dtype("float64"):
        return net._with_dtype("float64"), "float64"
    return net, net._dtype_name


def _numerical(net: Any, x: Array, t: Array, h: float) -> dict[str, Array]:
    grads = {}
    for key in list(net.params):
        original = net.params[key]

        def loss_at(W: Array, key: str = key) -> Array:
            # W is the parameter with one element moved: its shape, dtype and device, so bind it
            # without the checks of params[key] = W (which a JAX tracer would not pass).
            if net.params[key] is not W:
                net.params._bind(key, W)
            return net._loss(x, t)

        try:
            grads[key] = _central_difference(loss_at, original, h)
        finally:
            net.params._bind(key, original)
    return grads


def network_numerical_gradient(
    net: Any, x: Array, t: Array, *, h: float | None = None
) -> dict[str, Array]:
    """Numerical gradients of ``net``'s loss, in the network's dtype.

    ``x`` and ``t`` must already be validated (the networks' ``numerical_gradient`` does that).
    The differences are taken in float64 where the device has it. The network's parameters are
    the same objects, with the same values, afterwards.
    """
    work, _, x, t, h = _prepare(net, x, t, h)
    grads = _numerical(work, x, t, h)
    return {k: net.backend_info.param_xp.astype(g, net.dtype) for k, g in grads.items()}


def _noise(work: Any, x: Array, t: Array, dtype: str, h: float) -> float:
    eps = float(np.finfo(dtype).eps)
    return _NOISE_MARGIN * eps * (abs(float(work._loss(x, t))) + 1.0) / h


def _max_relative_error(a: Array, n: Array, noise: float) -> float:
    xp = namespace(a, n)
    excess = xp.maximum(xp.abs(a - n) - noise, xp.zeros_like(a))
    scale = xp.maximum(xp.abs(a), xp.abs(n))
    # 0/0 happens only where both gradients are 0 (a dead ReLU unit): that element agrees.
    ratio = xp.where(excess > 0, excess / xp.where(scale > 0, scale, xp.ones_like(a)), 0.0)
    # A NaN or infinite gradient on either side is no agreement at all.
    ratio = xp.where(xp.isfinite(a) & xp.isfinite(n), ratio, xp.inf)
    return float(xp.max(ratio))


def _result(
    errors: dict[str, float], dtype: str, h: float, tolerance: float | None, method: str
) -> GradientCheck:
    tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
    return GradientCheck(errors, dtype=dtype, h=h, tolerance=tolerance, method=method)


def _prepare(net: Any, x: Array, t: Array, h: float | None) -> tuple[Any, str, Array, Array, float]:
    """Pick the working network and dtype, cast the (validated) batch, choose the step."""
    work, dtype = _working_net(net)
    # A small batch: on Dask, computed once here rather than in each of the many forward passes.
    x, t = net.backend_info.compute(x, t)
    xp = array_api_compat.array_namespace(x)
    x = xp.astype(x, work.dtype)
    if t.ndim == 2:
        t = xp.astype(t, work.dtype)
    return work, dtype, x, t, STEP[dtype] if h is None else h


def gradient_check(
    net: Any, x: Array, t: Array, *, h: float | None = None, tolerance: float | None = None
) -> GradientCheck:
    """Compare ``net.gradient`` with central differences, element by element.

    Parameters
    ----------
    net : TwoLayerNet or MultiLayerNet
    x, t : array
        A (small) batch and its labels, on the network's backend and device.
    h : float, optional
        Central-difference step; default `STEP` for the dtype used.
    tolerance : float, optional
        Threshold for `GradientCheck.passed`; default `TOLERANCE` for the dtype used.

    Returns
    -------
    GradientCheck
        Parameter name -> maximum relative error.

    Notes
    -----
    Costs two forward passes per parameter element. Both gradients are computed in float64 when
    the device has it (on a float64 copy of the network; ``net`` is not changed), else in float32
    with a larger step and a looser tolerance. What remains is the truncation error of the
    central difference, of order ``h**2``; a ReLU unit whose input lies within ``h`` of 0 can
    push one element's error up, which a smaller ``h`` confirms or rules out.

    Examples
    --------
    >>> import numpy as np
    >>> import bpcore
    >>> net = bpcore.TwoLayerNet(4, 5, 3, backend="numpy", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> check = bpcore.gradient_check(net, rng.random((2, 4)), np.array([0, 2]))
    >>> check.passed, sorted(check)
    (True, ['W1', 'W2', 'b1', 'b2'])
    """
    with net.backend_info.activate():
        x, t = net._xt(x, t)
        work, dtype, x, t, h = _prepare(net, x, t, h)
        analytic = work._gradient(x, t)
        numeric = _numerical(work, x, t, h)
        noise = _noise(work, x, t, dtype, h)
        errors = {k: _max_relative_error(analytic[k], numeric[k], noise) for k in analytic}
    return _result(errors, dtype, h, tolerance, "elementwise")


def directional_gradient_check(
    net: Any,
    x: Array,
    t: Array,
    *,
    seed: Any = None,
    h: float | None = None,
    tolerance: float | None = None,
) -> GradientCheck:
    """Compare ``net.gradient`` with a central difference along one random direction per parameter.

    For each parameter ``P`` a unit vector ``d`` of ``P``'s shape is drawn on the host (so a seed
    gives the same directions on every backend); the directional derivative
    ``(L(P + h d) - L(P - h d)) / 2h`` is compared with ``sum(grad_P * d)``. Two forward passes
    per parameter instead of two per element, so it scales to large networks; a wrong gradient
    passes only if its error happens to be orthogonal to ``d``.

    Parameters
    ----------
    net, x, t, h, tolerance
        As for `gradient_check`.
    seed : int, optional
        Seeds the directions.

    Returns
    -------
    GradientCheck
        Parameter name -> relative error of the directional derivative.
    """
    with net.backend_info.activate():
        x, t = net._xt(x, t)
        work, dtype, x, t, h = _prepare(net, x, t, h)
        xp = net.backend_info.param_xp
        analytic = work._gradient(x, t)
        noise = _noise(work, x, t, dtype, h)
        rng = np.random.default_rng(seed)
        errors = {}
        for key in list(work.params):
            original = work.params[key]
            d_host = rng.standard_normal(tuple(original.shape))
            d_host /= np.linalg.norm(d_host)
            d = work.backend_info.param_asarray(d_host.astype(dtype))
            try:
                work.params[key] = original + h * d
                f_plus = work._loss(x, t)
                work.params[key] = original - h * d
                f_minus = work._loss(x, t)
            finally:
                work.params[key] = original
            numeric = (f_plus - f_minus) / (2 * h)
            expected = xp.sum(analytic[key] * d)
            errors[key] = _max_relative_error(expected, numeric, noise)
    return _result(errors, dtype, h, tolerance, "directional")
