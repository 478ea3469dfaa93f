"""`bpcore compare`: the same network on every backend, layer by layer, against float64 NumPy.

bpcore runs the same layer code, from bit-identical initial weights, on every backend; so where
two backends' results part, the place where they part says why. `compare_backends` builds one
seeded network per backend and device, and a float64 NumPy copy of it as the reference, then
trains them all in lock step (SGD, the same batch). At every step each layer's forward output,
each layer's backward output (the gradient it passes down) and its parameters' gradients are
compared with the reference's. Each layer is judged alone: on every backend it is given the
reference's input (forward) and the reference's gradient from above (backward), cast to the
backend's dtype (the reference computes from them rounded to that dtype too), so that rounding
does not pile up from layer to layer and an error shows in the layer that makes it. Before each
step, each backend's own chain of layers is compared too, by the network's scores (layer
``network``): a fault between the layers, which no single layer shows. The report names the
first backend, layer and pass (forward, backward) whose result leaves its tolerance, and by how
much.

Tolerances come from the dtype and the layer: a result may depart from the reference by
``SLACK * eps * sqrt(n) * step`` times the reference's largest magnitude, where ``eps`` is the
dtype's machine epsilon, ``n`` the length of the sums behind the result (a layer's fan-in
forward, its fan-out backward, the batch, and a convolution's output pixels, for parameter
gradients: rounding grows as their square root; 1 for elementwise layers) and ``step`` counts
the steps so far (the weights carry the rounding of the updates before). Rounding of a correct
layer stays well inside (the five CPU backends pass in float32 and float64, by test); a
layer made 0.1% wrong departs by about a thousand times its tolerance.

Where a backend also has a compiled step (`bpcore.compile_step` on JAX), the parameters' change
over the compiled steps is compared with their change over the eager steps, pass
``"compiled step"`` (not for networks with dropout, whose compiled step draws masks of its own).
Dropout masks are drawn once by the reference and given to every backend, so that all compute
the same function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .backends import resolve_backend, to_numpy
from .environment import environment_info
from .kernels import using_reference_kernels
from .layers import backward_params, holds_mask, param_names, takes_train_flg
from .optimizers import SGD
from .steps import compile_step

__all__ = [
    "COMPARE_MODELS",
    "COMPARE_SCHEMA_VERSION",
    "Comparison",
    "Departure",
    "compare_backends",
    "tolerance",
]

#: The version of `Comparison.to_json`'s document; see ``docs/schemas/compare.schema.json``.
COMPARE_SCHEMA_VERSION = 1

#: How many rounding units per square root of a sum's length a result may depart by.
SLACK = 8.0

LR = 0.05


def _mlp(**kwargs: Any) -> Any:
    from .networks import MultiLayerNet

    return MultiLayerNet(784, [50], 10, weight_init_std="he", **kwargs)


def _convnet(**kwargs: Any) -> Any:
    from .networks import SimpleConvNet

    return SimpleConvNet(**kwargs)


def _deepconvnet(**kwargs: Any) -> Any:
    from .networks import DeepConvNet

    return DeepConvNet(**kwargs)


#: The networks `compare_backends` (and ``bpcore compare --model``) builds, by name: the
#: ``--model`` names of ``bpcore train``, at the book's MNIST sizes.
COMPARE_MODELS: dict[str, Callable[..., Any]] = {
    "mlp": _mlp,
    "convnet": _convnet,
    "deepconvnet": _deepconvnet,
}


@dataclass
class Departure:
    """How far one result of one backend is from the reference's, at one step.

    ``departure`` is the largest absolute difference over the reference's largest magnitude;
    ``tolerance`` is what it may be (`tolerance`); ``ratio`` is their quotient (above 1: out).
    """

    backend: str
    device: str
    step: int
    layer: str
    pass_: str
    quantity: str
    departure: float
    tolerance: float
    position: int = 0  # where in its pass the result is computed (layer order)

    @property
    def ratio(self) -> float:
        """``departure / tolerance``: above 1, the result has left its tolerance."""
        return self.departure / self.tolerance if self.tolerance > 0 else math.inf

    @property
    def within(self) -> bool:
        """Whether the result stays within its tolerance (NaN does not)."""
        return self.ratio <= 1.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON row: ``pass`` for ``pass_``, ``ratio`` and ``within`` added."""
        row = asdict(self)
        row["pass"] = row.pop("pass_")
        row["ratio"] = _finite(self.ratio)
        row["departure"] = _finite(self.departure)
        row["within"] = self.within
        return row


@dataclass
class Comparison:
    """What `compare_backends` found: every departure, and the first one out of tolerance."""

    model: str
    dtype: str
    steps: int
    batch_size: int
    seed: int
    backends: list[dict[str, str]]
    departures: list[Departure] = field(default_factory=list)
    #: The `bpcore.environment.environment_info` report of the machine it ran on: versions,
    #: devices, and the settings that make float32 products TF32 on NVIDIA GPUs.
    environment: dict[str, Any] = field(default_factory=dict)
    #: Whether the layers ran on their Array API code only (`bpcore.kernels.reference_kernels`),
    #: not on a library's own kernels.
    reference_kernels: bool = False

    @property
    def first_divergence(self) -> Departure | None:
        """The first result out of tolerance: by step, then in the order the passes compute
        (forward from the first layer, backward from the last), then by backend."""
        return next((d for d in self.departures if not d.within), None)

    @property
    def passed(self) -> bool:
        """Whether every result of every backend stayed within its tolerance."""
        return self.first_divergence is None

    def worst(self) -> dict[str, Departure]:
        """Each backend's largest departure (as a share of its tolerance)."""
        worst: dict[str, Departure] = {}
        for d in self.departures:
            key = f"{d.backend}:{d.device}"
            if key not in worst or not d.ratio <= worst[key].ratio:
                worst[key] = d
        return worst

    def to_json(self) -> dict[str, Any]:
        """One JSON document (schema ``docs/schemas/compare.schema.json``, version 1)."""
        first = self.first_divergence
        return {
            "schema": "bpcore-compare",
            "version": COMPARE_SCHEMA_VERSION,
            "model": self.model,
            "dtype": self.dtype,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "backends": self.backends,
            "passed": self.passed,
            "first_divergence": None if first is None else first.as_dict(),
            "worst": {key: d.as_dict() for key, d in self.worst().items()},
            "departures": [d.as_dict() for d in self.departures],
            "environment": self.environment,
            "reference_kernels": self.reference_kernels,
        }

    def format(self) -> str:
        """The report ``bpcore compare`` prints: a line per backend, then the verdict."""
        lines = [
            f"{self.model}, {self.dtype}, {self.steps} SGD step{'s' * (self.steps != 1)} of "
            f"{self.batch_size} samples, "
            + ("the layers on their reference code, " if self.reference_kernels else "")
            + f"seed {self.seed}: each layer against float64 NumPy"
        ]
        for key, d in self.worst().items():
            lines.append(
                f"  {key:<24} largest departure {d.departure:.2e} ({d.ratio:.2f} of its "
                f"tolerance) at step {d.step}, {d.layer} {d.pass_} {d.quantity}"
            )
        first = self.first_divergence
        if first is None:
            lines.append("every result within its tolerance")
        else:
            lines.append(
                f"first divergence: {first.backend} ({first.device}), layer {first.layer}, "
                f"{first.pass_} pass ({first.quantity}), step {first.step}: departs by "
                f"{first.departure:.3e}, {first.ratio:.1f} times its tolerance "
                f"{first.tolerance:.1e}"
            )
        return "\n".join(lines)

    def dumps(self) -> str:
        """`to_json` as text (NaN and infinity as null: JSON has neither)."""
        return json.dumps(self.to_json(), allow_nan=False)


def tolerance(dtype_name: str, length: int, depth: int) -> float:
    """The relative departure a result may show: ``SLACK * eps * sqrt(length) * (depth+1)``.

    ``length`` is the length of the sums behind the result; ``depth`` how many roundings of the
    same size it carries besides its own (the earlier steps', for a layer's result; every
    layer's, for the compiled step's updates).
    """
    eps = float(np.finfo(np.dtype(dtype_name)).eps)
    return SLACK * eps * math.sqrt(max(length, 1)) * (depth + 1)


def compare_backends(
    backends: Sequence[Any] | None = None,
    *,
    model: str = "mlp",
    steps: int = 2,
    batch_size: int = 16,
    dtype: str = "float32",
    seed: int = 0,
    compiled: bool = True,
) -> Comparison:
    """Train ``model`` on every backend in lock step and compare each layer with float64 NumPy.

    Parameters
    ----------
    backends : sequence of str, (name, device) pairs or Backend, optional
        By default every backend installed here, on its default device.
    model : {"mlp", "convnet", "deepconvnet"}
        784-50-10 ``MultiLayerNet``, the book's ``SimpleConvNet`` or ``DeepConvNet``.
    steps : int
        SGD steps (learning rate 0.05) on one seeded random batch.
    batch_size : int
    dtype : {"float32", "float64"}
        What the backends compute in; the reference is always float64.
    seed : int
        Seeds the weights (the same on every backend) and the batch.
    compiled : bool
        Also compare the compiled step with the eager one where a backend has one.

    Returns
    -------
    Comparison
        ``first_divergence`` names the first backend, layer and pass out of tolerance.
    """
    if model not in COMPARE_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(COMPARE_MODELS)}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    resolved = [_resolve(b) for b in (backends if backends is not None else _installed())]
    build = COMPARE_MODELS[model]
    reference = build(seed=seed, dtype="float64", backend=np)  # NumPy, in float64
    nets = [reference.to(backend=b, dtype=dtype) for b in resolved]
    rng = np.random.default_rng([seed, 7])
    shape = (batch_size, 784) if model == "mlp" else (batch_size, 1, 28, 28)
    x_host = rng.random(shape)
    t_host = rng.integers(0, 10, batch_size)
    report = Comparison(
        model=model,
        dtype=dtype,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        backends=[{"backend": n.backend, "device": n.backend_info.device_name} for n in nets],
    )
    start = {
        i: {k: to_numpy(v).copy() for k, v in net.params.items()} for i, net in enumerate(nets)
    }
    longest = 1
    for step in range(1, steps + 1):
        # Each backend's own chain of layers, unforced, before the step: what the per-layer
        # checks cannot see (a layer that writes into another's output, a dtype lost between
        # layers), with the tolerance of every layer's rounding together.
        scores = to_numpy(reference.predict(reference.xp.asarray(x_host)))
        for net in nets:
            report.departures.append(_chained(net, x_host, scores, step, dtype))
        expected, given = _traced_step(reference, x_host, t_host, masks=None, rounded_to=dtype)
        longest = max(longest, *(record[4] for record in expected))
        masks = _masks(reference)
        for net in nets:
            found, _ = _traced_step(net, x_host, t_host, masks=masks, given=given)
            report.departures += _compare(net, step, expected, found, dtype)
    random = any(holds_mask(layer) for layer in reference.layers.values())
    if compiled and not random:  # a compiled step draws its own dropout masks
        for i, net in enumerate(nets):
            if compile_step(net, SGD(lr=LR), donate=False).compiled:
                report.departures += _compiled_against_eager(
                    net, start[i], x_host, t_host, steps, dtype, longest
                )
    report.departures.sort(key=lambda d: (d.step, _PASS_ORDER[d.pass_], d.position))
    report.environment = environment_info({net.backend for net in nets})
    report.reference_kernels = using_reference_kernels()
    return report


def _chained(
    net: Any, x_host: np.ndarray, reference: np.ndarray, step: int, dtype: str
) -> Departure:
    """The network's scores (inference mode) from its own chain of layers, against the
    reference's: pass ``forward``, layer ``network``, after every single layer's results."""
    with net.backend_info.activate():
        x = net.xp.asarray(x_host, device=net.device, dtype=net.dtype)
        scores = to_numpy(net.predict(x))
    batch = x_host.shape[0]
    longest = max(_fan_in(layer, batch) for layer in net.layers.values())
    return Departure(
        backend=net.backend,
        device=net.backend_info.device_name,
        step=step,
        layer="network",
        pass_="forward",
        quantity="scores, layers chained",
        departure=_relative(scores, reference),
        tolerance=tolerance(dtype, longest, len(net.layers) + step - 1),
        position=len(net.layers) + 1,  # after the layers' own forward results
    )


_PASS_ORDER = {"forward": 0, "backward": 1, "compiled step": 2}


def _installed() -> list[Any]:
    from .backends import available_backends

    return [name for name, devices in available_backends().items() if devices]


def _resolve(backend: Any) -> Any:
    if isinstance(backend, tuple):
        return resolve_backend(*backend)
    return resolve_backend(backend)


def _masks(net: Any) -> dict[str, np.ndarray]:
    """The dropout masks ``net`` drew in its last training pass, on the host."""
    return {
        name: to_numpy(layer.mask)
        for name, layer in net.layers.items()
        if holds_mask(layer) and layer.mask is not None
    }


Record = tuple[str, str, str, np.ndarray, int]


def _traced_step(
    net: Any,
    x_host: np.ndarray,
    t_host: np.ndarray,
    masks: dict[str, np.ndarray] | None,
    given: dict[tuple[str, str], np.ndarray] | None = None,
    rounded_to: str | None = None,
) -> tuple[list[Record], dict[tuple[str, str], np.ndarray]]:
    """One SGD step of ``net``, recording every layer's results on the host.

    Returns the records ``(layer, pass, quantity, value, sum length)`` in the order they are
    computed, and what each layer was given: ``("forward", layer)`` its input,
    ``("forward", "loss")`` the scores, ``("backward", layer)`` the gradient from above. With
    ``given`` (the reference's), each layer is given those instead of what the layer before it
    computed on this backend, so that each result is judged alone: rounding does not pile up
    from layer to layer, and a tolerance can be that of one layer. With ``masks``, the dropout
    layers use those instead of drawing their own. With ``rounded_to`` (the reference's run),
    each layer's input is first rounded to that dtype, so that the reference and the backends
    compute from the same values: two inputs of a pooling window that differ in float64 but
    round to one float32 would otherwise send the gradient to different places.
    """
    backend, xp = net.backend_info, net.xp
    records: list[Record] = []
    inputs: dict[tuple[str, str], np.ndarray] = {}

    def take(key: tuple[str, str], own: Any) -> Any:
        if given is not None:
            inputs[key] = given[key]
            return xp.asarray(given[key], device=net.device, dtype=net.dtype)
        value = to_numpy(own)
        if rounded_to is not None and np.dtype(rounded_to) != value.dtype:
            value = value.astype(rounded_to).astype(value.dtype)
            own = xp.asarray(value, device=net.device, dtype=net.dtype)
        inputs[key] = value
        return own

    with backend.activate():
        x = xp.asarray(x_host, device=net.device, dtype=net.dtype)
        t = xp.asarray(t_host, device=net.device)
        held = []
        for name, layer in net.layers.items():
            if masks is not None and name in masks:
                layer.mask = xp.asarray(masks[name], device=net.device)
                held.append((layer, layer.hold_mask))
                layer.hold_mask = True
        batch = x_host.shape[0]
        try:
            h = x
            for name, layer in net.layers.items():
                h = take(("forward", name), h)
                h = layer.forward(h, True) if takes_train_flg(layer) else layer.forward(h)
                records.append((name, "forward", "output", to_numpy(h), _fan_in(layer, batch)))
            h = take(("forward", "loss"), h)
            net.last_layer.forward(h, t)
            dout = net.last_layer.backward(1)
            classes = int(h.shape[-1])  # the softmax's sums
            records.append(("loss", "backward", "dx", to_numpy(dout), classes))
            names = list(net.layers)
            for name in reversed(names):
                layer = net.layers[name]
                dout = take(("backward", name), dout)
                grads_from = dout
                if name == names[0]:
                    backward_params(layer, dout)
                else:
                    dout = layer.backward(dout)
                    records.append((name, "backward", "dx", to_numpy(dout), _fan_out(layer, batch)))
                for p in param_names(layer):
                    grad = getattr(layer, "d" + p)
                    length = _summed_over(layer, grads_from)
                    records.append((name, "backward", "d" + p, to_numpy(grad), length))
        finally:
            for layer, was in held:
                layer.hold_mask = was
        # The book's SGD on the gradients the layers kept.
        grads = {}
        for key in net.params:
            layer, attribute = net.params.layer_of(key)
            grads[key] = getattr(layer, "d" + attribute)
        SGD(lr=LR).update(net.params, grads)
    return records, inputs


def _fan_in(layer: Any, batch: int) -> int:
    """The length of the sums behind a layer's forward output (1 for elementwise layers)."""
    if getattr(layer, "gamma", None) is not None:
        return batch  # batch normalization: the batch's mean and variance
    W = getattr(layer, "W", None)
    if W is None:
        return 1
    shape = tuple(W.shape)
    return int(shape[0]) if len(shape) == 2 else int(np.prod(shape[1:]))


def _fan_out(layer: Any, batch: int) -> int:
    """The length of the sums behind a layer's input gradient."""
    if getattr(layer, "gamma", None) is not None:
        return batch
    W = getattr(layer, "W", None)
    if W is None:
        return 1
    shape = tuple(W.shape)
    return int(shape[1]) if len(shape) == 2 else int(shape[0] * shape[2] * shape[3])


def _summed_over(layer: Any, dout: Any) -> int:
    """The length of the sums behind a layer's parameter gradients: every position of the
    output gradient that one output feature has (the batch, and for a convolution the
    output's pixels too)."""
    features = getattr(layer, "b", None)
    if features is None:
        features = getattr(layer, "beta", None)
    size = math.prod(int(n) for n in dout.shape)
    per_feature = int(math.prod(int(n) for n in features.shape)) if features is not None else 1
    return max(size // per_feature, 1)


def _compare(
    net: Any,
    step: int,
    expected: list[Record],
    found: list[Record],
    dtype: str,
) -> list[Departure]:
    rows = []
    for position, (want, got) in enumerate(zip(expected, found, strict=True)):
        layer, pass_, quantity, reference, length = want
        value = got[3]
        rows.append(
            Departure(
                backend=net.backend,
                device=net.backend_info.device_name,
                step=step,
                layer=layer,
                pass_=pass_,
                quantity=quantity,
                departure=_relative(value, reference),
                # each layer is given the reference's inputs; only the weights carry the
                # rounding of the steps before this one
                tolerance=tolerance(dtype, length, step - 1),
                position=position,
            )
        )
    return rows


def _relative(value: np.ndarray, reference: np.ndarray) -> float:
    """The largest absolute difference over the reference's largest magnitude (NaN: inf)."""
    value = np.asarray(value, dtype=np.float64)
    if value.shape != reference.shape or not np.all(np.isfinite(value)):
        return math.inf
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return float(np.max(np.abs(value - reference))) / (scale or 1.0) if reference.size else 0.0


def _compiled_against_eager(
    net: Any,
    start: dict[str, np.ndarray],
    x_host: np.ndarray,
    t_host: np.ndarray,
    steps: int,
    dtype: str,
    longest: int,
) -> list[Departure]:
    """The parameters' change over ``steps`` compiled steps against their change over the eager
    steps (the change, not the parameters: those are mostly their initial values, which would
    hide an error in the updates)."""
    eager = {k: to_numpy(v) for k, v in net.params.items()}
    twin = type(net).from_arrays(net.config, start, backend=net.backend_info, dtype=dtype)
    step = compile_step(twin, SGD(lr=LR), donate=False)
    x = twin.xp.asarray(x_host, device=twin.device, dtype=twin.dtype)
    t = twin.xp.asarray(t_host, device=twin.device)
    for _ in range(steps):
        step(x, t)
    rows = []
    # The updates went through every layer, forward and backward: the longest sum of any
    # layer's results (``longest``, from the reference's records) and all the layers' rounding.
    depth = len(net.layers) * 3
    for key, value in twin.params.items():
        layer, _ = twin.params.layer_of(key)
        name = next(n for n, candidate in twin.layers.items() if candidate is layer)
        rows.append(
            Departure(
                backend=net.backend,
                device=net.backend_info.device_name,
                step=steps,
                layer=name,
                pass_="compiled step",
                quantity=key,
                departure=_relative(to_numpy(value) - start[key], eager[key] - start[key]),
                tolerance=tolerance(dtype, longest, depth),
            )
        )
    return rows


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
