"""The ``bpcore`` command."""

from __future__ import annotations

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


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "bpcore", "gradcheck", "--backend", "nope"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "bpcore gradcheck: error: unknown backend 'nope'; expected one "
        "of 'numpy', 'cupy', 'torch', 'array_api_strict' or a "
        "namespace module"
    )
