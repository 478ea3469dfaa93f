"""The book's pretrained weights: pickles of a dict of NumPy arrays, read without running code.

``load_params`` reads the book's ``params.pkl`` files with an unpickler that builds NumPy arrays
and nothing else. These tests write pickles the way the book's were written (a dict of float64
arrays, protocol 4, naming NumPy 1's ``numpy.core.multiarray`` or NumPy 2's ``numpy._core``),
and hostile ones; the book's two real files are tested too where the fetched book repository is
at hand (``BPCORE_BOOK_DIR``: it is not copied into this repository).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpcore
from bpcore import SimpleConvNet, TwoLayerNet, to_numpy
from bpcore.checkpoints import read_book_params

CONV = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}


def _book_weights(seed=0):
    """The parameters of a small SimpleConvNet as the book keeps them: float64 NumPy arrays."""
    net = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, dtype="float64", seed=seed)
    return {key: to_numpy(value).astype(np.float64) for key, value in net.params.items()}


def _book_pickle(arrays, numpy_module="numpy._core.multiarray", protocol=4):
    """``pickle.dump(params, f)`` as the book's ``save_params`` does, naming ``numpy_module``.

    NumPy 2 writes ``numpy._core.multiarray``; the book's files, from NumPy 1, name
    ``numpy.core.multiarray``: the name is rewritten and the pickle re-framed.
    """
    data = pickle.dumps(dict(arrays), protocol=protocol)
    if numpy_module != "numpy._core.multiarray":
        old, new = b"numpy._core.multiarray", numpy_module.encode()
        data = data.replace(bytes([len(old)]) + old, bytes([len(new)]) + new)
        data = pickletools.optimize(data)  # frames of the right length again
    assert numpy_module.encode() in data
    return data


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_the_books_pickles_load_on_every_backend(backend, tmp_path, rng, numpy_module):
    arrays = _book_weights()
    path = tmp_path / "params.pkl"
    path.write_bytes(_book_pickle(arrays, numpy_module))
    net = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, seed=1, **backend.net_kwargs())
    net.load_params(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(to_numpy(net.params[key]), value.astype(np.float32))
    reference = SimpleConvNet.from_arrays(net.config, arrays, dtype="float32")
    x = rng.random((3, 1, 8, 8))
    np.testing.assert_allclose(
        to_numpy(net.predict(backend.asarray(x, "float32"))),
        to_numpy(reference.predict(x.astype(np.float32))),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("kind", ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend"])
def test_a_fully_connected_nets_pickle_loads(backend, tmp_path, rng, kind):
    # The book's dense nets keep their weights as W1, b1, ... (and gamma/beta with batch norm).
    build = {
        "TwoLayerNet": lambda **k: bpcore.TwoLayerNet(6, 5, 3, **k),
        "MultiLayerNet": lambda **k: bpcore.MultiLayerNet(6, [5, 4], 3, **k),
        "MultiLayerNetExtend": lambda **k: bpcore.MultiLayerNetExtend(
            6, [5], 3, use_batchnorm=True, **k
        ),
    }[kind]
    source = build(dtype="float64", seed=3)
    arrays = {key: to_numpy(value) for key, value in source.params.items()}
    path = tmp_path / "params.pkl"
    path.write_bytes(_book_pickle(arrays, "numpy.core.multiarray"))
    net = build(seed=4, **backend.net_kwargs())
    net.load_params(path)
    x = rng.random((4, 6))
    np.testing.assert_allclose(
        to_numpy(net.predict(backend.asarray(x, "float32"))),
        to_numpy(source.predict(x)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_other_protocols_of_arrays_load(tmp_path, protocol):
    arrays = {"W": np.arange(6.0).reshape(2, 3), "b": np.float32([1, 2, 3]), "n": np.int64([4])}
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    loaded = read_book_params(path)
    assert sorted(loaded) == ["W", "b", "n"]
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


class _Command:
    """What a hostile pickle carries: a call of ``function(*args)`` when it is loaded."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _hostile(tmp_path):
    """Pickles that would run something, each with the marker file it would create."""
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    import builtins
    import subprocess as sp

    payloads = {
        "os.system": {"W1": _Command(os.system, command)},
        "builtins.eval": {"W1": _Command(builtins.eval, f"open({str(marker)!r}, 'w')")},
        "subprocess.call": _Command(sp.call, ["touch", str(marker)]),
        "builtins.exec in a list": [_Command(builtins.exec, f"open({str(marker)!r}, 'w')")],
    }
    return marker, {name: pickle.dumps(p, protocol=4) for name, p in payloads.items()}


def test_hostile_pickles_are_refused_before_anything_runs(tmp_path):
    marker, pickles = _hostile(tmp_path)
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = {key: to_numpy(value).copy() for key, value in net.params.items()}
    for name, data in pickles.items():
        path = tmp_path / "params.pkl"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="refused it before running anything") as info:
            net.load_params(path)
        assert str(path) in str(info.value), name
        assert not marker.exists(), f"{name} ran"
    assert "system" in _refusal(tmp_path, pickles["os.system"])
    for key, value in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[key]), value)


def _refusal(tmp_path, data):
    path = tmp_path / "refused.pkl"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        read_book_params(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([np.zeros(2)], "holds a list, not a dict of arrays"),
        ({"W1": 1.0}, "holds 'W1': float; expected arrays by name"),
        ({"W1": np.array(["a"], dtype=object)}, "dtype object; expected numbers"),
        ({"W1": np.array(["ab"])}, "dtype <U2; expected numbers"),
    ],
)
def test_pickles_of_anything_but_numeric_arrays_are_refused(tmp_path, payload, message):
    assert message in _refusal(tmp_path, pickle.dumps(payload, protocol=4))


def test_a_truncated_pickle_is_a_clear_error(tmp_path):
    data = _book_pickle(_book_weights())
    assert "is not a readable pickle of arrays" in _refusal(tmp_path, data[: len(data) // 2])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {k: v for k, v in a.items() if k != "b3"}, r"missing \['b3'\]"),
        (lambda a: {**a, "gamma1": np.ones(5)}, r"unknown \['gamma1'\]"),
        (lambda a: {**a, "W3": np.ones((5, 4))}, r"parameter W3 has shape \(5, 4\)"),
    ],
)
def test_weights_of_another_network_change_nothing(tmp_path, change, message):
    path = tmp_path / "params.pkl"
    path.write_bytes(_book_pickle(change(_book_weights())))
    net = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, seed=1)
    before = {key: to_numpy(value).copy() for key, value in net.params.items()}
    with pytest.raises(ValueError, match=message):
        net.load_params(path)
    for key, value in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[key]), value)


def test_checkpoint_readers_keep_refusing_pickles(tmp_path):
    path = tmp_path / "params.pkl"
    path.write_bytes(_book_pickle(_book_weights()))
    with pytest.raises(ValueError, match=r"never unpickles a checkpoint.*net.load_params"):
        bpcore.load(path)
    net = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, seed=1)
    x, t = np.zeros((4, 1, 8, 8)), np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="is a pickle, not a bpcore checkpoint"):
        bpcore.Trainer(net, x, t, x, t, epochs=1, verbose=0, resume=path)


def test_save_params_then_load_params_is_a_checkpoint(tmp_path):
    net = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, seed=0)
    path = net.save_params(tmp_path / "params.pkl")
    assert not bpcore.checkpoints.is_pickle(path)
    other = SimpleConvNet((1, 8, 8), CONV, hidden_size=5, seed=1)
    other.load_params(path)
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(other.params[key]), to_numpy(value))


BOOK_DIR = os.environ.get("BPCORE_BOOK_DIR")

_BOOK_PREDICTIONS = """
import sys, numpy as np
book, chapter, module, cls, weights, images, out = sys.argv[1:]
sys.path[:0] = [book, f"{book}/{chapter}"]
net = getattr(__import__(module), cls)()
net.load_params(weights)
x = np.load(images)
np.save(out, net.predict(x, train_flg=False) if cls == "DeepConvNet" else net.predict(x))
"""


@pytest.mark.skipif(
    not BOOK_DIR, reason="BPCORE_BOOK_DIR names no fetched copy of the book's repository"
)
@pytest.mark.parametrize(
    ("chapter", "module", "cls", "weights"),
    [
        ("ch07", "simple_convnet", "SimpleConvNet", "ch07/params.pkl"),
        ("ch08", "deep_convnet", "DeepConvNet", "ch08/deep_convnet_params.pkl"),
    ],
)
def test_the_books_real_weights_give_the_books_predictions(
    tmp_path, rng, chapter, module, cls, weights
):
    book = Path(BOOK_DIR)  # type: ignore[arg-type]
    images = tmp_path / "x.npy"
    np.save(images, rng.random((20, 1, 28, 28)))
    out = tmp_path / "book.npy"
    subprocess.run(
        [sys.executable, "-c", _BOOK_PREDICTIONS, str(book), chapter, module, cls,
         str(book / weights), str(images), str(out)],
        check=True,
        cwd=book / chapter,
    )  # fmt: skip
    net = getattr(bpcore, cls)(dtype="float64")
    net.load_params(book / weights)
    np.testing.assert_allclose(
        to_numpy(net.predict(np.load(images))), np.load(out), rtol=0, atol=1e-12
    )


def test_codecs_encode_serves_latin1_bytes_only(tmp_path):
    # Protocol 2 pickles of arrays call _codecs.encode(text, "latin1"); any other codec a file
    # names is refused before it runs.
    import codecs

    class _Bz2:
        def __reduce__(self):
            return codecs.encode, (b"x" * 10, "bz2")

    message = _refusal(tmp_path, pickle.dumps({"W1": _Bz2()}, protocol=2))
    assert "is not a readable pickle of arrays" in message and "bz2" in message
    path = tmp_path / "two.pkl"
    path.write_bytes(pickle.dumps({"W": np.arange(3.0)}, protocol=2))
    np.testing.assert_array_equal(read_book_params(path)["W"], np.arange(3.0))
