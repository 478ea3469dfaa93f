"""Checkpoints: saved from any backend, loaded on any other; corrupt files get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.testing import backend_cases


@pytest.mark.parametrize("net_dtype", ["float32", "float64"])
def test_round_trip_to_every_backend(backend, tmp_path, net_dtype):
    net = MultiLayerNet(
        6,
        [5, 4],
        3,
        activation="tanh",
        weight_decay_lambda=0.1,
        seed=1,
        dtype=net_dtype,
        **backend.net_kwargs(),
    )
    path = net.save(tmp_path / "net.npz")
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary file left
    for target in backend_cases():
        loaded = bpcore.load(path, **target.net_kwargs())
        assert type(loaded) is MultiLayerNet
        assert loaded.backend == target.name
        assert loaded.dtype == getattr(loaded.xp, net_dtype)
        assert loaded.weight_decay_lambda == 0.1
        assert type(loaded.layers["Activation_function1"]).__name__ == "Tanh"
        for key, value in net.params.items():
            assert to_numpy(loaded.params[key]).tobytes() == to_numpy(value).tobytes()
            assert loaded.layers[f"Affine{key[1]}"].__dict__[key[0]] is loaded.params[key]


def test_checkpoint_holds_no_pickle(tmp_path):
    path = TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "net.npz")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["__bpcore__"].tobytes())
        assert all(data[k].dtype != object for k in data.files)
    assert meta["class"] == "TwoLayerNet"
    assert meta["config"] == {"input_size": 4, "hidden_size": 3, "output_size": 2}
    assert meta["dtype"] == "float32"
    assert meta["bpcore_version"] == bpcore.__version__


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    path = TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "net.npz")
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a crash half-way through writing

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        TwoLayerNet(4, 3, 2, seed=1).save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        bpcore.load(tmp_path / "nope.npz")


def test_garbage_truncated_and_foreign_files(tmp_path):
    good = TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "good.npz").read_bytes()
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good[: len(good) // 2])
    plain = tmp_path / "plain.npz"
    np.savez(plain, W1=np.ones((4, 3)))
    for path, pattern in [
        (garbage, "not a bpcore checkpoint"),
        (truncated, "not a bpcore checkpoint"),
        (plain, "no __bpcore__ metadata"),
    ]:
        with pytest.raises(ValueError, match=pattern) as info:
            bpcore.load(path)
        assert str(path) in str(info.value)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "objects.npz"
    meta = np.frombuffer(json.dumps({"format": "bpcore-checkpoint"}).encode(), dtype=np.uint8)
    np.savez(path, W1=np.array([{"evil": 1}], dtype=object), __bpcore__=meta)
    with pytest.raises(ValueError, match=r"not a bpcore checkpoint.*object arrays.*unpickl"):
        bpcore.load(path)


def test_mismatched_parameters(tmp_path):
    path = TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "net.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["W1"] = np.ones((5, 3), dtype="float32")
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"parameter W1 has shape \(5, 3\)"):
        bpcore.load(path)


DATA = Path(__file__).resolve().parent / "data"


def test_a_checkpoint_written_by_bpcore_0_1_0_still_loads(backend):
    # Written by bpcore 0.1.0 (before networks were built from saved arrays): a MultiLayerNet
    # (64, [16, 8], 10, tanh, weight decay 0.01) after one epoch of Adam on 256 digits, with the
    # trainer's state; the expected scores are what 0.1.0 itself computed.
    from bpcore.datasets import load_digits

    expected = np.load(DATA / "multilayer-0.1.0-expected.npz")
    _, (xt, _) = load_digits()
    net = bpcore.load(DATA / "multilayer-0.1.0-adam.npz", **backend.net_kwargs())
    assert type(net) is MultiLayerNet and net.weight_decay_lambda == 0.01
    scores = net.predict(backend.asarray(xt[:20], "float32"))
    np.testing.assert_allclose(to_numpy(scores), expected["scores"], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_written_by_bpcore_0_1_0_resumes_its_run():
    # The trainer's state of the same file, continued for a second epoch: the losses 0.1.0
    # computed when it resumed it (on NumPy; resuming is tested on every backend in
    # test_training, loading this file just above).
    from bpcore.datasets import load_digits

    expected = np.load(DATA / "multilayer-0.1.0-expected.npz")
    (x, t), (xt, tt) = load_digits()
    fresh = MultiLayerNet(64, [16, 8], 10, activation="tanh", weight_decay_lambda=0.01, seed=99)
    trainer = bpcore.Trainer(
        fresh,
        x[:256],
        t[:256],
        xt[:100],
        tt[:100],
        epochs=2,
        mini_batch_size=64,
        optimizer="Adam",
        verbose=False,
        seed=5,
        resume=DATA / "multilayer-0.1.0-adam.npz",
    )
    assert trainer.epochs_done == 1 and trainer.seed == 1  # the checkpoint's, not the arguments'
    trainer.train()
    np.testing.assert_allclose(
        trainer.train_loss_list, expected["resumed_loss"], rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    "content",
    [b"this is not a zip file", bytes(range(256)), b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"],
    ids=["text", "bytes", "npy"],
)
def test_a_file_that_is_no_checkpoint_gets_bpcores_word_not_numpys(tmp_path, content):
    # NumPy's own message advises allow_pickle= or pickle.load(): the opposite of bpcore's policy.
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"garbage.npz is not a bpcore checkpoint") as info:
        bpcore.load(path)
    assert "pickle" not in str(info.value)
    with pytest.raises(ValueError, match="is not a bpcore checkpoint") as resumed:
        bpcore.Trainer(TwoLayerNet(64, 4, 10), np.zeros((2, 64)), np.zeros(2, int),
                       np.zeros((2, 64)), np.zeros(2, int), resume=path, verbose=0)  # fmt: skip
    assert "allow_pickle" not in str(resumed.value)


def test_saving_into_a_folder_that_does_not_exist_is_refused(tmp_path):
    # A missing folder is more often a typo than a wish: nothing is created.
    net = TwoLayerNet(4, 3, 2, seed=0)
    target = tmp_path / "no-such-folder" / "net.npz"
    with pytest.raises(FileNotFoundError, match=r"no folder .*no-such-folder to write net\.npz in"):
        net.save(target)
    with pytest.raises(FileNotFoundError):
        net.save_params(target)
    assert not target.parent.exists()
