"""Datasets: the IDX reader, the look-up order, the downloader against a local HTTP server
serving real Fashion-MNIST files, and the embedded digits."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from bpcore import datasets
from bpcore.datasets import DatasetNotFoundError, load_digits, load_fashion_mnist, read_idx


def _idx(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _tiny_dataset(folder: Path, n=5, value=7):
    """A valid MNIST-shaped dataset of n images, every pixel ``value``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.full((n, 28, 28), value, dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(_idx(labels))  # raw works too
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No system folders, an empty user cache, no BPCORE_DATA."""
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [])
    # cache_home itself, not only XDG_CACHE_HOME, which macOS and Windows do not read.
    monkeypatch.setattr(datasets, "cache_home", lambda: tmp_path / "cache" / "bpcore")
    monkeypatch.delenv("BPCORE_DATA", raising=False)
    return tmp_path


# -- IDX -----------------------------------------------------------------------------------------


def test_read_idx_raw_and_gzipped(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx(array))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx(array)))
    for name in ("a.idx", "a.idx.gz"):
        got = read_idx(tmp_path / name)
        np.testing.assert_array_equal(got, array)
        assert got.dtype == np.int32 and got.dtype.isnative


def test_read_real_fashion_mnist_file(fashion_mnist_dir):
    labels = read_idx(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "not an IDX file"),
        (b"\x00\x00\x08", "not an IDX file"),
        (b"PK\x03\x04whatever", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01x", "not an IDX file"),  # unknown type code
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "IDX data is 3 bytes but its header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "IDX data is 3 bytes but its header"),
        # mtime=0: the same bytes, so the same test id, in every pytest-xdist worker
        (
            gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde", mtime=0)[:-6],
            "corrupt or truncated gzip",
        ),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, content, pattern):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# -- look-up order ---------------------------------------------------------------------------------


def test_look_up_order(isolated, monkeypatch):
    in_arg = _tiny_dataset(isolated / "arg", value=1)
    in_env = _tiny_dataset(isolated / "env" / "fashion-mnist", value=2)
    in_cache = _tiny_dataset(isolated / "cache" / "bpcore" / "fashion-mnist", value=3)
    in_system = _tiny_dataset(isolated / "system" / "fashion-mnist", value=4)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [isolated / "system"])
    monkeypatch.setenv("BPCORE_DATA", str(isolated / "env"))

    def pixel(**kwargs):
        (x, _), _ = load_fashion_mnist(normalize=False, download=False, **kwargs)
        return int(x[0, 0])

    assert pixel(data_dir=in_arg) == 1
    assert pixel() == 2
    shutil.rmtree(in_env)
    assert pixel() == 3
    shutil.rmtree(in_cache)
    assert pixel() == 4
    shutil.rmtree(in_system)
    with pytest.raises(DatasetNotFoundError, match="put its four files") as info:
        load_fashion_mnist(download=False)
    assert str(isolated / "cache" / "bpcore" / "fashion-mnist") in str(info.value)


def test_book_options(isolated):
    folder = _tiny_dataset(isolated / "d", n=4, value=51)
    (x, t), (xt, tt) = load_fashion_mnist(data_dir=folder, download=False)
    assert x.shape == (4, 784) and x.dtype == np.float32
    assert x.max() == pytest.approx(0.2)
    assert t.dtype == np.uint8 and t.tolist() == [0, 1, 2, 3]
    (x, t), _ = load_fashion_mnist(False, False, True, data_dir=folder, download=False)
    assert x.shape == (4, 1, 28, 28) and x.dtype == np.uint8
    assert t.shape == (4, 10) and t[3, 3] == 1.0 and t.sum() == 4


def test_corrupt_file_found_in_a_folder_is_named(isolated):
    folder = _tiny_dataset(isolated / "d")
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz") as info:
        load_fashion_mnist(data_dir=folder, download=False)
    assert "corrupt" in str(info.value) or "truncated" in str(info.value)


# -- the downloader, against a local server of real files ------------------------------------------


class _Server:
    """Serves a folder on 127.0.0.1; ``mode`` makes it fail in one of several ways."""

    def __init__(self, folder: Path):
        self.folder, self.mode, self.requests = folder, "ok", []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                path = server.folder / self.path.lstrip("/")
                if server.mode == "error" or not path.is_file():
                    self.send_error(500 if server.mode == "error" else 404)
                    return
                body = path.read_bytes()
                if server.mode == "wrong":  # a valid file, but not the one asked for
                    body = (server.folder / "t10k-labels-idx1-ubyte.gz").read_bytes()
                elif server.mode == "damaged":  # right length, last bytes zeroed
                    body = body[:-100] + bytes(100)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.mode == "interrupt":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the transfer stops half-way
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(isolated, monkeypatch, fashion_mnist_dir):
    server = _Server(fashion_mnist_dir)
    monkeypatch.setenv("BPCORE_FASHION_MNIST_MIRROR", server.url)
    yield server
    server.close()


def test_good_download(mirror, isolated):
    target = isolated / "data"
    (x, t), (xt, tt) = load_fashion_mnist(data_dir=target)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{stem}.gz" for stem in datasets.FILES.values()
    )
    for path in target.iterdir():  # byte for byte what was served
        assert path.read_bytes() == (mirror.folder / path.name).read_bytes()
    assert len(mirror.requests) == 4
    load_fashion_mnist(data_dir=target)  # now found: nothing downloaded again
    assert len(mirror.requests) == 4


def test_download_goes_to_the_user_cache_by_default(mirror, isolated, capsys):
    load_fashion_mnist(progress=False)
    cache = isolated / "cache" / "bpcore" / "fashion-mnist"
    assert len(list(cache.glob("*.gz"))) == 4
    assert capsys.readouterr().err == ""  # progress=False: no bar


def test_download_progress_bar(mirror, isolated, capsys):
    load_fashion_mnist(data_dir=isolated / "data")
    err = capsys.readouterr().err
    for stem in datasets.FILES.values():  # one bar per file, named after it, on stderr
        assert f"fashion-mnist/{stem}.gz" in err
    load_fashion_mnist(data_dir=isolated / "data")  # found: read without a bar
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/bpcore"),
        ("linux", {}, "HOME/.cache/bpcore"),
        ("freebsd14", {"XDG_CACHE_HOME": ""}, "HOME/.cache/bpcore"),  # empty: unset, as XDG says
        ("linux", {"XDG_CACHE_HOME": "relative/cache"}, "HOME/.cache/bpcore"),  # XDG: ignored
        ("darwin", {"XDG_CACHE_HOME": "/xdg"}, "HOME/Library/Caches/bpcore"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/bpcore/Cache"),
        ("win32", {}, "HOME/AppData/Local/bpcore/Cache"),
    ],
)
def test_cache_folder_follows_the_platform(platform, env, expected, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.sys, "platform", platform)
    monkeypatch.setattr(datasets.Path, "home", classmethod(lambda cls: tmp_path))
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert datasets.cache_home() == Path(expected.replace("HOME", str(tmp_path)))
    monkeypatch.setenv("BPCORE_DATA", "/override")  # looked in before the cache
    assert datasets.data_dirs("mnist")[:2] == [
        Path("/override/mnist"),
        Path(expected.replace("HOME", str(tmp_path))) / "mnist",
    ]


@pytest.mark.parametrize(
    ("mode", "error", "pattern"),
    [
        ("wrong", ValueError, r"checksum mismatch .* nothing was saved"),
        ("damaged", ValueError, r"is not valid gzip data .* nothing was saved"),
        ("error", DatasetNotFoundError, r"could not be downloaded .*HTTP Error 500"),
        (
            "interrupt",
            DatasetNotFoundError,
            r"could not be downloaded .*(interrupted|IncompleteRead)",
        ),
    ],
)
def test_failed_downloads_leave_nothing_behind(mirror, isolated, mode, error, pattern):
    mirror.mode = mode
    target = isolated / "data"
    with pytest.raises(error, match=pattern):
        load_fashion_mnist(data_dir=target)
    assert list(target.iterdir()) == []  # no partial or unverified file


def test_offline_error_says_where_to_put_the_files(isolated, monkeypatch):
    monkeypatch.setenv("BPCORE_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(DatasetNotFoundError, match="could not be downloaded") as info:
        datasets.load_mnist(data_dir=isolated / "mnist")
    message = str(info.value)
    assert str(isolated / "mnist") in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "BPCORE_MNIST_MIRROR" in message
    # One line, as the command line prints it: no "in one of:; /a; /b".
    assert "\n" not in message and ":;" not in message
    assert f"in one of '{isolated / 'mnist'}'" in message


def test_checksums_are_those_of_the_real_files(fashion_mnist_dir):
    for stem, digest in datasets.DATASETS["fashion-mnist"].sha256.items():
        content = gzip.decompress((fashion_mnist_dir / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == digest


# -- digits ---------------------------------------------------------------------------------------


def test_load_digits():
    (x, t), (xt, tt) = load_digits()
    assert x.shape == (1437, 64) and xt.shape == (360, 64)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() == 1.0
    assert sorted(set(t.tolist())) == list(range(10))
    assert np.bincount(np.concatenate([t, tt])).sum() == 1797
    (x2, _), _ = load_digits(normalize=False, flatten=False, one_hot_label=True)
    assert x2.shape == (1437, 1, 8, 8) and x2.dtype == np.uint8 and x2.max() == 16
    (x3, _), _ = load_digits(seed=1)
    assert not np.array_equal(x, x3)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        datasets.load_dataset("cifar")
