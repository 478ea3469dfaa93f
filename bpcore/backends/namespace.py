"""``namespace(*arrays)``: ``array_api_compat.array_namespace`` with a cache keyed by array types.

``array_namespace`` inspects its arguments anew on every call (some 10 µs); a layer's forward pass
on a small batch is not much more. The namespace of an array depends only on its type for every
library bpcore supports, so the answer is cached per tuple of argument types; a call that fails
(arrays of two libraries) is not cached and raises as ``array_namespace`` does.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_dask_array, is_numpy_array

__all__ = ["namespace"]

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
