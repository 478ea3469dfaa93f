"""Per-layer forward+backward and a training step at the book's size, on every backend.

Run with ``python -m pytest benchmarks --benchmark-enable``; in a plain test run (benchmarks
disabled) each callable runs once and its result is still checked. The timed callables wait for
the device (``synchronize``), so GPU figures are not just kernel launch times.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import TwoLayerNet, to_numpy
from bpcore.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
from bpcore.testing import synchronize

BATCH, N_IN, N_HIDDEN, N_OUT = 100, 784, 50, 10  # the book's TwoLayerNet and mini-batch


@pytest.fixture
def data(backend, dtype):
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((BATCH, N_IN)), dtype)  # not zeros: zeros are fast paths
    h = backend.asarray(rng.standard_normal((BATCH, N_HIDDEN)), dtype)
    scores = backend.asarray(rng.standard_normal((BATCH, N_OUT)), dtype)
    t = backend.asarray(rng.integers(0, N_OUT, BATCH))
    W = backend.asarray(0.01 * rng.standard_normal((N_IN, N_HIDDEN)), dtype)
    b = backend.asarray(np.zeros(N_HIDDEN), dtype)
    return {"x": x, "h": h, "scores": scores, "t": t, "W": W, "b": b}


def _run(benchmark, step):
    def timed():
        out = step()
        synchronize(out)
        return out

    timed()  # warm-up outside the timed rounds (allocators, kernel compilation)
    return benchmark(timed)


@pytest.mark.parametrize("layer", ["Affine", "Relu", "Sigmoid"])
def test_layer_forward_backward(benchmark, backend, dtype, data, layer):
    benchmark.group = f"layer {layer} {dtype} b{BATCH}"
    if layer == "Affine":
        obj, x, dout = Affine(data["W"], data["b"]), data["x"], data["h"]
    else:
        obj, x, dout = (Relu() if layer == "Relu" else Sigmoid()), data["h"], data["h"]

    def step():
        out = obj.forward(x)
        return obj.backward(dout if layer == "Affine" else out)

    dx = _run(benchmark, step)
    assert dx.shape == x.shape
    assert np.all(np.isfinite(to_numpy(dx)))


def test_softmax_with_loss(benchmark, backend, dtype, data):
    benchmark.group = f"layer SoftmaxWithLoss {dtype} b{BATCH}"
    layer = SoftmaxWithLoss()

    def step():
        layer.forward(data["scores"], data["t"])
        return layer.backward()

    dx = _run(benchmark, step)
    np.testing.assert_allclose(to_numpy(dx).sum(axis=1), 0.0, atol=1e-5)


def test_training_step(benchmark, backend, dtype):
    benchmark.group = f"step TwoLayerNet {N_IN}-{N_HIDDEN}-{N_OUT} {dtype} b{BATCH}"
    net = TwoLayerNet(N_IN, N_HIDDEN, N_OUT, seed=0, dtype=dtype, **backend.net_kwargs())
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.random((BATCH, N_IN)), dtype)
    t = backend.asarray(rng.integers(0, N_OUT, BATCH))
    before = float(net.loss(x, t))

    def step():
        grads = net.unchecked_gradient(x, t)  # inputs validated once, as a training loop does
        for key in net.params:
            net.params[key] = net.params[key] - 0.1 * grads[key]
        return net.params["W1"]

    _run(benchmark, step)
    assert float(net.loss(x, t)) < before
