"""``bpcore compare``: every backend's layers against float64 NumPy, in lock step.

It passes on the backends as they are, and it finds a backward pass made wrong on one backend
only (injected here), naming that backend, that layer and the backward pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import bpcore.layers
import bpcore.optimizers
from bpcore.backends import namespace
from bpcore.cli import main
from bpcore.compare import compare_backends, tolerance

SCHEMA = json.loads((Path(__file__).parents[1] / "docs/schemas/compare.schema.json").read_text())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_every_backend_agrees_with_the_reference(backend, model, dtype):
    if not backend.resolve().has_dtype(dtype):
        pytest.skip(f"{backend.name} on {backend.device} has no {dtype}")
    report = compare_backends([(backend.name, backend.device)], model=model, steps=2, dtype=dtype)
    assert report.passed, report.format()
    document = report.to_json()
    jsonschema.validate(document, SCHEMA)
    assert document["first_divergence"] is None
    passes = {d["pass"] for d in document["departures"]}
    assert {"forward", "backward"} <= passes
    layers = {d["layer"] for d in document["departures"]}
    assert "Affine1" in layers or "Conv1" in layers


def _wrong_backward(monkeypatch, library):
    """Make ``Relu.backward`` 0.1% wrong on arrays of ``library`` only."""
    right = bpcore.layers.Relu.backward

    def backward(self, dout):
        dx = right(self, dout)
        return dx * 1.001 if namespace(dx).__name__.endswith(library) else dx

    monkeypatch.setattr(bpcore.layers.Relu, "backward", backward)


def test_a_wrong_backward_pass_is_found_and_named(monkeypatch):
    _wrong_backward(monkeypatch, "torch")
    report = compare_backends(["numpy", "torch", "array_api_strict"], model="mlp", steps=1)
    first = report.first_divergence
    assert first is not None and not report.passed
    assert (first.backend, first.layer, first.pass_) == (
        "torch",
        "Activation_function1",
        "backward",
    )
    assert first.ratio > 1 and first.departure == pytest.approx(1e-3, rel=0.05)
    document = report.to_json()
    jsonschema.validate(document, SCHEMA)
    assert document["first_divergence"]["pass"] == "backward"
    # The other backends stay within: only the injected one is named.
    assert {d.backend for d in report.departures if not d.within} == {"torch"}


def test_a_wrong_forward_pass_is_named_before_the_backward_passes(monkeypatch):
    # "First" follows the computation: the forward pass of step 1 comes before any backward.
    _wrong_backward(monkeypatch, "torch")
    right = bpcore.layers.Affine.forward

    def forward(self, x):
        out = right(self, x)
        return out * 1.001 if namespace(out).__name__.endswith("torch") else out

    monkeypatch.setattr(bpcore.layers.Affine, "forward", forward)
    first = compare_backends(["numpy", "torch"], model="mlp", steps=1).first_divergence
    assert (first.backend, first.layer, first.pass_) == ("torch", "Affine1", "forward")


def test_each_layer_is_judged_alone_in_a_deep_network(monkeypatch):
    # Every layer is given the reference's inputs, so a small error deep in a conv net stands
    # as far above its tolerance as in the MLP: rounding does not pile up from layer to layer.
    _wrong_backward(monkeypatch, "torch")
    report = compare_backends(["numpy", "torch"], model="convnet", steps=1)
    first = report.first_divergence
    assert (first.backend, first.pass_, first.quantity) == ("torch", "backward", "dx")
    assert first.layer.startswith("Relu") and first.ratio > 100
    worst_correct = report.worst()["numpy:cpu"]
    assert worst_correct.within and worst_correct.ratio < 0.5


def test_the_compiled_step_is_compared_with_the_eager_one(monkeypatch):
    pytest.importorskip("jax")  # the backend whose step compiles
    report = compare_backends(["jax"], model="mlp", steps=2)
    compiled = [d for d in report.departures if d.pass_ == "compiled step"]
    assert {d.quantity for d in compiled} == {"W1", "b1", "W2", "b2"}
    assert report.passed and all(d.within for d in compiled)
    # A compiled step that updates 1% too far is caught, and named as the compiled step.
    import bpcore.compare as compare_module

    right = compare_module.compile_step

    def off_by_one_percent(net, optimizer, **kwargs):
        return right(net, bpcore.optimizers.SGD(lr=optimizer.lr * 1.01), **kwargs)

    monkeypatch.setattr(compare_module, "compile_step", off_by_one_percent)
    first = compare_backends(["jax"], model="mlp", steps=2).first_divergence
    assert first is not None and (first.backend, first.pass_) == ("jax", "compiled step")


def test_pooling_ties_made_by_rounding_are_not_divergences():
    # Seed 39: two inputs of a max-pooling window differ in float64 and round to one float32.
    # The reference pools the rounded values too, so the gradient goes to the same place.
    report = compare_backends(["numpy"], model="convnet", steps=2, seed=39)
    assert report.passed, report.format()


def test_the_chained_network_is_compared_too(monkeypatch):
    # A fault in the network's own loop over its layers, which no single layer shows.
    from bpcore.networks import MultiLayerNet

    right = MultiLayerNet.predict

    def predict(self, x, train_flg=False):
        scores = right(self, x, train_flg)
        return scores * 1.001 if namespace(scores).__name__.endswith("torch") else scores

    monkeypatch.setattr(MultiLayerNet, "predict", predict)
    report = compare_backends(["numpy", "torch"], model="mlp", steps=1)
    first = report.first_divergence
    assert (first.backend, first.layer, first.pass_) == ("torch", "network", "forward")
    layers = [d for d in report.departures if d.layer != "network"]
    assert all(d.within for d in layers)


def test_the_command_exits_1_and_names_the_divergence(monkeypatch, capsys):
    _wrong_backward(monkeypatch, "numpy")  # NumPy's own layers; the reference is float64 NumPy
    # ... so the reference is wrong in the same way: array_api_strict then departs.
    assert main(["compare", "--backends", "array_api_strict", "--steps", "1", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, SCHEMA)
    assert document["first_divergence"]["backend"] == "array_api_strict"
    assert document["first_divergence"]["pass"] == "backward"


def test_the_command_passes_and_refuses_bad_options(capsys):
    assert main(["compare", "--backends", "numpy", "--steps", "1"]) == 0
    assert "every result within its tolerance" in capsys.readouterr().out
    assert main(["compare", "--backends", "nosuch"]) == 2
    assert main(["compare", "--steps", "0"]) == 2


def test_tolerances_grow_with_the_dtype_the_sum_and_the_depth():
    assert tolerance("float32", 784, 0) > tolerance("float64", 784, 0) * 1e8
    assert tolerance("float32", 784, 0) == pytest.approx(tolerance("float32", 49, 0) * 4)
    assert tolerance("float32", 10, 3) == pytest.approx(tolerance("float32", 10, 0) * 4)
    with pytest.raises(ValueError, match="unknown model"):
        compare_backends(["numpy"], model="resnet")


def test_the_layers_reference_code_can_be_compared_too(capsys):
    # --reference-kernels runs every layer on its Array API code, not on a library's own
    # kernels (PyTorch's convolution); the document says which ran.
    argv = ["compare", "--model", "convnet", "--backends", "numpy", "--steps", "1", "--json"]
    assert main([*argv, "--reference-kernels"]) == 0
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, SCHEMA)
    assert document["reference_kernels"] is True
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reference_kernels"] is False
