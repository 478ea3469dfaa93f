"""A training run's data on the network's device: validated, cast and moved once; split.

The `Trainer` places its datasets here before its first step, so that its steps read nothing
back and move nothing: `on_device` validates a dataset once (labels read where that is free,
on the host, or once on the device) and keeps it on the device (persisted, on Dask);
`split_off` holds out a seeded fraction of a placed training set as validation data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Array

__all__ = ["on_device", "split_count", "split_off"]


def on_device(net: Any, x: Any, t: Any, names: tuple[str, str]) -> tuple[Array, Array]:
    """``x`` and ``t`` on ``net``'s device, validated and cast once (one-hot rows too).

    ``names`` name them in error messages (``("x_train", "t_train")``).
    """
    backend = net.backend_info
    with backend.activate():
        # The labels' values are read once, here (NumPy labels on the host, where that is
        # free: check_batch does so): the steps then need no check that waits for the device.
        x, t = net.check_batch(x, t, names=names, values=True)
        # What check_batch leaves on the host moves now: a Dask network's data (kept chunked,
        # on a cluster's workers), the book's own class's.
        if isinstance(x, np.ndarray):
            x = backend.asarray(x)
        if isinstance(t, np.ndarray):
            t = backend.asarray(t)
        if t.ndim == 2 and t.dtype != net.dtype:
            t = net.xp.astype(t, net.dtype)
    # Dask: computed once, kept in memory (on a cluster's workers) for every epoch's batches.
    return backend.persist(x), backend.persist(t)


def split_count(n: int, fraction: Any) -> int:
    """How many of ``n`` samples a ``validation_split`` of ``fraction`` holds out; checked."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"validation_split must be a number in (0, 1), got {fraction!r}")
    k = round(n * fraction) if 0 < fraction < 1 else 0
    if not 0 < k < n:
        raise ValueError(
            f"validation_split={fraction!r} of {n} training samples leaves no validation or "
            f"no training sample; expected a fraction in (0, 1)"
        )
    return k


def split_off(
    net: Any, x: Array, t: Array, fraction: Any, seed: Any
) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """``(x, t)`` split into a training part and a validation part of ``fraction`` of it.

    The validation samples are drawn from ``seed`` (so a resumed run, with its checkpoint's
    seed, holds out the same ones); both parts keep the data's order. Split on the device.
    """
    n = int(x.shape[0])
    k = split_count(n, fraction)
    order = np.random.default_rng([seed, n, 1]).permutation(n)
    backend, xp = net.backend_info, net.xp
    with backend.activate():
        parts = []
        for chosen in (order[k:], order[:k]):
            index = backend.indices(np.sort(chosen))
            parts.append(
                (
                    backend.persist(xp.take(x, index, axis=0)),
                    backend.persist(xp.take(t, index, axis=0)),
                )
            )
    return parts[0], parts[1]
