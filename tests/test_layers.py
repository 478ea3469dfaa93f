"""Each layer's forward and backward, on every backend, against central differences.

The reference gradient is a float64 central difference of ``sum(forward(...) * w)`` for a random
upstream gradient ``w``; the layer under test runs in the dtype of the ``dtype`` fixture, and is
compared with a tolerance for that dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import to_numpy
from bpcore.layers import Affine, Convolution, Relu, Sigmoid, SoftmaxWithLoss, Tanh
from bpcore.testing import RTOL, assert_close


def _reference_gradient(backend, f, x_host):
    """Float64 central difference of the scalar ``f`` at ``x_host``, as a NumPy array."""
    x = backend.asarray(x_host, "float64")
    return to_numpy(backend.resolve().central_difference(f, x, 1e-6))


def _weighted_sum(backend, out, w_host):
    xp = backend.xp
    return xp.sum(out * backend.asarray(w_host, "float64"))


def _atol(reference):
    return 1e-7 * max(1.0, float(np.max(np.abs(reference))))


def _away_from_zero(rng, shape):
    """Inputs at least 0.1 from 0, so no central difference straddles the ReLU kink."""
    x = rng.uniform(0.1, 2.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("layer_cls", [Relu, Sigmoid, Tanh], ids=lambda c: c.__name__)
def test_activation_backward_matches_numerical(backend, dtype, rng, layer_cls):
    x_host = _away_from_zero(rng, (4, 5))
    w_host = rng.standard_normal((4, 5))
    layer = layer_cls()
    out = layer.forward(backend.asarray(x_host, dtype))
    dx = layer.backward(backend.asarray(w_host, dtype))

    expected = _reference_gradient(
        backend, lambda x: _weighted_sum(backend, layer_cls().forward(x), w_host), x_host
    )
    xp = backend.xp
    assert_close(
        dx,
        expected,
        rtol=RTOL[dtype],
        atol=_atol(expected),
        xp=xp,
        dtype=getattr(xp, dtype),
        device=backend.resolve().device,
    )
    assert out.shape == (4, 5)


def test_relu_values_and_kink(backend):
    layer = Relu()
    x = backend.asarray([[-2.0, -0.0, 0.0, 3.0]], "float32")
    assert_close(layer.forward(x), [[0.0, 0.0, 0.0, 3.0]])
    # The derivative at exactly 0 is taken as 0, as in the book.
    assert_close(
        layer.backward(backend.asarray([[1.0, 1.0, 1.0, 1.0]], "float32")), [[0.0, 0.0, 0.0, 1.0]]
    )


def test_relu_propagates_nan(backend):
    out = Relu().forward(backend.asarray([[np.nan, -1.0]], "float64"))
    assert np.isnan(to_numpy(out)[0, 0])


def test_sigmoid_is_stable_for_large_inputs(backend, dtype):
    # The book's 1 / (1 + exp(-x)) overflows (a RuntimeWarning, an error under this suite's
    # filterwarnings) for x < -88 in float32 and x < -709 in float64.
    x_host = np.array([[-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0]])
    out = to_numpy(Sigmoid().forward(backend.asarray(x_host, dtype)))
    with np.errstate(over="ignore"):
        expected = 1.0 / (1.0 + np.exp(-x_host))
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=np.finfo(dtype).tiny)
    assert out[0, 2] > 0  # sigmoid(-20) is about 2e-9, not rounded to 0


@pytest.mark.parametrize("x_shape", [(4, 6), (4, 2, 3), (4, 1, 2, 3)], ids=str)
def test_affine_backward_matches_numerical(backend, dtype, rng, x_shape):
    x_host = rng.standard_normal(x_shape)
    W_host = rng.standard_normal((6, 3))
    b_host = rng.standard_normal(3)
    w_host = rng.standard_normal((4, 3))
    A = backend.asarray
    layer = Affine(A(W_host, dtype), A(b_host, dtype))
    out = layer.forward(A(x_host, dtype))
    dx = layer.backward(A(w_host, dtype))

    def f_x(x):
        return _weighted_sum(
            backend, Affine(A(W_host, "float64"), A(b_host, "float64")).forward(x), w_host
        )

    def f_W(W):
        return _weighted_sum(
            backend, Affine(W, A(b_host, "float64")).forward(A(x_host, "float64")), w_host
        )

    def f_b(b):
        return _weighted_sum(
            backend, Affine(A(W_host, "float64"), b).forward(A(x_host, "float64")), w_host
        )

    xp = backend.xp
    for got, f, at in [(dx, f_x, x_host), (layer.dW, f_W, W_host), (layer.db, f_b, b_host)]:
        expected = _reference_gradient(backend, f, at)
        assert_close(
            got, expected, rtol=RTOL[dtype], atol=_atol(expected), xp=xp, dtype=getattr(xp, dtype)
        )
    assert dx.shape == x_shape  # dx comes back in the input's shape
    assert out.shape == (4, 3)
    assert layer.original_x_shape == x_shape


@pytest.mark.parametrize("labels", ["integer", "one-hot"])
@pytest.mark.parametrize("dout", [1, 0.5])
def test_softmax_with_loss_backward_matches_numerical(backend, dtype, rng, labels, dout):
    x_host = 3 * rng.standard_normal((5, 4))
    t_int = np.array([0, 3, 1, 1, 2])
    t_host = t_int if labels == "integer" else np.eye(4)[t_int]
    t = backend.asarray(t_host)
    layer = SoftmaxWithLoss()
    loss = layer.forward(backend.asarray(x_host, dtype), t)
    dx = layer.backward(dout)

    t64 = backend.asarray(t_host if labels == "integer" else t_host.astype("float64"))
    expected = dout * _reference_gradient(
        backend, lambda x: SoftmaxWithLoss().forward(x, t64), x_host
    )
    xp = backend.xp
    assert_close(
        dx, expected, rtol=RTOL[dtype], atol=_atol(expected), xp=xp, dtype=getattr(xp, dtype)
    )
    # The loss is a 0-d array of the backend, equal to the mean cross-entropy.
    assert loss.ndim == 0
    log_p = x_host - np.log(np.sum(np.exp(x_host), axis=1, keepdims=True))
    assert_close(
        loss,
        -np.mean(log_p[np.arange(5), t_int]),
        rtol=RTOL[dtype],
        xp=xp,
        dtype=getattr(xp, dtype),
    )


def test_softmax_with_loss_soft_labels(backend, rng):
    x_host = rng.standard_normal((3, 4))
    t_host = rng.dirichlet(np.ones(4), size=3)
    layer = SoftmaxWithLoss()
    loss = layer.forward(backend.asarray(x_host), backend.asarray(t_host))
    log_p = x_host - np.log(np.sum(np.exp(x_host), axis=1, keepdims=True))
    assert_close(loss, -np.sum(t_host * log_p) / 3)
    y = np.exp(log_p)
    assert_close(layer.backward(), (y - t_host) / 3)


def test_softmax_with_loss_is_exact_for_huge_logits(backend, dtype):
    # exp(1000) overflows; log-sum-exp does not, and no 1e-7 fudge biases the loss.
    x = backend.asarray([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype)
    t = backend.asarray([0, 2])
    layer = SoftmaxWithLoss()
    loss = float(layer.forward(x, t))
    assert loss == pytest.approx(np.log(3) / 2, rel=RTOL[dtype])
    y = to_numpy(layer.y)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=RTOL[dtype])


def test_softmax_with_loss_rejects_mismatched_labels(backend):
    layer = SoftmaxWithLoss()
    x = backend.asarray(np.zeros((3, 10)), "float32")
    with pytest.raises(ValueError, match=r"labels as integers of shape \(3,\)"):
        layer.forward(x, backend.asarray([1, 2]))
    with pytest.raises(ValueError, match=r"one-hot rows of\s+shape \(3, 10\)"):
        layer.forward(x, backend.asarray(np.zeros((3, 9))))
    for scores in (np.zeros(3), np.zeros((3, 10, 1))):  # as forward, so holding_labels
        with pytest.raises(ValueError, match=r"expects scores of shape \(N, C\)"):
            layer.forward(backend.asarray(scores, "float32"), backend.asarray([1, 2, 0]))
        held = layer.holding_labels(backend.asarray(scores, "float32"), backend.asarray([1, 2, 0]))
        with pytest.raises(ValueError, match=r"expects scores of shape \(N, C\)"):
            held.__enter__()


@pytest.mark.parametrize(
    "t_host",
    [
        np.array([0, 3, 1]),
        np.array([-1, 0, 1]),
        np.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        np.array([[1.0, 0.0, 0.0], [2.0, -1.0, 0.0], [0.0, 1.0, 0.0]]),
        np.array([[1.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    ],
    ids=["label-past-the-classes", "negative-label", "row-sum-0.5", "negative-entry", "nan-row"],
)
def test_softmax_with_loss_turns_bad_labels_into_nan(backend, t_host):
    # Labels are not read back (that would wait for a GPU): the loss and the whole gradient
    # become NaN instead of a plausible number. The book's layer would count the bad row as 0.
    layer = SoftmaxWithLoss()
    x = backend.asarray(np.arange(9.0).reshape(3, 3) / 9, "float32")
    t = backend.asarray(t_host, "float32") if t_host.ndim == 2 else backend.asarray(t_host)
    assert np.isnan(float(layer.forward(x, t)))
    assert not bool(to_numpy(layer.labels_valid))
    assert np.all(np.isnan(to_numpy(layer.backward())))
    good = layer.forward(x, backend.asarray(np.array([0, 2, 1])))
    assert np.isfinite(float(good))
    assert bool(to_numpy(layer.labels_valid))
    assert np.all(np.isfinite(to_numpy(layer.backward())))


def test_softmax_with_loss_holds_only_the_labels_it_was_given(backend, rng):
    # Within holding_labels the rows built from t serve every pass given that very array; any
    # other labels, or scores of another shape or dtype, are built anew, so that each pass is
    # what a fresh layer computes. Invalid labels stay NaN while held.
    x = backend.asarray(rng.standard_normal((3, 4)), "float64")
    held, other, bad = (backend.asarray(np.array(v)) for v in ([0, 3, 1], [2, 2, 0], [0, 4, 1]))
    wider = backend.asarray(rng.standard_normal((3, 5)), "float64")
    layer = SoftmaxWithLoss()

    def same_as_fresh(scores, t):
        fresh = SoftmaxWithLoss()
        assert_close(layer.forward(scores, t), fresh.forward(scores, t))
        assert_close(layer.backward(), fresh.backward())

    with layer.holding_labels(x, held):
        layer.forward(x, held)
        rows = layer._target  # the integer labels as float rows: a new array when built
        layer.forward(x * 2, held)
        assert layer._target is rows  # reused, not built anew
        layer.forward(x, other)
        assert layer._target is not rows
        for scores, t in ((x, held), (x, other), (x, held), (wider, held), (x * 2, held)):
            same_as_fresh(scores, t)
        same_as_fresh(backend.resolve().xp.astype(x, backend.resolve().dtype("float32")), held)
    if backend.resolve().writes_in_place(held):  # after the context, labels written are read
        held[0] = 2
        same_as_fresh(x, held)
    with layer.holding_labels(x, bad):
        assert np.isnan(float(layer.forward(x, bad)))
        assert np.all(np.isnan(to_numpy(layer.backward())))
    with pytest.raises(ValueError, match="labels as integers"):
        layer.holding_labels(x, backend.asarray(np.array([0, 1]))).__enter__()


def test_affine_rejects_wrong_input_width(backend):
    A = backend.asarray
    layer = Affine(A(np.ones((6, 2)), "float32"), A(np.zeros(2), "float32"))
    with pytest.raises(ValueError, match="6 features per sample"):
        layer.forward(A(np.ones((3, 5)), "float32"))
    with pytest.raises(ValueError, match=r"W of shape \(in, out\)"):
        Affine(A(np.ones((6, 2)), "float32"), A(np.zeros(3), "float32"))


@pytest.mark.parametrize(
    "layer_cls", [Relu, Sigmoid, Tanh, Affine, SoftmaxWithLoss], ids=lambda c: c.__name__
)
def test_backward_before_forward_is_a_clear_error(backend, layer_cls):
    A = backend.asarray
    layer = (
        Affine(A(np.ones((2, 2)), "float32"), A(np.zeros(2), "float32"))
        if layer_cls is Affine
        else layer_cls()
    )
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(A(np.ones((2, 2)), "float32"))


@pytest.mark.parametrize(
    "layer_cls", [Relu, Sigmoid, Tanh, Affine, SoftmaxWithLoss], ids=lambda c: c.__name__
)
def test_layers_never_mutate_inputs_or_dout(backend, rng, layer_cls):
    A = backend.asarray
    x_host = rng.standard_normal((4, 6))
    dout_host = rng.standard_normal((4, 3) if layer_cls is Affine else (4, 6))
    t_host = np.array([0, 5, 2, 2])
    W_host, b_host = rng.standard_normal((6, 3)), rng.standard_normal(3)
    x, dout, t, W, b = A(x_host), A(dout_host), A(t_host), A(W_host), A(b_host)
    if layer_cls is Affine:
        layer = Affine(W, b)
        layer.forward(x)
        layer.backward(dout)
    elif layer_cls is SoftmaxWithLoss:
        layer = SoftmaxWithLoss()
        layer.forward(x, t)
        layer.backward(A(0.5))
    else:
        layer = layer_cls()
        layer.forward(x)
        layer.backward(dout)
    for got, host in [(x, x_host), (dout, dout_host), (t, t_host), (W, W_host), (b, b_host)]:
        np.testing.assert_array_equal(to_numpy(got), host)


def test_reprs():
    assert repr(Relu()) == "Relu()"
    W, b = np.ones((3, 2)), np.zeros(2)
    assert repr(Affine(W, b)) == "Affine(3, 2)"
    assert repr(SoftmaxWithLoss()) == "SoftmaxWithLoss()"


def test_softmax_backward_keeps_the_dtype_of_its_scores(backend):
    layer = SoftmaxWithLoss()
    layer.forward(backend.asarray(np.zeros((2, 3)), "float32"), backend.asarray([0, 1]))
    xp = backend.xp
    assert layer.backward(backend.asarray(0.5, "float64")).dtype == xp.float32
    assert layer.backward(2).dtype == xp.float32


def test_pooling_arg_max_is_the_books(backend, rng):
    # The book's Pooling keeps argmax over its im2col rows: the first maximum of each window.
    from bpcore import im2col
    from bpcore.layers import Pooling

    x_host = rng.integers(0, 3, (2, 3, 6, 4)).astype(np.float64)  # many ties
    layer = Pooling(2, 2, stride=2)
    layer.forward(backend.asarray(x_host))
    rows = to_numpy(im2col(backend.asarray(x_host), 2, 2, 2)).reshape(-1, 4)
    expected = np.argmax(rows, axis=1).reshape(2, 3, 2, 3)  # rows (n, i, j, c)
    np.testing.assert_array_equal(to_numpy(layer.arg_max), expected)


def test_dropout_masks_are_drawn_by_the_devices_own_generator(backend):
    # Masks come from the backend's generator, in its own library and on its device (JAX: a key
    # split at each draw; PyTorch: a torch.Generator; NumPy, Dask, array-api-strict: NumPy on
    # the host), fresh at each training pass and the same for the same seed.
    from bpcore.layers import Dropout

    def layer(seed):
        dropout = Dropout(0.4)
        dropout.generator = backend.resolve().random_generator(seed)
        return dropout

    x = backend.asarray(np.ones((8, 5)), "float32")
    a, b = layer(3), layer(3)
    first = a.forward(x)
    assert_close(first, to_numpy(b.forward(x)), rtol=0, xp=backend.xp, dtype=backend.xp.float32)
    second = a.forward(x)
    assert not np.array_equal(to_numpy(first), to_numpy(second))
    mask = to_numpy(a.mask)
    assert mask.dtype == np.bool_ and 0 < mask.mean() < 1
    dx = a.backward(backend.asarray(np.ones((8, 5)), "float32"))
    np.testing.assert_array_equal(to_numpy(dx), mask.astype(np.float32))


def test_convolution_takes_one_number_as_every_filters_bias(backend, rng):
    # The book's ch07/apply_filter.py builds Convolution(w, b) with b = 0, a plain number.
    from bpcore.layers import Convolution

    W = backend.asarray(rng.standard_normal((3, 1, 2, 2)), "float32")
    x = backend.asarray(rng.standard_normal((2, 1, 4, 4)), "float32")
    zeros = backend.asarray(np.zeros(3), "float32")
    for bias in (0, 0.5):
        out = Convolution(W, bias).forward(x)
        expected = Convolution(W, zeros).forward(x)
        assert_close(out, backend.xp.add(expected, bias), rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"b of shape \(FN,\) or a number; got W .* and b \[0, 1\]"
    ):
        Convolution(W, [0, 1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_first_conv_layers_input_gradient_costs_no_more_memory_than_the_books(dtype):
    # The book's SimpleConvNet calls backward on its first layer too. Its input gradient is
    # taken the book's way there (one channel, 30 filters); the transposed convolution would
    # stack 30 x 25 copies of the output gradient (478 MiB in float64). NumPy reports its
    # allocations to tracemalloc, which counts bytes, not time: deterministic.
    import tracemalloc

    from bpcore.bench import book_reference

    rng = np.random.default_rng(0)
    W = (0.01 * rng.standard_normal((30, 1, 5, 5))).astype(dtype)
    b = np.zeros(30, dtype)
    x = rng.random((100, 1, 28, 28)).astype(dtype)
    dout = rng.standard_normal((100, 30, 24, 24)).astype(dtype)
    peaks = {}
    for name, layer in (("bpcore", Convolution(W, b)), ("book", book_reference.Convolution(W, b))):
        layer.forward(x)
        layer.backward(dout)
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            dx = layer.backward(dout)
            peaks[name] = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert dx.shape == x.shape
    assert peaks["bpcore"] <= peaks["book"], peaks


# (N, C, H, W), filters, window, pad, and whether the layer takes shifted slices by itself:
# a DeepConvNet layer (28x28, padding 1), a non-square one, and padding that would double the
# grid (left to the im2col rows), forced both ways below.
SHIFTED = [
    ((2, 16, 28, 28), 16, (3, 3), 1, True),
    ((2, 3, 21, 24), 5, (2, 3), 0, True),
    ((2, 4, 6, 5), 3, (3, 3), 2, False),
]


@pytest.mark.parametrize(("shape", "fn", "window", "pad", "taken"), SHIFTED)
def test_shifted_windows_give_the_im2col_rows_results(
    backend, rng, monkeypatch, shape, fn, window, pad, taken
):
    # Convolution's two reference paths, each forced on the same stride-1 geometry: forward,
    # both gradients and the input gradient must agree, and neither may touch its inputs.
    import bpcore.shifted_windows
    from bpcore.kernels import reference_kernels

    W = backend.asarray(rng.standard_normal((fn, shape[1], *window)))
    b = backend.asarray(rng.standard_normal(fn))
    x_host = rng.standard_normal(shape)
    x = backend.asarray(x_host)
    results = {}
    with reference_kernels():
        taken_by_default = Convolution(W, b, 1, pad)
        taken_by_default.forward(x)
        assert (taken_by_default._flat is not None) == taken
        for shifted, waste in ((True, float("inf")), (False, 0.0)):
            monkeypatch.setattr(bpcore.shifted_windows, "MAX_WASTE", waste)
            layer = Convolution(W, b, 1, pad)
            out = layer.forward(x)
            assert (layer._flat is not None) == shifted
            dout_host = np.linspace(-1, 1, int(np.prod(out.shape))).reshape(out.shape)
            dout = backend.asarray(dout_host)
            dx = layer.backward(dout)
            params_only = Convolution(W, b, 1, pad)
            params_only.forward(x)
            params_only.backward_params(dout)
            np.testing.assert_array_equal(to_numpy(params_only.dW), to_numpy(layer.dW))
            np.testing.assert_array_equal(to_numpy(x), x_host)
            np.testing.assert_array_equal(to_numpy(dout), dout_host)
            results[shifted] = [to_numpy(a) for a in (out, dx, layer.dW, layer.db)]
    for shifted, rows in zip(results[True], results[False], strict=True):
        assert shifted.shape == rows.shape
        assert_close(shifted, rows, rtol=1e-12, atol=1e-12)


def test_a_one_channel_layer_keeps_the_im2col_rows(backend, rng, monkeypatch):
    # With one channel each offset's product would be an outer product: the layer keeps the
    # im2col rows however little the padding adds (the book's SimpleConvNet first layer).
    import bpcore.shifted_windows
    from bpcore.kernels import reference_kernels

    monkeypatch.setattr(bpcore.shifted_windows, "MAX_WASTE", float("inf"))
    layer = Convolution(backend.asarray(rng.standard_normal((6, 1, 5, 5))), 0.0)
    with reference_kernels():
        layer.forward(backend.asarray(rng.standard_normal((3, 1, 12, 12))))
    assert layer._flat is None and layer.col is not None
