"""`Params`: a network's parameters, a dict bound to the layers that use them.

Assigning ``net.params["W1"] = new_W`` rebinds the layer too, so the book's
``optimizer.update(params, grads)`` works on immutable arrays (JAX), where an update must
replace each array rather than write into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat

from ..backends import Array

__all__ = ["Params"]


class Params(dict[str, Array]):
    """A network's parameters: a dict whose values stay bound to the network's layers.

    Setting ``params["W1"] = W`` checks that ``W`` has the shape, dtype, backend and device of the
    value it replaces, then hands it to the layer that uses it. ``update`` and ``|=`` check every
    value before setting any. Keys cannot be added or removed.
    """

    def __init__(self, values: Mapping[str, Array], bindings: Mapping[str, tuple[Any, str]]):
        super().__init__(values)
        self._bindings = dict(bindings)

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's own pickling would set items before _bindings exists.
        return (type(self), (dict(self), self._bindings))

    def _check(self, key: str, value: Array) -> None:
        if key not in self._bindings:
            raise KeyError(f"{key!r} is not a parameter of this network; it has {list(self)}")
        old = self[key]
        if not array_api_compat.is_array_api_obj(value):
            raise TypeError(f"params[{key!r}] must be an array, got {type(value).__name__}")
        if array_api_compat.array_namespace(value) is not array_api_compat.array_namespace(old):
            raise TypeError(
                f"params[{key!r}] must be an array of {type(old).__module__.split('.')[0]}, like "
                f"the value it replaces; got one of {type(value).__module__.split('.')[0]}"
            )
        if array_api_compat.device(value) != array_api_compat.device(old):
            raise ValueError(f"params[{key!r}] must be on the network's device")
        if tuple(value.shape) != tuple(old.shape) or value.dtype != old.dtype:
            raise ValueError(
                f"params[{key!r}] must have shape {tuple(old.shape)} and dtype {old.dtype}, got "
                f"shape {tuple(value.shape)} and dtype {value.dtype}"
            )

    def bind(self, key: str, value: Array) -> None:
        """Set ``params[key]`` and its layer's attribute without the checks of ``[key] =``.

        For code that swaps in a value it built from the old one (a perturbed copy, a cast, a
        JAX tracer, which the checks would not pass); the caller restores the original.
        """
        layer, attribute = self._bindings[key]
        setattr(layer, attribute, value)
        super().__setitem__(key, value)

    def layer_of(self, key: str) -> tuple[Any, str]:
        """The layer that uses ``params[key]``, and the attribute it holds it in."""
        return self._bindings[key]

    def __setitem__(self, key: str, value: Array) -> None:
        if key in self._bindings and value is dict.__getitem__(self, key):
            return  # updated in place (params[key] += ...): nothing to check or rebind
        self._check(key, value)
        self.bind(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several parameters; all are checked before any is set."""
        new = dict(*args, **kwargs)
        for key, value in new.items():
            self._check(key, value)
        for key, value in new.items():
            self.bind(key, value)

    def __ior__(self, other: Any) -> Params:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Array:
        """Return ``params[key]``; parameters cannot be added."""
        return self[key]

    def _fixed(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a network's parameters cannot be removed (raises `TypeError`)."""
        raise TypeError("a network's parameters cannot be removed")

    __delitem__ = pop = popitem = clear = _fixed
