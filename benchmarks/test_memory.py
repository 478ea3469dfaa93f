"""Memory: no growth over 10,000 training steps, and a step's peak next to its floor.

NumPy reports its allocations to ``tracemalloc``, so these run on the NumPy backend (the other
CPU backends allocate outside it). The floor of a step is what it cannot do without: the
activations kept for backward plus the gradients, as many bytes as those arrays hold.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from bpcore import MultiLayerNet
from bpcore.optimizers import SGD

SIZE = ([784, 50, 10], 100)  # the book's network and mini-batch


def _net_and_batch(dtype="float32"):
    sizes, batch = SIZE
    rng = np.random.default_rng(0)
    net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], seed=0, dtype=dtype, backend="numpy")
    x = rng.random((batch, sizes[0]), dtype=np.float32).astype(dtype)
    t = rng.integers(0, sizes[-1], batch)
    return net, x, t


def test_no_memory_growth_over_10000_steps():
    net, x, t = _net_and_batch()
    optimizer = SGD(lr=0.01)
    for _ in range(100):  # warm-up: layer caches and allocator pools reach their size
        optimizer.update(net.params, net.unchecked_gradient(x, t))
    tracemalloc.start()
    try:
        for _ in range(1_000):
            optimizer.update(net.params, net.unchecked_gradient(x, t))
        after_1000, _ = tracemalloc.get_traced_memory()
        for _ in range(9_000):
            optimizer.update(net.params, net.unchecked_gradient(x, t))
        after_10000, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_10000 - after_1000 < 64 * 1024, (after_1000, after_10000)


def _floor_bytes(net, x):
    """Activations made and kept for backward (each layer's output and the softmax; the input
    is the caller's) plus one gradient per parameter."""
    sizes, batch = SIZE
    itemsize = np.dtype(net.dtype_name).itemsize
    activations = batch * (sum(sizes[1:]) + sizes[-1]) * itemsize
    gradients = sum(int(np.prod(p.shape)) for p in net.params.values()) * itemsize
    return activations + gradients


def _step_peak(net, step):
    """The traced peak of one call of ``step`` and the memory in use before it.

    A first step warms up; then what forward kept in the layers (arrays other than parameters)
    is dropped, so that the measured step allocates all it keeps.
    """
    step()
    net.last_loss = None
    for layer in [*net.layers.values(), net.last_layer]:
        for attribute in list(vars(layer)):
            if attribute not in getattr(layer, "param_names", ()) and isinstance(
                getattr(layer, attribute), np.ndarray
            ):
                setattr(layer, attribute, None)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, base


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_peak_memory_next_to_its_floor(benchmark, dtype):
    net, x, t = _net_and_batch(dtype)
    x = x.astype(dtype)
    optimizer = SGD(lr=0.01)
    peak, base = _step_peak(net, lambda: optimizer.update(net.params, net.unchecked_gradient(x, t)))
    floor = _floor_bytes(net, x)
    ratio = (peak - base) / floor
    benchmark.group = f"memory step 784-50-10 b100 {dtype}"
    benchmark.extra_info.update(
        {
            "peak_bytes": peak - base,
            "floor_bytes": floor,
            "ratio": round(ratio, 2),
            "size": "784-50-10 b100",
            "dtype": dtype,
            "row": "bpcore[numpy] memory",
        }
    )
    benchmark.pedantic(lambda: None, rounds=1)  # the figures travel in extra_info
    assert 1.0 <= ratio < 4.0, (peak - base, floor)


def _book_step(net, x, t, optimizer):
    """One step as the book's classes take it: every layer's backward, the first layer's
    input gradient included, then the update from the layers' gradients."""

    def step():
        x_, t_ = net.check_batch(x, t)
        h = x_
        for layer in net.layers.values():
            h = layer.forward(h)
        net.last_layer.forward(h, t_)
        dout = net.last_layer.backward(1)
        for layer in reversed(list(net.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for key in net.params:
            layer, attribute = net.params.layer_of(key)
            grads[key] = getattr(layer, "d" + attribute)
        optimizer.update(net.params, grads)

    return step


@pytest.mark.parametrize("path", ["gradient", "book classes"])
def test_conv_step_peak_memory_next_to_its_floor(benchmark, path):
    """SimpleConvNet (the book's defaults) at batch 100 in float32: through ``net.gradient``
    (which skips the first layer's input gradient) and as the book's classes step (which
    computes it). At most 1.5 times the floor.

    Its floor: the convolution's im2col matrix (the largest array of the step) plus every
    activation kept for backward (each layer's output and the softmax) plus one gradient per
    parameter.
    """
    from bpcore import SimpleConvNet

    rng = np.random.default_rng(0)
    net = SimpleConvNet(seed=0)
    x = rng.random((100, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, 100)
    optimizer = SGD(lr=0.01)
    if path == "gradient":
        step = lambda: optimizer.update(net.params, net.gradient(x, t))  # noqa: E731
    else:
        step = _book_step(net, x, t, optimizer)
    peak, base = _step_peak(net, step)
    conv = net.layers["Conv1"]
    im2col_bytes = conv.col.nbytes
    outputs = 0
    h = x
    for layer in net.layers.values():
        h = layer.forward(h)
        outputs += h.nbytes
    softmax = net.last_layer.y.nbytes if net.last_layer.y is not None else 100 * 10 * 4
    gradients = sum(p.nbytes for p in net.params.values())
    floor = im2col_bytes + outputs + softmax + gradients
    ratio = (peak - base) / floor
    benchmark.group = "memory step SimpleConvNet b100 float32"
    benchmark.extra_info.update(
        {
            "peak_bytes": peak - base,
            "floor_bytes": floor,
            "im2col_bytes": im2col_bytes,
            "ratio": round(ratio, 2),
            "size": "SimpleConvNet b100",
            "dtype": "float32",
            "path": path,
            "row": "bpcore[numpy] memory",
        }
    )
    benchmark.pedantic(lambda: None, rounds=1)  # the figures travel in extra_info
    assert 1.0 <= ratio <= 1.5, (peak - base, floor)


def _book_first_layer(dtype):
    """The book's SimpleConvNet first layer (30 filters 5x5 on one channel) and a batch of 100,
    as bpcore's layer and as the book's own code (`bpcore.bench.book_reference`), same values."""
    from bpcore.bench import book_reference
    from bpcore.layers import Convolution

    rng = np.random.default_rng(0)
    W = (0.01 * rng.standard_normal((30, 1, 5, 5))).astype(dtype)
    b = np.zeros(30, dtype)
    x = rng.random((100, 1, 28, 28)).astype(dtype)
    dout = rng.standard_normal((100, 30, 24, 24)).astype(dtype)
    layers = {"bpcore": Convolution(W, b), "book": book_reference.Convolution(W, b)}
    for layer in layers.values():
        layer.forward(x)
    return layers, dout


def _peak(call):
    call()  # warm-up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["bpcore", "book"])
def test_first_conv_layer_backward_beside_the_books(benchmark, dtype, impl):
    """``Convolution.backward`` with the input gradient (as the book's classes ask for it, the
    first layer's included), bpcore's layer and the book's, side by side in one group: time,
    and the peak memory in ``extra_info``."""
    layers, dout = _book_first_layer(dtype)
    layer = layers[impl]
    benchmark.group = f"Convolution.backward, the book's first layer, {dtype}"
    benchmark.extra_info["peak_bytes"] = _peak(lambda: layer.backward(dout))
    dx = benchmark(layer.backward, dout)
    assert dx.shape == (100, 1, 28, 28)
    np.testing.assert_allclose(dx, layers["book"].backward(dout), rtol=1e-4, atol=1e-6)
