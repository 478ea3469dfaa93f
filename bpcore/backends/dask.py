"""Dask: data as lazy arrays chunked along the batch, parameters as NumPy arrays."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .base import Array, Backend, HostRandom, Namespace
from .numpy import NumPyBackend

__all__ = ["DaskBackend"]


class DaskBackend(Backend):
    """Dask arrays (through ``array_api_compat.dask.array``) of NumPy chunks, on the CPU.

    A Dask network keeps its parameters (small, read by every chunk) as ordinary NumPy arrays
    and only its data as Dask arrays; the layers mix the two, which Dask allows. Gradients and
    losses are computed together, once per step (`compute`), on the cluster's workers.
    """

    name = "dask"
    namespace_module = "array_api_compat.dask.array"
    install = (
        'pip install "dask[array,distributed]>=2024.12" (in a clone of bpcore: '
        'pip install -e ".[dask]")'
    )
    is_lazy = True

    @property
    def reads_values_freely(self) -> bool:
        """False: a read runs the graph."""
        return False

    @classmethod
    def owns_namespace(cls, xp: Namespace) -> bool:
        return bool(array_api_compat.is_dask_namespace(xp))

    @classmethod
    def owns_array(cls, a: Any) -> bool:
        return bool(array_api_compat.is_dask_array(a))

    @classmethod
    def device_names(cls, xp: Namespace) -> list[str]:
        return ["cpu"]

    @classmethod
    def parse_device(cls, xp: Namespace, device: Any) -> Any:
        if device not in (None, "cpu"):
            raise ValueError(
                f"backend 'dask' keeps NumPy chunks on the 'cpu' device, got device={device!r}"
            )
        return "cpu"

    @classmethod
    def to_numpy(cls, a: Array) -> np.ndarray:
        return np.asarray(a.compute())

    @classmethod
    def synchronize(cls, a: Array) -> None:
        a.compute()  # lazy: nothing has run until it is computed (the result is dropped)

    @classmethod
    def compute(cls, *values: Any) -> tuple[Any, ...]:
        import dask

        # A 0-d Dask array computes to a NumPy scalar: keep it a 0-d array, as elsewhere.
        return tuple(
            np.asarray(v) if isinstance(v, np.generic) else v for v in dask.compute(*values)
        )

    def overflowing(self) -> Any:
        """NumPy's overflow and invalid-value warnings off (see `Backend.overflowing`)."""
        return np.errstate(over="ignore", invalid="ignore")

    def asarray(self, host: np.ndarray) -> Array:
        """A Dask array chunked along the first axis (the batch) only.

        In chunks of Dask's default size (128 MiB); every other axis is whole in each chunk.
        """
        import dask.array as da

        host = np.array(host, copy=True)
        return da.from_array(host, chunks=("auto", *host.shape[1:]) if host.ndim else ())

    @property
    def param_xp(self) -> Namespace:
        """NumPy's namespace: the parameters are NumPy arrays."""
        return NumPyBackend.import_namespace()

    def param_asarray(self, host: np.ndarray) -> Array:
        """A NumPy copy of ``host``."""
        return np.array(host, copy=True)

    def indices(self, host: np.ndarray) -> Array:
        """NumPy's indices: gathers with host indices keep their chunk sizes known."""
        return host

    def random_generator(self, seed: Any = None) -> Any:
        """Draws on the host, kept as NumPy arrays, like the parameters.

        A dropout mask then multiplies Dask data (by broadcasting into its chunks) and the
        NumPy batch of a gradient check alike.
        """
        return HostRandom(self, seed, asarray=self.param_asarray)

    def persist(self, a: Array) -> Array:
        """Keep the chunks computed in memory (on the workers of a Dask cluster)."""
        return a.persist()
