"""The ``bpcore`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from bpcore.cli import main


def test_gradcheck_on_each_backend(backend, capsys):
    status = main(
        ["gradcheck", "--backend", backend.name, "--device", backend.device, "--hidden", "4"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"backend='{backend.name}'" in out
    for key in ("W1", "b1", "W2", "b2"):
        assert f"  {key}: max relative error" in out
    assert "passed (tolerance 1e-05)" in out


def test_directional_gradcheck(capsys):
    assert main(["gradcheck", "--directional", "--dtype", "float64"]) == 0
    assert "directional check in float64" in capsys.readouterr().out


def test_gradcheck_reports_a_failure(monkeypatch, capsys):
    import bpcore.layers

    monkeypatch.setattr(bpcore.layers.Relu, "backward", lambda self, dout: dout)
    assert main(["gradcheck", "--hidden", "3"]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gradcheck", "--backend", "mxnet"], "unknown backend 'mxnet'"),
        (["gradcheck", "--dtype", "float16"], "unsupported dtype 'float16'"),
        (["gradcheck", "--hidden", "0"], "hidden_size must be a positive integer, got 0"),
    ],
)
def test_bad_options_give_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("bpcore gradcheck: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bpcore ")
    assert "  numpy " in out


def _bpcore(*args):
    """Run ``python -m bpcore ARGS`` as a user would."""
    return subprocess.run([sys.executable, "-m", "bpcore", *args], capture_output=True, text=True)


def test_module_entry_point():
    out = _bpcore("gradcheck", "--backend", "nope")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "bpcore gradcheck: error: unknown backend 'nope'; expected one "
        "of 'numpy', 'cupy', 'torch', 'array_api_strict', 'jax', 'dask' or "
        "a namespace module"
    )


def test_train_default_is_digits_offline_and_accurate(capsys):
    # The main job with no options: embedded digits, numpy, no network needed.
    assert main(["train", "--json", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    results = json.loads(out[-1])
    assert results["dataset"] == "digits"
    assert results["backend"] == "numpy"
    assert results["test_acc"] >= 0.95
    for key in ("train_acc", "train_loss", "epochs", "seconds"):
        assert key in results
    assert results["epochs"] == 20


@pytest.mark.integration  # training, checkpoints and resume are tested on every backend
@pytest.mark.slow  # in test_training; this is the command line's handling of them
def test_train_on_each_backend_with_options(backend, tmp_path, capsys):
    plot = tmp_path / "curves.png"
    argv = [
        "train",
        "--backend",
        backend.name,
        "--device",
        backend.device,
        "--hidden",
        "32",
        "16",
        "--activation",
        "tanh",
        "--optimizer",
        "momentum",
        "--lr",
        "0.05",
        "--batch-size",
        "64",
        "--epochs",
        "3",
        "--dtype",
        "float64",
        "--plot",
        str(plot),
        "--checkpoint",
        str(tmp_path / "ck.npz"),
        "--json",
        "--quiet",
    ]
    assert main(argv) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["backend"] == backend.name
    assert results["optimizer"] == "Momentum" and results["lr"] == 0.05
    assert results["test_acc"] > 0.8
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Resume for two more epochs from the checkpoint.
    argv[argv.index("3")] = "5"
    assert main([*argv, "--resume", str(tmp_path / "ck.npz")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["train", "--hidden", "0"], r"hidden_size_list\[0\] must be a positive integer"),
        (["train", "--lr", "-1"], "lr must be a positive finite number"),
        (["train", "--activation", "gelu"], "unknown activation 'gelu'"),
        (["train", "--resume", "/nonexistent/ck.npz"], "no checkpoint at /nonexistent/ck.npz"),
        (
            ["train", "--dataset", "mnist", "--data-dir", "MNIST_DIR"],
            "mnist could not be downloaded from http://127.0.0.1:9/",
        ),
    ],
)
def test_train_errors_are_one_line(argv, message, capsys, monkeypatch, tmp_path):
    from bpcore import datasets

    monkeypatch.setenv("BPCORE_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BPCORE_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [])
    argv = [str(tmp_path / "mnist") if a == "MNIST_DIR" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err


def test_train_with_a_corrupt_data_file_names_it(tmp_path, capsys):
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{stem}.gz").write_bytes(b"\x1f\x8bnot really gzip")
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated gzip" in err and str(tmp_path) in err


def test_bad_option_is_one_line():
    out = _bpcore("train", "--dataset", "cifar")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "invalid choice: 'cifar'" in out.stderr


def test_plot_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["train", "--plot", "x.png", "--quiet"]) == 2
    assert 'pip install "bpcore[plot]"' in capsys.readouterr().err


def test_train_with_a_broken_checkpoint_is_one_line(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "ck.npz"
    np.savez(path, __bpcore__=np.frombuffer(b"[1, 2]", dtype=np.uint8))
    assert main(["train", "--resume", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a bpcore checkpoint" in err


@pytest.mark.integration  # the conv nets are gradient-checked on every backend in test_convnets
@pytest.mark.parametrize("model", ["convnet", "deepconvnet"])
def test_gradcheck_of_the_conv_nets(backend, model, capsys):
    argv = ["gradcheck", "--model", model, "--backend", backend.name, "--device", backend.device]
    if model == "deepconvnet":
        argv.append("--directional")
    status = main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    assert ("SimpleConvNet(" if model == "convnet" else "DeepConvNet(") in out
    assert "  W1: max relative error" in out and "passed (tolerance 1e-05)" in out


@pytest.mark.integration  # the networks' training is tested on every backend in test_training
@pytest.mark.parametrize(
    "options",
    [["--model", "convnet"], ["--model", "deepconvnet"], ["--dropout", "0.2", "--batchnorm"]],
)
def test_train_the_new_models(backend, options, capsys):
    argv = ["train", "--backend", backend.name, "--device", backend.device, *options]
    argv += ["--epochs", "2", "--json", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads(out.strip().splitlines()[-1])
    name = {"convnet": "SimpleConvNet(", "deepconvnet": "DeepConvNet("}.get(options[1], "")
    assert (name or "MultiLayerNetExtend(") in out
    assert "input_dim=[1, 8, 8]" in out or name == ""  # the digits, unflattened for conv nets
    assert results["test_acc"] > 0.3


def test_conv_models_refuse_mlp_options(capsys):
    assert main(["train", "--model", "convnet", "--batchnorm"]) == 2
    assert "apply to --model mlp only" in capsys.readouterr().err


@pytest.mark.slow
def test_train_keeps_compiled_programs_for_the_next_run(tmp_path):
    # JAX compiles the training step (about a second on a small CPU): bpcore train keeps the
    # programs in the user's cache, where the next run reads them instead of compiling again.
    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # the tests' own
    env["XDG_CACHE_HOME"] = str(tmp_path)
    run = [sys.executable, "-m", "bpcore", "train", "--backend", "jax", "--epochs", "1"]
    done = subprocess.run([*run, "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    cached = list((tmp_path / "bpcore" / "compiled").iterdir())
    assert cached, "no compiled program was kept"
    # A cache JAX is told to use wins over bpcore's.
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "theirs")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    done = subprocess.run([*run, "--quiet", "--seed", "1"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "theirs").iterdir())
    assert sorted((tmp_path / "bpcore" / "compiled").iterdir()) == sorted(cached)


def test_train_with_weight_decay(tmp_path, capsys):
    import bpcore

    path = tmp_path / "ck.npz"
    argv = ["train", "--epochs", "1", "--quiet", "--checkpoint", str(path)]
    assert main([*argv, "--weight-decay", "0.1"]) == 0
    assert bpcore.load(path).weight_decay_lambda == 0.1
    assert main(["train", "--epochs", "1", "--quiet", "--weight-decay", "-1"]) == 2
    assert "weight_decay_lambda" in capsys.readouterr().err
    assert main(["train", "--model", "convnet", "--weight-decay", "0.1", "--quiet"]) == 2


def test_train_writes_the_history(tmp_path):
    path = tmp_path / "history.json"
    assert main(["train", "--epochs", "2", "--quiet", "--history", str(path)]) == 0
    saved = json.loads(path.read_text())
    assert [row["epoch"] for row in saved["epochs"]] == [1, 2]
    assert set(saved["epochs"][0]) == {
        "epoch", "train_loss", "test_loss", "train_acc", "test_acc", "seconds",
    }  # fmt: skip
    assert main(["train", "--epochs", "1", "--quiet", "--history", str(tmp_path / "h.csv")]) == 0
    assert (tmp_path / "h.csv").read_text().startswith("epoch,train_loss,test_loss,")
