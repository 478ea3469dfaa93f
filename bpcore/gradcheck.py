"""Checking backpropagation against central differences, on any backend.

The numbers here are computed in float64 whenever the backend's device has it, whatever the
network's own dtype: a central difference in float32 is mostly rounding noise (its error is
about ``eps * |loss| / h``, some 1e-5 for h = 1e-2), while in float64 it agrees with backprop to
1e-8 or better; in float16 or bfloat16 it would be noise alone, and a network computing in one
of those is told by a warning that its check runs in float64. On a device without float64 the
check runs in float32 with a larger step and a looser tolerance (see `TOLERANCE`).

Two checks are offered:

* `gradient_check`: every parameter element, two forward passes each. The element-wise loop
  keeps every loss on the device and stacks them at the end, so a GPU is never waited for per
  element; on immutable arrays (JAX) the perturbed copy is built with ``where`` instead of an
  in-place write.
* `directional_gradient_check`: one random unit direction per parameter, two forward passes per
  parameter (Chainer's approach), for networks too large for the element-wise check.

The machinery both use, as functions of any bpcore network, is here too: `numerical_gradient`
(what ``net.numerical_gradient`` is), `checking` (the batch validated, the dropout masks held,
the state kept and promoted to `check_dtype`), `holding_masks`, `cast_batch`, `holding_labels`.
Every swap of the network's state goes through `bpcore.networks.Network.using_state`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import array_api_compat
import numpy as np

from .backends import Array, to_numpy
from .labels import one_hot
from .layers import holds_mask
from .precision import HALF_DTYPES

__all__ = [
    "STEP",
    "TOLERANCE",
    "GradientCheck",
    "cast_batch",
    "check_dtype",
    "checking",
    "directional_gradient_check",
    "gradient_check",
    "holding_labels",
    "holding_masks",
    "network_numerical_gradient",
    "numerical_gradient",
    "unchecked_numerical_gradient",
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


def _noise(work: Any, x: Array, t: Array, h: float) -> float:
    eps = float(np.finfo(work.dtype_name).eps)
    loss = work.unchecked_loss(x, t, True)  # the training-mode loss, as the gradients are
    return _NOISE_MARGIN * eps * (abs(float(loss)) + 1.0) / h


def _max_relative_error(a: Array, n: Array, noise: float) -> float:
    # On the host: the result is read back anyway, and a check's gradients are small; a dozen
    # operations on each backend would cost more (JAX compiles each for every new shape).
    a, n = to_numpy(a).astype(np.float64), to_numpy(n).astype(np.float64)
    excess = np.maximum(np.abs(a - n) - noise, 0.0)
    scale = np.maximum(np.abs(a), np.abs(n))
    # 0/0 happens only where both gradients are 0 (a dead ReLU unit): that element agrees.
    ratio = np.where(excess > 0, excess / np.where(scale > 0, scale, 1.0), 0.0)
    # A NaN or infinite gradient on either side is no agreement at all.
    ratio = np.where(np.isfinite(a) & np.isfinite(n), ratio, np.inf)
    return float(np.max(ratio)) if ratio.size else 0.0


def _result(
    errors: dict[str, float], dtype: str, h: float, tolerance: float | None, method: str
) -> GradientCheck:
    tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
    return GradientCheck(errors, dtype=dtype, h=h, tolerance=tolerance, method=method)


def gradient_check(
    net: Any, x: Array, t: Array, *, h: float | None = None, tolerance: float | None = None
) -> GradientCheck:
    """Compare ``net.gradient`` with central differences, element by element.

    Parameters
    ----------
    net : Network
        Any bpcore network. Both gradients are taken in training mode (the book's
        ``gradient``): batch normalization uses the batch's statistics, and dropout masks are
        held fixed (`checking`), so both differentiate the same function.
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
    the device has it (``net.using_dtype``: float64 copies of the parameters, bound to the
    network's own layers; ``net``'s state is given back after), else in float32
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
    with net.backend_info.activate(), net.checking(x, t) as (x, t):
        h = STEP[net.dtype_name] if h is None else h
        analytic = net.unchecked_gradient(x, t)
        numeric = net.unchecked_numerical_gradient(x, t, h=h)
        noise = _noise(net, x, t, h)
        errors = {k: _max_relative_error(analytic[k], numeric[k], noise) for k in analytic}
        return _result(errors, net.dtype_name, h, tolerance, "elementwise")


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
    with net.backend_info.activate(), net.checking(x, t) as (x, t):
        dtype = net.dtype_name
        h = STEP[dtype] if h is None else h
        xp = net.backend_info.param_xp
        analytic = net.unchecked_gradient(x, t)
        noise = _noise(net, x, t, h)
        rng = np.random.default_rng(seed)
        errors = {}
        for key in list(net.params):
            original = net.params[key]
            d_host = rng.standard_normal(tuple(original.shape))
            d_host /= np.linalg.norm(d_host)
            d = net.backend_info.param_asarray(d_host.astype(dtype))
            with net.using_state():
                # In training mode, as gradient() differentiates: batch statistics, and the
                # dropout masks `checking` holds.
                net.params[key] = original + h * d
                f_plus = net.unchecked_loss(x, t, True)
                net.params[key] = original - h * d
                f_minus = net.unchecked_loss(x, t, True)
            numeric = (f_plus - f_minus) / (2 * h)
            expected = xp.sum(analytic[key] * d)
            errors[key] = _max_relative_error(expected, numeric, noise)
        return _result(errors, dtype, h, tolerance, "directional")


def check_dtype(net: Any) -> str:
    """The dtype numerical gradients of ``net`` are taken in: float64 where the device has it."""
    return "float64" if net.backend_info.has_dtype("float64") else net.dtype_name


@contextlib.contextmanager
def checking(net: Any, x: Any, t: Any) -> Iterator[tuple[Array, Array]]:
    """A context for comparing ``net``'s gradients: the batch checked, the dtype promoted.

    Validates ``x`` and ``t`` (``net.check_batch``, labels read) and the layers
    (``net.check_layers``: both gradients must come from the layers the network really runs),
    holds the dropout masks (`holding_masks`), keeps the network's state (``net.using_state``:
    the running statistics a training pass moves are put back), computes in `check_dtype`
    (``net.using_dtype``), and yields the batch as `cast_batch` makes it.
    """
    x, t = net.check_batch(x, t, values=True)
    net.check_layers()
    asked, used = getattr(net, "compute_dtype_name", net.dtype_name), net.check_dtype()
    if asked in HALF_DTYPES and used != asked:
        warnings.warn(
            f"the network computes in {asked}; its gradients are checked in {used} (a "
            f"central difference in {asked} is rounding noise), which checks the same layers",
            UserWarning,
            stacklevel=4,
        )
    # Through the network's methods (which are these functions), so that a network class may
    # override a step: its own check dtype, say.
    with net.holding_masks(), net.using_state(), net.using_dtype(net.check_dtype()):
        yield net.cast_batch(x, t)


@contextlib.contextmanager
def holding_masks(net: Any) -> Iterator[None]:
    """A context in which ``net``'s dropout layers reuse their last mask instead of drawing anew.

    So ``gradient`` and `numerical_gradient` differentiate one and the same function. A layer
    with no mask yet (or one of another shape) draws one at its next training pass and keeps
    it.
    """
    layers = [layer for layer in net.layers.values() if holds_mask(layer)]
    held = [layer.hold_mask for layer in layers]
    try:
        for layer in layers:
            layer.hold_mask = True
        yield
    finally:
        for layer, was in zip(layers, held, strict=True):
            layer.hold_mask = was


def cast_batch(net: Any, x: Array, t: Array) -> tuple[Array, Array]:
    """A checked batch in ``net``'s current dtype, labels as one-hot rows, computed.

    For gradient checks: their thousands of forward passes reuse one small batch, computed
    once if it is lazy, whose class labels are turned into the one-hot rows the loss layer
    would otherwise build anew at every pass (the same values, so the same losses).
    """
    x, t = net.backend_info.compute(x, t)
    xp = array_api_compat.array_namespace(x)
    x = xp.astype(x, net.dtype)
    if t.ndim == 1:
        t = one_hot(t, net.output_size, xp, array_api_compat.device(t))
    return x, xp.astype(t, net.dtype)


def holding_labels(net: Any, x: Array, t: Array) -> contextlib.AbstractContextManager[Any]:
    """A context in which ``net``'s loss layer reuses what it builds from ``t`` for a batch ``x``.

    The label rows in the scores' dtype and the test of their validity, made once rather than
    at every forward pass of a numerical gradient (`checking` has already turned class labels
    into one-hot rows, so what is saved there is mostly the test): for the book's 784-50-10 net
    on NumPy, 8.9 s instead of 13.3 s (best of three, 2 CPU cores). A loss layer without
    ``holding_labels`` builds them every time.
    """
    hold = getattr(net.last_layer, "holding_labels", None)
    if hold is None:
        return contextlib.nullcontext()
    xp = array_api_compat.array_namespace(x)
    scores = xp.zeros(
        (x.shape[0], net.output_size), dtype=net.dtype, device=array_api_compat.device(x)
    )
    return hold(scores, t)  # type: ignore[no-any-return]


def unchecked_numerical_gradient(
    net: Any, x: Array, t: Array, *, h: float | None = None
) -> dict[str, Array]:
    """Central differences of ``net.unchecked_loss``, in the network's current dtype.

    The book's ``numerical_gradient``: each parameter element moved by ``±h`` in turn, in the
    way the backend allows (in place, by ``where``, or compiled on JAX), the loss taken in
    training mode as the book's ``MultiLayerNetExtend`` does. Every loss is computed from the
    buffers as they were at the start; to compare with ``gradient``, hold the dropout masks
    fixed (`checking` does). The parameters and buffers are the same objects, with the same
    values, afterwards.
    """
    h = STEP[net.dtype_name] if h is None else h
    keys = list(net.params)
    with net.using_state() as start, net.holding_labels(x, t):

        def loss_at(values: list[Array]) -> Array:
            # Parameters with one element moved: their shapes, dtypes and device, so bound
            # without the checks of params[key] = W (a JAX tracer would not pass them). Every
            # loss from the same buffers: a layer that updates its buffers in forward (running
            # statistics) must not carry one evaluation's update into the next.
            net.set_state(start._replace(params=dict(zip(keys, values, strict=True))))
            return net.unchecked_loss(x, t, True)

        originals = [start.params[key] for key in keys]
        grads = net.backend_info.central_differences(loss_at, originals, h)
    return dict(zip(keys, grads, strict=True))


def numerical_gradient(net: Any, x: Array, t: Array, *, h: float | None = None) -> dict[str, Array]:
    """``net.numerical_gradient``: central differences of its loss, in the network's dtype.

    The batch is validated, the differences are taken in `check_dtype` inside `checking`, and
    the result is cast back to the network's dtype.
    """
    with net.backend_info.activate():
        with net.checking(x, t) as (x, t):
            grads = net.unchecked_numerical_gradient(x, t, h=h)
        xp = net.backend_info.param_xp
        return {key: xp.astype(g, net.dtype) for key, g in grads.items()}


def network_numerical_gradient(
    net: Any, x: Array, t: Array, *, h: float | None = None
) -> dict[str, Array]:
    """Numerical gradients of ``net``'s loss, in the network's dtype: ``net.numerical_gradient``.

    Kept for code written against bpcore 0.1.0; `numerical_gradient` is the same, by name.
    """
    return dict(net.numerical_gradient(x, t, h=h))
