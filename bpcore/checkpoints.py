"""Checkpoints: a network saved as a NumPy ``.npz`` file, loadable on any backend.

A checkpoint holds the parameters as plain NumPy arrays plus one uint8 array, ``__bpcore__``,
with JSON metadata (class, sizes, activation, dtype, bpcore version, and whatever a trainer adds).
Nothing is pickled: files are read with ``allow_pickle=False``, so loading one cannot run code.
A file is written to a temporary name beside its destination and renamed into place once complete,
so a crash never leaves half a checkpoint under the real name (`atomic_write`, which the dataset
downloads use too).

The format, version 1: one array per parameter under its name (``W1``, ...), one per buffer
under ``buffers/<layer>/<attribute>`` (the metadata lists both). A *run checkpoint*, which a
`bpcore.Trainer` writes to resume from (`save_run`, `load_run`), adds the optimizer's arrays
under ``optimizer/<state>/<parameter>``, the state of each random layer's generator under
``random/<layer>`` (so that dropout goes on exactly), and a ``trainer`` entry in the metadata
(epochs done, seed, mini-batch size, the optimizer's kind and scalars, the history). The
whole format lives in this module, and this module is the only one that opens checkpoint
files. Checkpoints written before buffers existed have none and load as they did.

A network class is found by its name among the subclasses of `bpcore.networks.Network`, which
register themselves here; `load` builds it from the saved arrays with ``from_arrays``.
Whether a checkpoint fits a network is asked in one place, `check_fits`, by `load_into` and
`load_run` alike.

The book's pretrained weights (``ch07/params.pkl``, ``ch08/deep_convnet_params.pkl``) are
pickles of a dict of NumPy arrays. `read_book_params` reads such a file with a restricted
unpickler that can build NumPy arrays, their dtypes and plain containers and nothing else: any
other name in the file (``os.system``, ``builtins.eval``, ...) is refused when the unpickler
meets it, before it could be called. `load_params_into` (the networks' ``load_params``) takes
a bpcore checkpoint or such a pickle; `load`, `load_into` and `load_run` keep refusing pickles.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from .backends import resolve_backend, to_numpy
from .layers import draws_random
from .version import __version__

__all__ = [
    "FORMAT",
    "atomic_write",
    "check_fits",
    "holds",
    "load",
    "load_into",
    "load_params_into",
    "load_run",
    "network_class",
    "read_book_params",
    "read_checkpoint",
    "register_network",
    "restore",
    "save",
    "save_run",
]

#: The ``format`` field of a checkpoint's metadata.
FORMAT = "bpcore-checkpoint"
_META_KEY = "__bpcore__"
_FORMAT_VERSION = 1
_BUFFER_PREFIX = "buffers/"
_OPTIMIZER_PREFIX = "optimizer/"
_RANDOM_PREFIX = "random/"
_PICKLE_START = b"\x80"  # the PROTO opcode every pickle since protocol 2 starts with

# Network classes by name: every subclass of networks.Network registers itself (checkpoints
# cannot import networks, which import this module to save).
_NETWORKS: dict[str, type] = {}


def register_network(cls: type) -> None:
    """Make a network class loadable by `load`, under its name (``Network`` subclasses are)."""
    _NETWORKS[cls.__name__] = cls


def network_class(name: str) -> type:
    """The registered network class called ``name``; ValueError for an unknown one."""
    try:
        return _NETWORKS[name]
    except KeyError:
        raise ValueError(
            f"unknown network class {name!r}; known: {', '.join(sorted(_NETWORKS))}"
        ) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Write a file all at once: a binary file object whose content replaces ``path`` on success.

    The content goes to a temporary file beside ``path`` (readable as a plain ``open`` would
    make it), is flushed to disk, and is renamed into place only when the block ends without an
    error; on any error or interruption the temporary file is removed and ``path`` is untouched.
    The folder must exist, as for ``open``: a missing one is more often a typo than a wish.

    Raises
    ------
    FileNotFoundError
        When ``path``'s folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {path.parent} to write {path.name} in")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        _readable_by_all(tmp)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    net : Network
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
    buffers = net.buffers
    meta = {
        "format": FORMAT,
        "format_version": _FORMAT_VERSION,
        "bpcore_version": __version__,
        "class": type(net).__name__,
        "config": net.config,
        "dtype": net.dtype_name,
        **({"precision": net.precision} if getattr(net, "precision", None) else {}),
        "saved_from": {"backend": net.backend, "device": net.backend_info.device_name},
        "params": list(net.params),
        **({"buffers": list(buffers)} if buffers else {}),
        **(dict(extra_meta) if extra_meta else {}),
    }
    arrays = {key: to_numpy(value) for key, value in net.params.items()}
    arrays.update({_BUFFER_PREFIX + key: to_numpy(value) for key, value in buffers.items()})
    for key, value in (extra_arrays or {}).items():
        if key in arrays or key == _META_KEY:
            raise ValueError(f"extra array name {key!r} clashes with a parameter")
        arrays[key] = to_numpy(value)
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
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
    with open(path, "rb") as f:
        start = f.read(4)  # what kind of file, from its first bytes, read once
    if start[:1] == _PICKLE_START:
        raise ValueError(
            f"{path} is a pickle, not a bpcore checkpoint; bpcore never unpickles a checkpoint "
            f"(loading a pickle can run any code in it). The book's weights load with "
            f"net.load_params(path), which reads NumPy arrays and nothing else"
        )
    if start != b"PK\x03\x04":  # every .npz is a zip archive, which starts so
        raise ValueError(f"{path} is not a bpcore checkpoint (not an .npz archive)")
    try:
        # Our own handle: np.load leaks the one it opens when the zip turns out to be corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError:  # object arrays, which only pickle could read
        raise ValueError(
            f"{path} is not a bpcore checkpoint: it holds object arrays, which only unpickling "
            f"could read, and bpcore never unpickles a checkpoint"
        ) from None
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


def is_pickle(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts as every pickle since protocol 2 does."""
    with open(path, "rb") as f:
        return f.read(1) == _PICKLE_START


# What a pickle of NumPy arrays names (NumPy 1 and 2 write these modules; protocol 2 encodes
# bytes with _codecs.encode, protocol 5 rebuilds arrays with _frombuffer), by module and name,
# mapped to where the object lives in the installed NumPy. Each builds arrays, dtypes or NumPy
# scalars from data; none runs anything else.
_BOOK_PICKLE_NAMES = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    (np.__name__, "ndarray"): ("", "ndarray"),
    (np.__name__, "dtype"): ("", "dtype"),
    ("_codecs", "encode"): ("codecs", "encode"),
}


def _numpy_object(module: str, name: str) -> Any:
    if module == "codecs":
        return _latin1_bytes
    if not module:
        return getattr(np, name)
    try:  # NumPy 2's private home; NumPy 1 keeps the same functions in numpy.core
        found = importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # pragma: no cover - NumPy 1
        found = importlib.import_module(f"numpy.core.{module}")
    return getattr(found, name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 pickles of arrays call it (their raw bytes, as latin-1
    text), and for nothing else: another codec (bz2, zlib, ...) is refused."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that resolves only the names of `_BOOK_PICKLE_NAMES`."""

    def __init__(self, file: IO[bytes], path: Any) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        where = _BOOK_PICKLE_NAMES.get((module, name))
        if where is None:
            raise pickle.UnpicklingError(
                f"{self._path} is a pickle that names {module}.{name}: bpcore reads only NumPy "
                f"arrays in plain containers from a pickle, and refused it before running "
                f"anything"
            )
        return _numpy_object(*where)


def read_book_params(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of a pickled dict of NumPy arrays: the book's ``save_params`` files.

    Read by a restricted unpickler (see the module's docstring): a file that names anything
    but NumPy's array and dtype builders is refused as soon as the name is met, and nothing in
    it runs. The result must be a dict of numeric NumPy arrays by string keys.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not such a pickle (another format, other objects, object arrays,
        truncated), with a message naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    data = path.read_bytes()
    try:
        loaded = _ArraysOnly(io.BytesIO(data), path).load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith(str(path)):  # our refusal, which names the file
            raise ValueError(str(exc)) from None
        raise ValueError(f"{path} is not a readable pickle of arrays: {exc}") from None
    except Exception as exc:  # truncated or malformed: whatever pickle or NumPy raise for it
        raise ValueError(f"{path} is not a readable pickle of arrays: {exc!r}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a dict of arrays")
    arrays = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ValueError(
                f"{path} holds {key!r}: {type(value).__name__}; expected arrays by name"
            )
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{path} holds {key!r} of dtype {value.dtype}; expected numbers")
        arrays[key] = value
    return arrays


def load_params_into(net: Any, path: str | os.PathLike[str]) -> None:
    """The networks' ``load_params``: a bpcore checkpoint of ``net``, or the book's pickle.

    A pickle (`is_pickle`) is read with `read_book_params`; its names must be exactly
    ``net``'s parameters, each of the shape the network has (the book's ``params.pkl`` for
    ``SimpleConvNet``, ``deep_convnet_params.pkl`` for ``DeepConvNet``). Anything else is read
    as a checkpoint (`load_into`). Nothing is set unless everything fits.
    """
    if not (Path(path).is_file() and is_pickle(path)):
        load_into(net, path)
        return
    arrays = read_book_params(path)
    unknown = sorted(set(arrays) - set(net.params))
    missing = [key for key in net.params if key not in arrays]
    if unknown or missing:
        raise ValueError(
            f"{path} holds the parameters {sorted(arrays)}, but {type(net).__name__} has "
            f"{list(net.params)} (missing {missing}, unknown {unknown})"
        )
    try:
        # Floats as they are (no copy); integer arrays as floats, which load_arrays requires.
        net.load_arrays({key: arrays[key].astype(np.float64, copy=False) for key in net.params})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _network_arrays(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The parameters and buffers among a checkpoint's arrays."""
    params = {key: arrays[key] for key in meta.get("params", [])}
    buffers = {key: arrays[_BUFFER_PREFIX + key] for key in meta.get("buffers", [])}
    return params, buffers


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
    Network
        A `TwoLayerNet`, `MultiLayerNet` or other registered network class, built from the saved
        arrays (no weights are drawn).

    Raises
    ------
    FileNotFoundError, ValueError
        As for `read_checkpoint`; also ValueError when the parameters do not fit the recorded
        sizes.
    """
    meta, arrays = read_checkpoint(path)
    try:
        cls: Any = network_class(str(meta.get("class", "")))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: checkpoint metadata has no network config")
    params, buffers = _network_arrays(meta, arrays)
    resolved = resolve_backend(backend, device)  # its errors are about the caller's arguments
    try:
        return cls.from_arrays(
            config,
            params,
            buffers=buffers,
            backend=resolved,
            dtype=meta.get("dtype"),
            precision=meta.get("precision"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def holds(meta: Mapping[str, Any], net: Any) -> bool:
    """Whether a checkpoint's metadata is that of ``net``'s class and configuration."""
    return meta.get("class") == type(net).__name__ and meta.get("config") == net.config


def check_fits(meta: Mapping[str, Any], net: Any, path: Any, what: str = "the network") -> None:
    """Raise ValueError unless the checkpoint at ``path`` (its metadata) `holds` ``net``.

    The one "does this checkpoint fit this network?" of bpcore; ``what`` names the network in
    the message, before its repr (a Trainer's is "the network to train,").
    """
    if not holds(meta, net):
        raise ValueError(
            f"{path} holds a {meta.get('class')} {meta.get('config')}, which does not match "
            f"{what} {net!r}"
        )


def restore(
    net: Any, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Set ``net``'s parameters and buffers from what `read_checkpoint` returned.

    The caller has checked that the checkpoint `holds` this network. Returns the other arrays
    (a trainer's optimizer state), for the caller to restore the rest.
    """
    params, buffers = _network_arrays(meta, arrays)
    net.load_arrays(params, buffers)
    used = {*params, *(_BUFFER_PREFIX + key for key in buffers)}
    return {key: value for key, value in arrays.items() if key not in used}


def load_into(net: Any, path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore ``net``'s parameters and buffers from a checkpoint of the same network.

    Returns the checkpoint's metadata and its other arrays (a trainer's optimizer state), for
    the caller to restore the rest.

    Raises
    ------
    ValueError
        When the checkpoint holds another class or configuration; ``net`` is then untouched.
    """
    meta, arrays = read_checkpoint(path)
    check_fits(meta, net, path)
    return meta, restore(net, meta, arrays)


def save_run(
    net: Any, path: str | os.PathLike[str], optimizer: Any, trainer: Mapping[str, Any]
) -> Path:
    """Save a training run to ``path`` (atomically): the network, the optimizer, the trainer.

    ``trainer`` is the trainer's JSON-able state (epochs done, seed, mini-batch size, history,
    ...); the optimizer's kind and scalars are added to it, and its arrays are saved under
    ``optimizer/``. `load_run` reads it back.
    """
    arrays, scalars = optimizer.state()
    meta = {
        "trainer": {
            **trainer,
            "optimizer": type(optimizer).__name__,
            "optimizer_state": scalars,
        }
    }
    extra = {_OPTIMIZER_PREFIX + key: value for key, value in arrays.items()}
    # Where the layers' random numbers go on from (dropout): a resumed run draws the masks the
    # uninterrupted one would. Generators that cannot say (CuPy's) are left out.
    for name, layer in net.layers.items():
        generator = layer.generator if draws_random(layer) else None
        if generator is not None and hasattr(generator, "get_state"):
            extra[_RANDOM_PREFIX + name] = generator.get_state()
    return save(net, path, extra_arrays=extra, extra_meta=meta)


def load_run(
    net: Any,
    path: str | os.PathLike[str],
    optimizer: Any,
    *,
    batch_size: int,
    validation_split: float | None = None,
) -> dict[str, Any]:
    """Restore ``net`` and ``optimizer`` from a run checkpoint; return its trainer state.

    Everything is checked before anything is set: the file, that it is a run checkpoint, that
    it `check_fits` the network, that it was trained with mini-batches of ``batch_size``, with
    the same ``validation_split`` (the same training samples) and with an optimizer of
    ``optimizer``'s kind (its state replaces the optimizer's, learning rate included), and its
    base learning rate.

    Raises
    ------
    FileNotFoundError, ValueError
        As for `read_checkpoint`, and when the run cannot be continued by this network and
        optimizer; the message says why.
    """
    meta, arrays = read_checkpoint(path)
    state = meta.get("trainer")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is a network checkpoint without a trainer state")
    check_fits(meta, net, path, "the network to train,")
    if state.get("batch_size") != batch_size:
        raise ValueError(
            f"{path} was trained with mini-batches of {state.get('batch_size')}, not "
            f"{batch_size}: the resumed run would not continue the same one"
        )
    if state.get("validation_split") != validation_split:
        saved = state.get("validation_split")
        raise ValueError(
            f"{path} was trained with validation_split={saved!r}, not {validation_split!r}: "
            f"the resumed run would train on other samples"
        )
    base_lr = state.get("base_lr")
    if base_lr is not None and not (
        isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0
    ):
        raise ValueError(f"{path} holds a base learning rate of {base_lr!r}: corrupt")
    if state.get("optimizer") != type(optimizer).__name__:
        raise ValueError(
            f"{path} was trained with {state.get('optimizer')}, not {type(optimizer).__name__}"
        )
    generators = {}
    for key in (k for k in arrays if k.startswith(_RANDOM_PREFIX)):
        name = key[len(_RANDOM_PREFIX) :]
        layer = net.layers.get(name)
        if layer is None or not draws_random(layer):
            raise ValueError(f"{path} holds random state for {name!r}, which draws no numbers")
        generators[name] = arrays[key]
    # A generator's state is its library's, on its device's kind: a run resumed elsewhere
    # starts its generators afresh (other masks) rather than feed them a foreign state.
    here = {"backend": net.backend, "device": net.backend_info.device_name}
    if meta.get("saved_from") != here:
        generators = {}
    backend = net.backend_info
    with backend.activate():
        rest = restore(net, meta, arrays)
        optimizer.load_state(
            {
                key[len(_OPTIMIZER_PREFIX) :]: backend.param_array(value, net.dtype_name)
                for key, value in rest.items()
                if key.startswith(_OPTIMIZER_PREFIX)
            },
            state.get("optimizer_state", {}),
        )
        for name, random_state in generators.items():
            generator = net.layers[name].generator
            if hasattr(generator, "set_state"):
                generator.set_state(random_state)
    return state
