"""Datasets as NumPy arrays, the book's way: ``((x_train, t_train), (x_test, t_test))``.

* `load_mnist` and `load_fashion_mnist` read the IDX files (gzipped or raw) from the first folder
  that has them: the ``data_dir`` argument, ``$BPCORE_DATA/<name>``, the user cache
  (`cache_home`: ``~/.cache/bpcore/<name>`` or ``$XDG_CACHE_HOME`` on Linux, the platform's cache
  folder on macOS and Windows), then system folders
  (``/usr/share/datasets/<name>``, where Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST).
  When none has them they are downloaded from the dataset's public mirror (overridable with
  ``BPCORE_MNIST_MIRROR`` / ``BPCORE_FASHION_MNIST_MIRROR``) into the first of those folders
  (``data_dir`` when given, else ``$BPCORE_DATA/<name>`` when set, else the user cache), with a
  progress bar, to a temporary file that is renamed into place only once complete
  and verified against the SHA-256 of its decompressed content.
* `load_digits` reads the 1,797 8x8 UCI handwritten digits embedded in the package, so that
  training works offline on a fresh machine.

Nothing is pickled (the book's loader pickles its cache): the IDX files are the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import struct
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import atomic_write

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "cache_home",
    "data_dirs",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "raw_images",
    "read_idx",
]

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the folders looked in, and could not be downloaded."""


@dataclass(frozen=True)
class _Dataset:
    name: str
    mirror: str
    mirror_env: str
    # SHA-256 of each file's decompressed IDX content: the mirrors' .gz files and Debian's
    # recompressed ones differ byte for byte but hold the same data.
    sha256: dict[str, str]

    @property
    def base_url(self) -> str:
        url = os.environ.get(self.mirror_env) or self.mirror
        return url if url.endswith("/") else url + "/"


DATASETS = {
    "mnist": _Dataset(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "BPCORE_MNIST_MIRROR",
        {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    "fashion-mnist": _Dataset(
        "fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "BPCORE_FASHION_MNIST_MIRROR",
        {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}

#: System folders looked in last (Debian's dataset packages install under /usr/share/datasets).
SYSTEM_DIRS = [Path("/usr/share/datasets"), Path("/usr/local/share/datasets")]

_DIGITS = Path(__file__).parent / "data" / "digits.csv.gz"
_DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


# -- IDX ---------------------------------------------------------------------------------------


def _decompressed(path: Path, raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), gzipped or raw.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    numpy.ndarray
        Shaped as the file's header says, in native byte order.

    Raises
    ------
    ValueError
        When the magic number, the dimensions or the length are wrong (a corrupt or truncated
        file); the message names the file.
    """
    path = Path(path)
    data = _decompressed(path, path.read_bytes())
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[data[2]]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX data is {len(data) - header} bytes but its header {dims} says "
            f"{expected} (truncated or corrupt file)"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    native: np.ndarray = array.astype(dtype.newbyteorder("="), copy=True)
    return native


# -- where the files are -----------------------------------------------------------------------


def cache_home() -> Path:
    """bpcore's folder in the user's cache, where each platform keeps caches.

    * Linux and other Unix: ``$XDG_CACHE_HOME/bpcore``, else ``~/.cache/bpcore`` (the XDG base
      directory specification);
    * macOS: ``~/Library/Caches/bpcore``;
    * Windows: ``%LOCALAPPDATA%\\bpcore\\Cache``, else ``~\\AppData\\Local\\bpcore\\Cache``.

    Downloads go to ``$BPCORE_DATA/<name>`` instead when that variable is set.
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(local) / "bpcore" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "bpcore"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification: a relative path is invalid and to be ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "bpcore"


def data_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders looked in for dataset ``name``, in order."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("BPCORE_DATA"):
        dirs.append(Path(os.environ["BPCORE_DATA"]) / name)
    dirs.append(cache_home() / name)
    dirs += [folder / name for folder in SYSTEM_DIRS]
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _download(dataset: _Dataset, stem: str, folder: Path, progress: bool) -> Path:
    """Download ``stem``.gz into ``folder``; verified, then written atomically, or nothing left."""
    url = dataset.base_url + stem + ".gz"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.gz"
    data = bytearray()  # at most some 30 MB; nothing touches the disk before it is verified
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        bar = _progress(total, f"{dataset.name}/{stem}.gz", progress)
        try:
            while chunk := response.read(1 << 16):
                data += chunk
                bar.update(len(chunk))
        finally:
            bar.close()
    if total and len(data) != total:
        raise ConnectionError(f"download of {url} was interrupted ({len(data)} of {total} bytes)")
    try:
        digest = hashlib.sha256(_decompressed(target, bytes(data))).hexdigest()
    except ValueError as exc:
        raise ValueError(f"{url} is not valid gzip data ({exc}); nothing was saved") from None
    if digest != dataset.sha256[stem]:
        raise ValueError(
            f"checksum mismatch for {url}: SHA-256 of its content is {digest}, expected "
            f"{dataset.sha256[stem]}; nothing was saved"
        )
    with atomic_write(target) as out:
        out.write(data)
    return target


class _Bar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _Bar()
    from tqdm.auto import tqdm  # a widget in Jupyter, a bar in a terminal

    return tqdm(total=total or None, desc=desc, unit="B", unit_scale=True, file=sys.stderr)


def _locate(name: str, data_dir: Any, download: bool, progress: bool) -> dict[str, Path]:
    dataset = DATASETS[name]
    dirs = data_dirs(name, data_dir)
    for folder in dirs:
        found = {key: _find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
    # One line (the command line prints errors on one): the folders, quoted, by commas.
    where = ", ".join(f"'{d}'" for d in dirs)
    files = ", ".join(f"{stem}.gz" for stem in FILES.values())
    if not download:
        raise DatasetNotFoundError(
            f"{name} is not in any of these folders: {where}; put its four files ({files}) in "
            f"one of them, or allow downloading"
        )
    folder = dirs[0]
    try:
        paths = {}
        for key, stem in FILES.items():
            paths[key] = _find(folder, stem) or _download(dataset, stem, folder, progress)
        return paths
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise DatasetNotFoundError(
            f"{name} could not be downloaded from {dataset.base_url} ({exc}); put its four files "
            f"({files}) in one of {where}, or set {dataset.mirror_env} to a reachable mirror"
        ) from None


# -- the book's loaders ------------------------------------------------------------------------


def _shape(
    x: np.ndarray,
    labels: np.ndarray,
    normalize: bool,
    flatten: bool,
    one_hot: bool,
    scale: float,
    side: int,
) -> tuple[np.ndarray, np.ndarray]:
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, side, side)
    if normalize:
        x = x.astype(np.float32) / np.float32(scale)
    if one_hot:
        labels = np.eye(10, dtype=np.float32)[labels]
    return x, labels


def load_dataset(
    name: str,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Split:
    """Load ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``; see `load_mnist`."""
    if name == "digits":
        return load_digits(normalize, flatten, one_hot_label)
    if name not in DATASETS:
        valid = ", ".join(repr(n) for n in [*DATASETS, "digits"])
        raise ValueError(f"unknown dataset {name!r}; expected one of {valid}")
    paths = _locate(name, data_dir, download, progress)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(
                f"{paths[f'{split}_images']}: expected uint8 images of 28x28, got "
                f"{images.dtype} {images.shape}"
            )
        if labels.shape != (len(images),) or (labels.size and labels.max() > 9):
            raise ValueError(f"{paths[f'{split}_labels']}: expected {len(images)} labels in 0..9")
    train, test = (
        _shape(
            arrays[f"{s}_images"],
            arrays[f"{s}_labels"],
            normalize,
            flatten,
            one_hot_label,
            255.0,
            28,
        )
        for s in ("train", "test")
    )
    return train, test


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Split:
    """Load MNIST as the book does: ``((x_train, t_train), (x_test, t_test))``.

    Parameters
    ----------
    normalize : bool, default True
        Scale pixels to float32 in [0, 1]; else keep uint8 0..255.
    flatten : bool, default True
        Images as rows of 784; else ``(N, 1, 28, 28)``.
    one_hot_label : bool, default False
        Labels as float32 one-hot rows ``(N, 10)``; else uint8 ``(N,)``.
    data_dir : path, optional
        Looked in first (and downloaded to, when the files are nowhere).
    download : bool, default True
        Download the files when no folder has them.
    progress : bool, default True
        Show a progress bar (tqdm, on stderr; a widget in Jupyter) while a file downloads. Files
        found in a folder are read without one.

    Raises
    ------
    DatasetNotFoundError
        Offline and nowhere to be found; the message lists the folders to put the files in.
    ValueError
        A corrupt or truncated file (named), or a download whose checksum does not match.
    """
    return load_dataset(
        "mnist",
        normalize,
        flatten,
        one_hot_label,
        data_dir=data_dir,
        download=download,
        progress=progress,
    )


def load_fashion_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Split:
    """Load Fashion-MNIST (Zalando; the IDX format of MNIST), as `load_mnist` does."""
    return load_dataset(
        "fashion-mnist",
        normalize,
        flatten,
        one_hot_label,
        data_dir=data_dir,
        download=download,
        progress=progress,
    )


def load_digits(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    test_size: int = 360,
    seed: int = 0,
) -> Split:
    """Load the embedded UCI handwritten digits: 1,797 images of 8x8 pixels valued 0..16.

    The rows are shuffled with ``seed`` and the last ``test_size`` are the test set. Pixels are
    scaled to float32 in [0, 1] by ``normalize``; ``flatten=False`` gives ``(N, 1, 8, 8)``. See
    ``bpcore/data/DIGITS-LICENSE.md`` for the data's origin and license.
    """
    raw = _DIGITS.read_bytes()
    if hashlib.sha256(raw).hexdigest() != _DIGITS_SHA256:
        raise ValueError(f"{_DIGITS}: the embedded digits file is damaged (checksum mismatch)")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.uint8)
    order = np.random.default_rng(seed).permutation(len(table))
    x, t = table[order, :64], table[order, 64]
    if not 0 < test_size < len(table):
        raise ValueError(f"test_size must be between 1 and {len(table) - 1}, got {test_size}")
    cut = len(table) - test_size
    train = _shape(x[:cut], t[:cut], normalize, flatten, one_hot_label, 16.0, 8)
    test = _shape(x[cut:], t[cut:], normalize, flatten, one_hot_label, 16.0, 8)
    return train, test


def raw_images(n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` synthetic raw MNIST-like images, uint8 of shape ``(n, 784)``.

    Each 28x28 image has a 0 background and two strokes (vertical and horizontal) of values 64 to
    255, the statistics that matter to the gradient check: mostly zeros, large raw values, as
    ``load_mnist(normalize=False)`` gives.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for image in images:
        row, col = int(rng.integers(2, 16)), int(rng.integers(4, 22))
        image[row : row + 12, col - 2 : col + 3] = rng.integers(64, 256, (12, 5))
        image[row + 5 : row + 8, 4:24] = rng.integers(128, 256, (3, 20))
    return images.reshape(n, 784)
