"""Benchmark collection: the rows of one comparison run back to back."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def _group_key(index: int, item: pytest.Item) -> tuple[object, ...]:
    if _HERE not in Path(item.path).parents:
        return ("other", index)
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec else {}
    size = params.get("size", params.get("model", ""))
    return (str(item.path), str(size), str(params.get("dtype", "")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the rows of each comparison (same module, size or model, dtype) one after another.

    pytest runs parametrized tests function by function, so a group's bpcore row and its floor or
    peer rows would run minutes apart, and the load on a shared machine drifts over minutes. A
    stable sort on the group's first position keeps every other order as collected.
    """
    keys = [_group_key(i, item) for i, item in enumerate(items)]
    first: dict[tuple[object, ...], int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    order = sorted(range(len(items)), key=lambda i: first[keys[i]])
    items[:] = [items[i] for i in order]
