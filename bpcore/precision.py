"""Precision: the half-precision dtypes, mixed precision and dynamic loss scaling.

A network computes in one of `bpcore.backends.DTYPES`: float64, float32, and the half-precision
float16 and bfloat16 where the backend has them (`bpcore.backends.Backend.has_dtype`). In half
precision the sums that lose the most (the softmax's log-sum-exp and the loss, batch
normalization's mean and variance) are accumulated in float32 by the layers themselves
(`accumulation_dtype`), as PyTorch's autocast and Keras' mixed policies do.

A *mixed* precision (`Precision`, ``precision="mixed_float16"`` or ``"mixed_bfloat16"`` on any
network) keeps float32 master parameters (``net.params``, what optimizers update, and so their
state), and runs the forward and backward passes on half-precision copies of them, cast at the
start of every pass. float16's narrow range (largest 65504, smallest normal 6.1e-5) makes small
gradients underflow, so mixed float16 multiplies the loss's gradient by a `LossScaler`'s
scale and divides the gradients by it in float32; a step whose gradients overflow is skipped and
the scale halved, as PyTorch's ``GradScaler`` does. bfloat16 has float32's range and needs no
scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat

from .backends import Array, Backend, namespace

__all__ = [
    "HALF_DTYPES",
    "PRECISIONS",
    "Gradients",
    "LossScaler",
    "Precision",
    "accumulation_dtype",
    "is_half",
    "resolve_dtypes",
    "resolve_precision",
]

#: The half-precision dtypes, by name.
HALF_DTYPES = ("float16", "bfloat16")


def is_half(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is float16 or bfloat16 in the namespace ``xp``."""
    # Not getattr(xp, name, None) == dtype: NumPy reads None as float64.
    return any(hasattr(xp, name) and getattr(xp, name) == dtype for name in HALF_DTYPES)


def accumulation_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype to accumulate sums of ``dtype`` values in: float32 for half precision, else
    ``dtype`` itself."""
    return xp.float32 if is_half(xp, dtype) else dtype


@dataclass(frozen=True)
class Precision:
    """A mixed-precision policy: the dtype of the passes and that of the master parameters.

    Attributes
    ----------
    name : str
        ``"mixed_float16"`` or ``"mixed_bfloat16"``.
    compute : str
        The dtype of the forward and backward passes (``"float16"`` or ``"bfloat16"``).
    params : str
        The dtype of the master parameters and the optimizer's state (``"float32"``).
    loss_scaling : bool
        Whether the gradients are computed from a scaled loss (float16 only).
    """

    name: str
    compute: str
    params: str = "float32"

    @property
    def loss_scaling(self) -> bool:
        """Whether this precision scales the loss (float16, whose range is narrow)."""
        return self.compute == "float16"


#: The mixed precisions, by the names ``precision=`` and ``bpcore train --precision`` accept.
PRECISIONS = {
    "mixed_float16": Precision("mixed_float16", "float16"),
    "mixed_bfloat16": Precision("mixed_bfloat16", "bfloat16"),
}


def resolve_precision(precision: Any, dtype_name: str) -> Precision | None:
    """The `Precision` named by ``precision`` (None or a name of `PRECISIONS`) for a network
    whose parameters are of ``dtype_name``; raises ValueError naming the problem."""
    if precision is None:
        return None
    if isinstance(precision, Precision):
        precision = precision.name
    if not isinstance(precision, str) or precision not in PRECISIONS:
        valid = ", ".join(repr(n) for n in PRECISIONS)
        raise ValueError(f"unsupported precision {precision!r}; expected None or one of {valid}")
    policy = PRECISIONS[precision]
    if dtype_name != policy.params:
        raise ValueError(
            f"precision {precision!r} keeps {policy.params} master parameters; got "
            f"dtype={dtype_name!r} (leave dtype at 'float32')"
        )
    return policy


def resolve_dtypes(backend: Backend, dtype: Any, precision: Any) -> tuple[str, Precision | None]:
    """A network's dtype by name (float32 for None) and its mixed precision (`resolve_precision`),
    each checked against what ``backend``'s device has; raises ValueError naming the problem."""
    dtype_name = backend.resolve_dtype("float32" if dtype is None else dtype)
    policy = resolve_precision(precision, dtype_name)
    if policy is not None:
        backend.resolve_dtype(policy.compute)  # raises when the device lacks it
    return dtype_name, policy


class Gradients(dict[str, Array]):
    """A network's gradients by parameter name, and whether they are all finite.

    What `bpcore.networks.Network.gradient` returns under loss scaling: the gradients are
    unscaled, in float32, and zero where the step overflowed; ``finite`` says whether it did.
    bpcore's optimizers skip the update of a step that is not finite (one read of ``finite``,
    as ``GradScaler.step`` makes); an optimizer that does not know the flag (the book's own)
    sees zero gradients.

    Attributes
    ----------
    finite : array
        A 0-d boolean array on the device.
    """

    finite: Array

    def __init__(self, values: dict[str, Array], finite: Array) -> None:
        super().__init__(values)
        self.finite = finite


class LossScaler:
    """Dynamic loss scaling for float16 training, with the rule of PyTorch's ``GradScaler``.

    The gradient of the loss is multiplied by ``scale`` before the backward pass, so that
    small gradients do not underflow float16, and the parameters' gradients are divided by it
    in float32. After each step: if any gradient overflowed (inf or NaN) the step is skipped
    and ``scale`` is multiplied by ``backoff_factor``; after ``growth_interval`` finite steps in
    a row it is multiplied by ``growth_factor``. The scale and the count stay on the device
    (0-d arrays, updated with ``where``): nothing is read back for them.

    Parameters
    ----------
    init_scale : float, default 2**16
    growth_factor : float, default 2
    backoff_factor : float, default 0.5
    growth_interval : int, default 2000

    Attributes
    ----------
    scale : array or None
        The current scale, a 0-d float32 array on the parameters' device (None until `start`).
    good_steps : array or None
        Finite steps since the scale last changed, a 0-d integer array.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        for value, name in ((init_scale, "init_scale"), (growth_factor, "growth_factor")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, (int, float)):
            raise TypeError(f"backoff_factor must be a number, got {backoff_factor!r}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must lie in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int):
            raise TypeError(f"growth_interval must be an integer, got {growth_interval!r}")
        if growth_interval < 1:
            raise ValueError(f"growth_interval must be at least 1, got {growth_interval!r}")
        self.init_scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.scale: Array | None = None
        self.good_steps: Array | None = None

    def __repr__(self) -> str:
        return (
            f"LossScaler(init_scale={self.init_scale:g}, growth_factor={self.growth_factor:g}, "
            f"backoff_factor={self.backoff_factor:g}, growth_interval={self.growth_interval})"
        )

    def start(self, like: Array) -> None:
        """Put the initial scale on the device of ``like`` (a parameter), once."""
        if self.scale is None or self.good_steps is None:
            xp = namespace(like)
            device = array_api_compat.device(like)
            self.scale = xp.asarray(self.init_scale, dtype=xp.float32, device=device)
            self.good_steps = xp.asarray(0, dtype=xp.int32, device=device)

    def unscale(self, grads: dict[str, Array]) -> dict[str, Array]:
        """``grads`` (float32, from the scaled loss) divided by the scale."""
        inverse = 1.0 / self._started()[0]
        return {key: g * inverse for key, g in grads.items()}

    def checked(self, grads: dict[str, Array]) -> Gradients:
        """The step's (unscaled) gradients as `Gradients`: zero, and not ``finite``, if any
        value is inf or NaN. The scale moves by the outcome (`update`)."""
        scale = self._started()[0]
        xp = namespace(scale)
        device = array_api_compat.device(scale)
        finite = xp.asarray(True, device=device)
        for g in grads.values():
            finite = finite & xp.all(xp.isfinite(g))
        zero = xp.zeros((), dtype=xp.float32, device=device)
        values = {key: xp.where(finite, g, zero) for key, g in grads.items()}
        self.update(finite)
        return Gradients(values, finite)

    def update(self, finite: Array) -> None:
        """Move the scale after a step: down on overflow, up after enough finite steps."""
        scale, good_steps = self._started()
        xp = namespace(scale)
        counted = good_steps + 1
        grow = counted >= self.growth_interval
        self.scale = xp.where(
            finite,
            xp.where(grow, scale * self.growth_factor, scale),
            scale * self.backoff_factor,
        )
        self.good_steps = xp.where(finite & ~grow, counted, xp.zeros_like(counted))

    def state(self) -> dict[str, Array]:
        """The scale and the count, for a compiled step to carry."""
        scale, good_steps = self._started()
        return {"scale": scale, "good_steps": good_steps}

    def state_dict(self) -> dict[str, float | int]:
        """The scale and the count as Python numbers (one read from the device), for a run
        checkpoint, as ``GradScaler.state_dict``."""
        scale, good_steps = self._started()
        return {"scale": float(scale), "good_steps": int(good_steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set the scale and the count from `state_dict`'s numbers, on the device they are on
        now (call `start` first)."""
        scale = self._started()[0]
        xp, device = namespace(scale), array_api_compat.device(scale)
        self.scale = xp.asarray(float(state["scale"]), dtype=xp.float32, device=device)
        self.good_steps = xp.asarray(int(state["good_steps"]), dtype=xp.int32, device=device)

    def _started(self) -> tuple[Array, Array]:
        if self.scale is None or self.good_steps is None:
            raise RuntimeError("LossScaler.start(param) has not been called")
        return self.scale, self.good_steps

    def load_state(self, state: dict[str, Array]) -> None:
        """Set what `state` returned."""
        self.scale, self.good_steps = state["scale"], state["good_steps"]
