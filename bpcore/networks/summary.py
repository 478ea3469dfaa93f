"""`summary`: a network's layers, output shapes and parameter counts as a table, as Keras prints.

The output shapes come from one sample run through the network's own forward loop
(`bpcore.networks.passes.forward`), inside `Network.using_state` so that the layers are left
as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..layers import param_names
from .passes import forward

__all__ = ["summary"]


class _Text(str):
    """A string that shows as itself (a table) where a notebook shows a value's ``repr``."""

    def __repr__(self) -> str:
        return str(self)


def summary(net: Any) -> str:
    """The table `Network.summary` returns; see there."""
    rows = []

    def row(name: str, layer: Any, out: Any) -> None:
        count = sum(_size(getattr(layer, a).shape) for a in param_names(layer))
        rows.append((f"{name} ({type(layer).__name__})", _shape(out.shape), count))

    backend, dtype_name = net.backend_info, net.dtype_name
    with net.using_state(layers=True), backend.activate():
        # Cast as every input is (NumPy has no bfloat16 to make it in).
        x = net.check_inputs(backend.asarray(np.zeros((1, *net.input_shape), dtype=np.float32)))
        with net.computing():
            forward(net.layers, x, False, row)
    rows.append((f"last_layer ({type(net.last_layer).__name__})", "()", 0))
    total = sum(_size(p.shape) for p in net.params.values())
    size = total * backend.param_xp.finfo(net.dtype).bits // 8
    name_width = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
    shape_width = max(len("Output shape"), *(len(r[1]) for r in rows)) + 2
    rule = "-" * (name_width + shape_width + 12)
    lines = [
        type(net).__name__,
        rule,
        f"{'Layer (type)':<{name_width}}{'Output shape':<{shape_width}}{'Params':>12}",
        rule,
        *(f"{a:<{name_width}}{b:<{shape_width}}{c:>12,}" for a, b, c in rows),
        rule,
        f"Total params: {total:,} ({size / 1024:,.1f} KiB)",
        f"dtype: {dtype_name}"
        + (f" (precision {net.precision})" if net.precision else "")
        + f", backend: {net.backend}, device: {net.backend_info.device_name}",
    ]
    return _Text("\n".join(lines))


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(["N", *(str(int(d)) for d in shape[1:])]) + ")"
