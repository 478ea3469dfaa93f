"""Building a network: host arrays checked and copied to the device, layers bound and seeded.

`Network` builds itself with these, from weights its constructor drew (`Network.__init__`) or
from a checkpoint's arrays (`Network.from_arrays`): the same path either way, so a loaded
network is exactly a built one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..backends import Array, Backend
from ..layers import draws_random, param_names
from ..precision import LossScaler, Precision

__all__ = ["bindings", "checked_host", "loss_scaler", "on_device", "seed_generators"]


def checked_host(
    owner: str,
    expected: Mapping[str, tuple[int, ...]],
    host: Mapping[str, np.ndarray],
    dtype_name: str,
) -> dict[str, np.ndarray]:
    """The host arrays ``expected`` names, in its order, each checked for shape and kind.

    Raises ValueError naming the network class ``owner`` when one is missing, or has another
    shape or a dtype that is not floating.
    """
    missing = [key for key in expected if key not in host]
    if missing:
        raise ValueError(f"no array for parameter(s) {missing} of {owner}")
    for key, shape in expected.items():
        if tuple(host[key].shape) != tuple(shape) or host[key].dtype.kind != "f":
            raise ValueError(
                f"parameter {key} has shape {tuple(host[key].shape)} and dtype "
                f"{host[key].dtype}, expected {tuple(shape)} and {dtype_name}"
            )
    return {key: host[key] for key in expected}


def on_device(
    backend: Backend, host: Mapping[str, np.ndarray], dtype_name: str
) -> dict[str, Array]:
    """Host arrays cast to ``dtype_name`` and copied to where ``backend`` keeps parameters."""
    with backend.activate():  # CuPy allocates on the current device, whatever device= says
        return {key: backend.param_array(a, dtype_name) for key, a in host.items()}


def bindings(layers: Iterable[Any], params: Mapping[str, Array]) -> dict[str, tuple[Any, str]]:
    """Which layer holds each parameter, and in which attribute: ``key -> (layer, attribute)``.

    Found by identity: `build` hands the very arrays of ``params`` to the layers.
    """
    by_id = {id(value): key for key, value in params.items()}
    found = {}
    for layer in layers:
        for attribute in param_names(layer):
            found[by_id[id(getattr(layer, attribute))]] = (layer, attribute)
    return found


def seed_generators(backend: Backend, layers: Iterable[Any], seed: Any) -> None:
    """Give the layers that draw random numbers (dropout) generators on the device.

    Seeded from ``seed`` on a stream apart from the one that drew the weights, so the same
    seed gives the same masks on every run.
    """
    random_layers = [layer for layer in layers if draws_random(layer)]
    if not random_layers:
        return
    with backend.activate():
        for layer, layer_seed in zip(
            random_layers, _layer_seeds(seed, len(random_layers)), strict=True
        ):
            layer.generator = backend.random_generator(layer_seed)


def _layer_seeds(seed: Any, count: int) -> list[Any]:
    """Seeds for ``count`` random layers, apart from the stream ``default_rng(seed)`` drew."""
    if isinstance(seed, np.random.Generator):
        return [int(s) for s in seed.integers(2**63, size=count)]
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # spawn() children differ from the parent's own stream, which drew the weights.
    return list(sequence.spawn(count))


def loss_scaler(
    backend: Backend, precision: Precision | None, params: Mapping[str, Array]
) -> LossScaler | None:
    """A started `LossScaler` for a precision that scales the loss (mixed float16), else None."""
    if precision is None or not precision.loss_scaling:
        return None
    scaler = LossScaler()
    with backend.activate():
        scaler.start(next(iter(params.values())))
    return scaler
