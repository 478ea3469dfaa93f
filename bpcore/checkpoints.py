"""Checkpoints: a network saved as a NumPy ``.npz`` file, loadable on any backend.

A checkpoint holds the parameters as plain NumPy arrays plus one uint8 array, ``__bpcore__``,
with JSON metadata (class, sizes, activation, dtype, bpcore version, and whatever a trainer adds).
Nothing is pickled: files are read with ``allow_pickle=False``, so loading one cannot run code.
A file is written to a temporary name beside its destination and renamed into place once complete,
so a crash never leaves half a checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .backends import to_numpy

__all__ = ["FORMAT", "load", "read_checkpoint", "save"]

#: The ``format`` field of a checkpoint's metadata.
FORMAT = "bpcore-checkpoint"
_META_KEY = "__bpcore__"
_FORMAT_VERSION = 1


def save(
    net: Any,
    path: str | os.PathLike[str],
    *,
    extra_arrays: Mapping[str, Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``net`` to ``path`` (an ``.npz`` file), atomically.

    Parameters
    ----------
    net : TwoLayerNet or MultiLayerNet
        On any backend; its arrays are copied to the host.
    path : str or path-like
        Where to write. ``.npz`` is not appended.
    extra_arrays, extra_meta : mapping, optional
        More arrays (names must not clash with parameter names) and JSON-able metadata, as a
        trainer stores its optimizer state and history.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    meta = {
        "format": FORMAT,
        "format_version": _FORMAT_VERSION,
        "bpcore_version": __version__,
        "class": type(net).__name__,
        "config": net._config,
        "dtype": net._dtype_name,
        "saved_from": {"backend": net.backend, "device": str(net.device)},
        "params": list(net.params),
        **(dict(extra_meta) if extra_meta else {}),
    }
    arrays = {key: to_numpy(value) for key, value in net.params.items()}
    for key, value in (extra_arrays or {}).items():
        if key in arrays or key == _META_KEY:
            raise ValueError(f"extra array name {key!r} clashes with a parameter")
        arrays[key] = to_numpy(value)
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _readable_by_all(tmp)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _readable_by_all(path: str) -> None:
    """Give a temporary file the permissions a plain ``open`` would (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint's metadata and arrays, validating the file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When it is not a readable bpcore checkpoint (garbage, truncated, object arrays, missing
        metadata), with a message naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        # Our own handle: np.load leaks the one it opens when the zip turns out to be corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise ValueError(f"{path} is not a bpcore checkpoint: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a bpcore checkpoint (corrupt or truncated: {exc})"
        ) from None
    raw = arrays.pop(_META_KEY, None)
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} is not a bpcore checkpoint (no {_META_KEY} metadata)")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has unreadable checkpoint metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not a bpcore checkpoint (format {found!r})")
    for key in meta.get("params", []):
        if key not in arrays:
            raise ValueError(f"{path} is missing parameter {key!r}")
    return meta, arrays


def load(path: str | os.PathLike[str], backend: Any = None, device: Any = None) -> Any:
    """Load a network saved with ``net.save`` (or `save`), on any backend and device.

    Parameters
    ----------
    path : str or path-like
    backend, device
        Where to put the network, as for the network constructors; the backend it was saved
        from does not matter (GPU to CPU and back).

    Returns
    -------
    TwoLayerNet or MultiLayerNet

    Raises
    ------
    FileNotFoundError, ValueError
        As for `read_checkpoint`; also ValueError when the parameters do not fit the recorded
        sizes.
    """
    from . import networks

    meta, arrays = read_checkpoint(path)
    classes = {"TwoLayerNet": networks.TwoLayerNet, "MultiLayerNet": networks.MultiLayerNet}
    cls = classes.get(meta.get("class", ""))
    if cls is None:
        raise ValueError(f"{path}: unknown network class {meta.get('class')!r}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: checkpoint metadata has no network config")
    try:
        net = cls(**config, backend=backend, device=device, dtype=meta.get("dtype"), seed=0)
    except TypeError as exc:
        raise ValueError(f"{path}: checkpoint config does not fit {cls.__name__}: {exc}") from None
    values = {}
    for key, current in net.params.items():
        host = arrays[key]
        if host.shape != tuple(current.shape) or host.dtype != np.dtype(meta["dtype"]):
            raise ValueError(
                f"{path}: parameter {key} has shape {host.shape} and dtype {host.dtype}, "
                f"expected {tuple(current.shape)} and {meta['dtype']}"
            )
        values[key] = net.backend_info.param_asarray(host)
    net.params.update(values)
    return net
