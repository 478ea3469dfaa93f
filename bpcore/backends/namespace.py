"""``namespace(*arrays)``: ``array_api_compat.array_namespace`` with a cache keyed by array types;
and two questions asked of a namespace at every call, answered once (`is_kind`, `index_dtype`).

``array_namespace`` inspects its arguments anew on every call (some 10 µs); a layer's forward pass
on a small batch is not much more. The namespace of an array depends only on its type for every
library bpcore supports, so the answer is cached per tuple of argument types; a call that fails
(arrays of two libraries) is not cached and raises as ``array_namespace`` does.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_dask_array, is_numpy_array

__all__ = ["index_dtype", "is_kind", "namespace"]

_CACHE: dict[tuple[type, ...], Any] = {}


def namespace(*arrays: Any) -> Any:
    """Return the Array API namespace of ``arrays``, as ``array_namespace`` does.

    One mix is allowed: Dask arrays with arrays of the library their chunks hold (a Dask
    network's data with its NumPy parameters) have Dask's namespace, whose functions take both.
    """
    key = tuple(type(a) for a in arrays)
    try:
        return _CACHE[key]
    except KeyError:
        pass
    try:
        xp = array_namespace(*arrays)
    except TypeError:
        lazy = [a for a in arrays if is_dask_array(a)]
        eager = [a for a in arrays if not is_dask_array(a)]
        if not lazy or not all(is_numpy_array(a) for a in eager):
            raise
        xp = array_namespace(*lazy)
    _CACHE[key] = xp
    return xp


_KINDS: dict[tuple[int, Any, Any], bool] = {}


def is_kind(xp: Any, dtype: Any, kind: str | tuple[str, ...]) -> bool:
    """``xp.isdtype(dtype, kind)``, cached: NumPy's takes microseconds, and the entry points and
    the loss layer ask at every call."""
    key = (id(xp), dtype, kind)
    try:
        return _KINDS[key]
    except KeyError:
        result = _KINDS[key] = bool(xp.isdtype(dtype, kind))
        return result


def index_dtype(xp: Any) -> Any:
    """The namespace's default integer dtype: int64, or int32 for JAX outside x64 mode."""
    try:
        return xp.__array_namespace_info__().default_dtypes()["integral"]
    except (AttributeError, KeyError, TypeError):
        return xp.int64
