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
        (["gradcheck", "--backend", "mxnet"], "argument --backend: invalid choice: 'mxnet'"),
        (["gradcheck", "--dtype", "float8"], "argument --dtype: invalid choice: 'float8'"),
        (["gradcheck", "--hidden", "0"], "argument --hidden: expected a positive integer, got '0'"),
        (["gradcheck", "--device", "tpu:9"], "backend 'numpy' has only the 'cpu' device"),
    ],
)
def test_bad_options_give_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("bpcore gradcheck: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bpcore ")
    assert "  numpy " in out
    assert "threads (threadpoolctl):" in out


def test_info_json_is_the_environment_report(capsys, monkeypatch):
    import numpy as np

    import bpcore

    for name in [n for n in os.environ if n.startswith("BPCORE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BPCORE_BACKEND", "numpy")
    monkeypatch.setenv("BPCORE_DATA", "/srv/data")
    assert main(["info", "--json"]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)  # the whole of stdout is one document
    assert info["bpcore"] == bpcore.__version__
    assert info["backends"]["numpy"] == {"version": np.__version__, "devices": ["cpu"]}
    assert info["environment"] == {"BPCORE_BACKEND": "numpy", "BPCORE_DATA": "/srv/data"}
    assert info["packages"]["numpy"] == np.__version__
    # NumPy's own BLAS is loaded in every process that imports it: threadpoolctl must see it.
    assert any(
        pool["user_api"] == "blas" and pool["num_threads"] >= 1 for pool in info["threadpools"]
    )
    for name in bpcore.BACKENDS:
        assert (name in info["backends"]) != (name in info["not_installed"])


def test_info_shows_gpus_and_cuda_versions():
    # What `bpcore info` prints for a GPU machine, from a report as CuPy and PyTorch give it there.
    from bpcore.backends.base import cuda_version, gpu
    from bpcore.environment import environment_info, format_environment

    info = environment_info()
    info["backends"] = {
        "cupy": {
            "version": "14.0.1",
            "devices": ["cuda:0"],
            "gpus": [gpu("NVIDIA H200", 150_117_613_568)],
            "cuda_runtime": cuda_version(12080),
            "cuda_driver": cuda_version(13000),
        },
        "torch": {"version": "2.13.0", "devices": ["cpu"], "threads": 8, "cuda_runtime": None},
        "jax": {
            "version": "0.10.2",
            "devices": ["cuda:0"],
            "jaxlib": "0.10.2",
            "gpus": [gpu("NVIDIA H200", None, jax_memory_limit_gib=104.9)],
            "cuda_driver": cuda_version(0),  # the driver said 0: no driver, not "0.0"
        },
        "dask": {"error": "RuntimeError: jaxlib does not match"},
    }
    text = format_environment(info)
    assert "  cupy 14.0.1: cuda:0; cuda runtime 12.8; cuda driver 13.0" in text
    assert "    GPU: NVIDIA H200, 139.8 GiB" in text
    assert "  torch 2.13.0: cpu; threads 8\n" in text  # a CPU build has no CUDA runtime to show
    assert (
        "  jax 0.10.2: cuda:0; jaxlib 0.10.2\n    GPU: NVIDIA H200, JAX may allocate 104.9 GiB"
        in text
    )
    assert "  dask: RuntimeError: jaxlib does not match" in text


def test_info_reports_a_backend_that_fails_to_import(monkeypatch):
    # A broken install is what a bug report is for: the report says what broke, and goes on.
    from bpcore.backends import BACKEND_CLASSES
    from bpcore.environment import environment_info

    def broken(cls):
        raise RuntimeError("this jaxlib does not match this jax")

    monkeypatch.setattr(BACKEND_CLASSES["numpy"], "import_namespace", classmethod(broken))
    info = environment_info()
    assert info["backends"]["numpy"] == {
        "error": "RuntimeError: this jaxlib does not match this jax"
    }
    assert "numpy" not in info["not_installed"]


def _bpcore(*args):
    """Run ``python -m bpcore ARGS`` as a user would."""
    return subprocess.run([sys.executable, "-m", "bpcore", *args], capture_output=True, text=True)


def test_module_entry_point():
    out = _bpcore("gradcheck", "--backend", "nope")
    assert out.returncode == 2
    assert out.stdout == ""
    # argparse quotes the choices on Python 3.11 and not on later ones (CPython gh-117766).
    assert re.fullmatch(
        r"bpcore gradcheck: error: argument --backend: invalid choice: 'nope' \(choose from "
        r"'?numpy'?, '?cupy'?, '?torch'?, '?array_api_strict'?, '?jax'?, '?dask'?\) "
        r"\(see bpcore gradcheck --help\)",
        out.stderr.strip(),
    ), out.stderr


def test_help_lists_choices_and_exit_statuses(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "{sgd,momentum,nesterov,adagrad,rmsprop,adam}" in text
    assert "{relu,sigmoid,tanh}" in text
    assert "{numpy,cupy,torch,array_api_strict,jax,dask}" in text
    assert "exit status: 0 success; 1 failure" in text and "2 usage error" in text


def test_json_stdout_holds_one_document_and_nothing_else():
    # A user's pipe: `bpcore train --json | jq .`; the human lines go to stderr.
    done = _bpcore("train", "--epochs", "2", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["epochs"] == 2 and 0 <= results["test_acc"] <= 1
    assert "MultiLayerNet(" in done.stderr and "test accuracy" in done.stderr
    assert "epoch 2/2" in done.stderr  # the Trainer's epoch lines (stderr is not a terminal)


def test_gradcheck_json(capsys, monkeypatch):
    assert main(["gradcheck", "--hidden", "3", "--json"]) == 0
    captured = capsys.readouterr()
    check = json.loads(captured.out)
    assert check["passed"] is True and check["method"] == "elementwise"
    assert set(check["errors"]) == {"W1", "b1", "W2", "b2"}
    assert all(0 <= e < check["tolerance"] for e in check["errors"].values())
    assert "passed (tolerance 1e-05)" in captured.err
    # A failing check is exit status 1, and still one document.
    import bpcore.layers

    monkeypatch.setattr(bpcore.layers.Relu, "backward", lambda self, dout: dout)
    assert main(["gradcheck", "--hidden", "3", "--json"]) == 1
    check = json.loads(capsys.readouterr().out)
    assert check["passed"] is False
    assert max(e for e in check["errors"].values() if e is not None) > check["tolerance"]


def test_a_diverging_run_is_a_failure(capsys):
    assert main(["train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TrainingDivergedError: the loss became nan" in err


def test_train_default_is_digits_offline_and_accurate(capsys):
    # The main job with no options: embedded digits, numpy, no network needed.
    assert main(["train", "--json", "--quiet"]) == 0
    results = json.loads(capsys.readouterr().out)
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
    results = json.loads(capsys.readouterr().out)
    assert results["backend"] == backend.name
    assert results["optimizer"] == "Momentum" and results["lr"] == 0.05
    assert results["test_acc"] > 0.8
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Resume for two more epochs from the checkpoint.
    argv[argv.index("3")] = "5"
    assert main([*argv, "--resume", str(tmp_path / "ck.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 5


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["train", "--optimizer", "lbfgs"], 2, "argument --optimizer: invalid choice: 'lbfgs'"),
        (["train", "--hidden", "0"], 2, "argument --hidden: expected a positive integer, got '0'"),
        (["train", "--lr", "-1"], 2, r"argument --lr: expected a number in \(0, inf\), got '-1'"),
        (["train", "--lr", "nan"], 2, "argument --lr: expected a number"),
        (["train", "--epochs", "1.5"], 2, "argument --epochs: expected a positive integer"),
        (["train", "--dropout", "1"], 2, r"argument --dropout: expected a number in \[0, 1\)"),
        (["train", "--activation", "gelu"], 2, "argument --activation: invalid choice: 'gelu'"),
        (["train", "--device", "cuda:3"], 2, "backend 'numpy' has only the 'cpu' device"),
        (["train", "--precision", "fp16"], 2, "argument --precision: invalid choice: 'fp16'"),
        (
            ["train", "--precision", "mixed_bfloat16"],
            2,
            "dtype 'bfloat16' is not supported by backend 'numpy'",
        ),
        (
            ["train", "--precision", "mixed_float16", "--dtype", "float64"],
            2,
            "precision 'mixed_float16' keeps float32 master parameters",
        ),
        (["train", "--resume", "/nonexistent/ck.npz"], 1, "no checkpoint at /nonexistent/ck.npz"),
        (
            ["train", "--dataset", "mnist", "--data-dir", "MNIST_DIR"],
            1,
            "mnist could not be downloaded from http://127.0.0.1:9/",
        ),
    ],
)
def test_train_errors_are_one_line(argv, status, message, capsys, monkeypatch, tmp_path):
    from bpcore import datasets

    monkeypatch.setenv("BPCORE_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setattr(datasets, "cache_home", lambda: tmp_path / "cache" / "bpcore")
    monkeypatch.delenv("BPCORE_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [])
    argv = [str(tmp_path / "mnist") if a == "MNIST_DIR" else a for a in argv]
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err
    assert ("(see bpcore train --help)" in err) == (status == 2)


def test_train_in_mixed_precision(capsys):
    """``--precision``: float32 masters, passes in float16 with loss scaling, the accuracy of
    float32 training on the digits (both runs here, side by side)."""
    argv = ["train", "--epochs", "5", "--json", "--quiet"]
    assert main(argv) == 0
    full = json.loads(capsys.readouterr().out)
    assert main([*argv, "--precision", "mixed_float16"]) == 0
    mixed = json.loads(capsys.readouterr().out)
    assert mixed["precision"] == "mixed_float16" and mixed["dtype"] == "float32"
    assert "precision='mixed_float16'" in mixed["network"]
    assert abs(mixed["test_acc"] - full["test_acc"]) <= 0.02, (mixed, full)


def test_train_with_a_corrupt_data_file_names_it(tmp_path, capsys):
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{stem}.gz").write_bytes(b"\x1f\x8bnot really gzip")
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]) == 1
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
    assert main(["train", "--resume", str(path), "--quiet"]) == 1
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
    results = json.loads(capsys.readouterr().out)
    out = results["network"]
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
    assert "argument --weight-decay: expected a number in [0, inf)" in capsys.readouterr().err
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


def test_the_plot_title_fits_the_figure():
    # A 10-inch figure at 8 points holds about 130 characters a line; the repr of a network is
    # often longer (a DeepConvNet's is some 500).
    from bpcore import DeepConvNet
    from bpcore.cli.train import plot_title

    net = DeepConvNet(seed=0)
    lines = plot_title(net).splitlines()
    assert len(repr(net)) > 400 and len(lines) > 1
    assert max(len(line) for line in lines) <= 110
    assert " ".join(lines) == repr(net)


def test_gradcheck_says_what_it_runs_before_it_runs(capsys, monkeypatch):
    # The check takes seconds: a line says what runs before it starts, not only after.
    import bpcore.cli.gradcheck as command

    seen = []

    def watched(net, x, t, **kwargs):
        seen.append(capsys.readouterr().out)  # what the user has seen when the check starts
        return bpcore.gradient_check(net, x, t, **kwargs)

    import bpcore

    monkeypatch.setattr(command, "gradient_check", watched)
    assert main(["gradcheck", "--hidden", "3"]) == 0
    assert "checking 4 parameters (2,395 elements) against central differences: 4,790" in seen[0]
