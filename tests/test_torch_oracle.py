"""PyTorch autograd as an independent oracle for bpcore's gradients, on every backend.

The same parameters and batch go through bpcore (on the backend under test) and through a
network written with ``torch.nn.functional`` in float64, whose gradients autograd computes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.testing import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _torch_gradients(net, x_host, t_host, activation, weight_decay_lambda):
    params = {
        k: torch.tensor(to_numpy(v), dtype=torch.float64, requires_grad=True)
        for k, v in net.params.items()
    }
    n_layers = len(params) // 2
    h = torch.tensor(x_host, dtype=torch.float64).reshape(x_host.shape[0], -1)
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = ACTIVATIONS[activation](h)
    if t_host.ndim == 1:
        loss = F.cross_entropy(h, torch.tensor(t_host))
    else:
        loss = -(torch.tensor(t_host) * F.log_softmax(h, dim=1)).sum(dim=1).mean()
    for i in range(1, n_layers + 1):
        loss = loss + 0.5 * weight_decay_lambda * (params[f"W{i}"] ** 2).sum()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("weight_decay_lambda", [0.0, 0.05])
@pytest.mark.parametrize("labels", ["integer", "one-hot"])
def test_multi_layer_net_matches_autograd(backend, rng, activation, weight_decay_lambda, labels):
    net = MultiLayerNet(
        12,
        [9, 7],
        5,
        activation=activation,
        weight_decay_lambda=weight_decay_lambda,
        dtype="float64",
        seed=21,
        **backend.net_kwargs(),
    )
    x_host = rng.standard_normal((8, 3, 4))
    t_int = rng.integers(0, 5, 8)
    t_host = t_int if labels == "integer" else np.eye(5)[t_int]
    x, t = backend.asarray(x_host), backend.asarray(t_host)

    loss, expected = _torch_gradients(net, x_host, t_host, activation, weight_decay_lambda)
    assert float(net.loss(x, t)) == pytest.approx(loss, rel=1e-12)
    grads = net.gradient(x, t)
    for key in net.params:
        assert_close(
            grads[key],
            expected[key],
            rtol=1e-10,
            atol=1e-14,
            xp=backend.param_xp,
            dtype=net.dtype,
            err_msg=key,
        )


def test_two_layer_net_float32_matches_autograd(backend, rng):
    net = TwoLayerNet(784, 50, 10, seed=22, **backend.net_kwargs())
    x_host = rng.integers(0, 256, (16, 784)).astype(np.uint8)
    t_host = rng.integers(0, 10, 16)
    _, expected = _torch_gradients(net, x_host / 255.0, t_host, "relu", 0.0)
    x = backend.xp.astype(backend.asarray(x_host), net.dtype) / 255.0
    grads = net.gradient(x, backend.asarray(t_host))
    for key in net.params:
        scale = float(np.max(np.abs(expected[key])))
        assert_close(
            grads[key], expected[key], rtol=1e-3, atol=1e-5 * scale, dtype=net.dtype, err_msg=key
        )


# -- chapters 6 to 8 ---------------------------------------------------------------------------


def _leaf(a):
    return torch.tensor(to_numpy(a), dtype=torch.float64, requires_grad=True)


def _layer_backward(layer, backend, x_host, dout_host):
    """Forward and backward through a bpcore layer; also returns whether its inputs survived."""
    x, dout = backend.asarray(x_host), backend.asarray(dout_host)
    y = layer.forward(x)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_numpy(x), x_host)
    np.testing.assert_array_equal(to_numpy(dout), dout_host)
    return y, dx


# (N, C, H, W), filters, filter (h, w), stride, pad: square and non-square, stride 2, padding 1;
# fewer channels than filters (the input gradient by the windows, as a first layer: the book's
# SimpleConvNet's, smaller) and as many or more (by the transposed convolution).
CONVOLUTIONS = [
    ((2, 3, 7, 5), 4, (3, 2), 1, 0),
    ((2, 2, 7, 6), 3, (3, 3), 2, 1),
    ((1, 2, 9, 8), 2, (4, 3), 3, 2),
    ((2, 4, 7, 6), 2, (3, 3), 2, 1),
    ((3, 1, 12, 12), 6, (5, 5), 1, 0),
    # stride 1, several channels, little padding: shifted slices (bpcore.shifted_windows)
    ((2, 3, 24, 21), 4, (3, 3), 1, 1),
    ((2, 2, 20, 18), 3, (3, 2), 1, 0),
]


@pytest.mark.parametrize(("shape", "fn", "window", "stride", "pad"), CONVOLUTIONS)
def test_convolution_matches_autograd(backend, rng, shape, fn, window, stride, pad):
    from bpcore.layers import Convolution

    W_host = rng.standard_normal((fn, shape[1], *window))
    b_host = rng.standard_normal(fn)
    x_host = rng.standard_normal(shape)
    xt, Wt, bt = _leaf(x_host), _leaf(W_host), _leaf(b_host)
    out = F.conv2d(xt, Wt, bt, stride=stride, padding=pad)
    dout_host = rng.standard_normal(tuple(out.shape))
    (out * torch.tensor(dout_host)).sum().backward()

    layer = Convolution(backend.asarray(W_host), backend.asarray(b_host), stride, pad)
    y, dx = _layer_backward(layer, backend, x_host, dout_host)
    assert_close(y, out.detach().numpy(), rtol=1e-12, atol=1e-12, xp=backend.xp)
    assert_close(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12, xp=backend.xp)
    assert_close(layer.dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(layer.db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "fn", "window", "stride", "pad"), CONVOLUTIONS)
def test_both_input_gradients_of_a_convolution_agree(backend, rng, shape, fn, window, stride, pad):
    # Convolution.backward's reference code takes one of two computations by the channels;
    # each must give the other's result on every geometry, whichever one backward picks for it.
    from bpcore.kernels import reference_kernels
    from bpcore.layers import Convolution

    W = backend.asarray(rng.standard_normal((fn, shape[1], *window)))
    layer = Convolution(W, backend.asarray(rng.standard_normal(fn)), stride, pad)
    with reference_kernels():
        out = layer.forward(backend.asarray(rng.standard_normal(shape)))
    dout = backend.asarray(rng.standard_normal(tuple(out.shape)))
    rows = backend.xp.reshape(backend.xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))
    n, c, h, w = shape
    dcol_t = backend.xp.asarray(layer.col_W) @ backend.xp.matrix_transpose(rows)
    by_windows = layer._input_grad_by_windows(dcol_t, tuple(dout.shape), (n, c, h, w))
    by_transposed = layer._input_grad_by_transposed(dout, (n, c, h, w))
    assert_close(by_windows, to_numpy(by_transposed), rtol=1e-12, atol=1e-12, xp=backend.xp)


@pytest.mark.parametrize(
    ("shape", "fn", "window", "stride", "pad"),
    # the book's SimpleConvNet first layer and a DeepConvNet layer, beside the list above
    [*CONVOLUTIONS, ((4, 1, 28, 28), 30, (5, 5), 1, 0), ((4, 16, 14, 14), 32, (3, 3), 1, 1)],
)
def test_a_librarys_own_convolution_equals_the_reference(
    backend, rng, shape, fn, window, stride, pad
):
    # Where a backend offers its own kernel (bpcore.kernels), forward and backward must give
    # the Array API reference path's values: the same layer, with the reference forced.
    from bpcore.kernels import native_conv2d, reference_kernels
    from bpcore.layers import Convolution

    W = backend.asarray(rng.standard_normal((fn, shape[1], *window)))
    x = backend.asarray(rng.standard_normal(shape))
    # Without a kernel of its own a backend runs the reference both ways: the dispatch is what
    # is tested there.
    native = native_conv2d(x, W, stride, pad) is not None
    b = backend.asarray(rng.standard_normal(fn))
    results = {}
    for forced in (False, True):
        layer = Convolution(W, b, stride, pad)
        with reference_kernels(forced):
            out = layer.forward(x)
            dout = backend.asarray(np.linspace(-1, 1, math.prod(out.shape)).reshape(out.shape))
            dx = layer.backward(dout)
        assert (layer.kernel is None) == (forced or not native)
        results[forced] = [to_numpy(a) for a in (out, dx, layer.dW, layer.db)]
    for native, reference in zip(results[False], results[True], strict=True):
        assert_close(native, reference, rtol=1e-12, atol=1e-12)


def test_a_librarys_own_convolution_takes_the_book_conv_layers(backend, rng):
    # The test above compares a kernel with the reference only where the kernel takes the
    # geometry: every kernel must take the book's conv layers (SimpleConvNet's 5x5 without
    # padding, DeepConvNet's 3x3 with padding 1), or it would never run on them. JAX's
    # declines padding of half a filter or more (XLA's slow filter gradient there).
    from bpcore.backends import backend_class_of
    from bpcore.kernels import native_conv2d

    x = backend.asarray(rng.standard_normal((2, 16, 14, 14)))
    has_kernel = backend_class_of(x).native_conv2d is not None
    for filters, pad in (((30, 16, 5, 5), 0), ((16, 16, 3, 3), 1)):
        W = backend.asarray(rng.standard_normal(filters))
        assert (native_conv2d(x, W, 1, pad) is not None) == has_kernel
    padded_by_two = native_conv2d(x, backend.asarray(rng.standard_normal((8, 16, 3, 3))), 1, 2)
    assert (padded_by_two is not None) == (has_kernel and backend.name != "jax")
    one_channel = backend.asarray(rng.standard_normal((2, 1, 14, 14)))
    W = backend.asarray(rng.standard_normal((30, 1, 5, 5)))
    assert (native_conv2d(one_channel, W, 1, 0) is not None) == has_kernel  # called eagerly


def test_jax_compiles_a_one_channel_layer_from_the_layers_own_code():
    # Inside jax.jit XLA fuses the reference's window slices, which beat its own convolution
    # for a one-channel layer (SimpleConvNet's first); eagerly its kernel is the faster.
    jax = pytest.importorskip("jax")
    from bpcore import SimpleConvNet, compile_step
    from bpcore.kernels import native_conv2d
    from bpcore.optimizers import SGD

    taken = {}

    def probe(x1, w1, x16, w16):
        taken["one channel"] = native_conv2d(x1, w1, 1, 0) is not None
        taken["16 channels"] = native_conv2d(x16, w16, 1, 1) is not None
        return x1

    ones = jax.numpy.ones
    x1, w1, x16, w16 = (
        ones((2, 1, 8, 8)),
        ones((4, 1, 5, 5)),
        ones((2, 16, 8, 8)),
        ones((4, 16, 3, 3)),
    )
    jax.jit(probe)(x1, w1, x16, w16)
    assert taken == {"one channel": False, "16 channels": True}
    assert native_conv2d(x1, w1, 1, 0) is not None  # the same layer, eagerly

    # The compiled step takes the reference for the first layer, and steps as the eager loop
    # on XLA's kernel does.
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    t = np.arange(4)
    compiled, eager = (SimpleConvNet(backend="jax", seed=0) for _ in range(2))
    compile_step(compiled, SGD(lr=0.1))(x, t)
    assert compiled.layers["Conv1"].kernel is None
    SGD(lr=0.1).update(eager.params, eager.gradient(x, t))
    assert eager.layers["Conv1"].kernel is not None
    for key in eager.params:
        assert_close(to_numpy(compiled.params[key]), to_numpy(eager.params[key]), rtol=1e-4)


# (N, C, H, W), window (h, w), stride, pad: overlapping windows (stride 1 and 2 on 3x3),
# non-square windows and images, padding 1.
POOLINGS = [
    ((2, 3, 6, 5), (3, 2), 1, 0),
    ((2, 2, 7, 6), (2, 2), 2, 1),
    ((1, 2, 7, 7), (3, 3), 2, 1),
    ((2, 1, 6, 8), (2, 2), 2, 0),
]


@pytest.mark.parametrize("values", ["distinct", "ties"])
@pytest.mark.parametrize(
    ("shape", "window", "stride", "pad"),
    # the book's pooling (2x2, stride 2), and padding over half the window (no PyTorch kernel)
    [*POOLINGS, ((3, 4, 24, 24), (2, 2), 2, 0), ((2, 2, 7, 7), (2, 2), 1, 2)],
)
def test_a_librarys_own_max_pooling_equals_the_reference(
    backend, rng, shape, window, stride, pad, values
):
    from bpcore.kernels import native_max_pool2d, reference_kernels
    from bpcore.layers import Pooling

    if values == "ties":
        x_host = rng.integers(0, 3, shape).astype(np.float64)
    else:
        x_host = rng.standard_normal(shape)
    x = backend.asarray(x_host)
    native = native_max_pool2d(x) is not None  # without one, the dispatch is what is tested
    results = {}
    for forced in (False, True):
        layer = Pooling(*window, stride, pad)
        with reference_kernels(forced):
            out = layer.forward(x)
            dout = backend.asarray(np.linspace(-1, 1, math.prod(out.shape)).reshape(out.shape))
            dx = layer.backward(dout)
        assert (layer.kernel is None) == (forced or not native or 2 * pad > min(window))
        results[forced] = [to_numpy(a) for a in (out, layer.arg_max, dx)]
    (out, arg_max, dx), (ref_out, ref_arg_max, ref_dx) = results[False], results[True]
    np.testing.assert_array_equal(out, ref_out)  # a maximum is one of the inputs, exactly
    np.testing.assert_array_equal(arg_max, ref_arg_max)  # the same element of each window
    assert_close(dx, ref_dx, rtol=1e-12, atol=1e-12)  # overlapping windows: sums reordered


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_librarys_own_relu_gradient_equals_the_reference(backend, rng, dtype):
    from bpcore.kernels import native_relu_backward, reference_kernels
    from bpcore.layers import Relu

    # Exact zeros (what the ReLU kills, and inputs at 0) beside positive and negative values.
    x_host = np.concatenate([rng.standard_normal(60), np.zeros(12)]).reshape(3, 4, 6).astype(dtype)
    dout_host = rng.standard_normal(x_host.shape).astype(dtype)
    x, dout = backend.asarray(x_host), backend.asarray(dout_host)
    results = {}
    for forced in (False, True):
        layer = Relu()
        with reference_kernels(forced):
            out = layer.forward(x)
            taken = native_relu_backward(out, dout) is not None
            results[forced] = to_numpy(layer.backward(dout))
        assert taken == (backend.name == "torch" and not forced)
    np.testing.assert_array_equal(results[False], results[True])  # dout or 0: exact
    np.testing.assert_array_equal(results[True], np.where(x_host > 0, dout_host, 0))
    np.testing.assert_array_equal(to_numpy(dout), dout_host)
    # Another dtype or shape for dout: the layer's own code, which promotes or refuses.
    out = Relu().forward(x)
    other = "float64" if dtype == "float32" else "float32"
    assert native_relu_backward(out, backend.asarray(dout_host.astype(other))) is None
    assert native_relu_backward(out, backend.asarray(dout_host[:1])) is None


def test_pytorchs_relu_gradient_passes_dout_where_the_output_is_nan():
    # PyTorch's kernel, as the book's Relu (its mask is x <= 0): dout goes through at a NaN.
    from bpcore.kernels import reference_kernels
    from bpcore.layers import Relu

    x = torch.tensor([[float("nan"), -1.0, 2.0]], dtype=torch.float64)
    dout = torch.tensor([[3.0, 4.0, 5.0]], dtype=torch.float64)
    layer = Relu()
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dout).numpy(), [[3.0, 0.0, 5.0]])
    with reference_kernels():  # the reference: 0 where the output is not positive, NaN too
        np.testing.assert_array_equal(layer.backward(dout).numpy(), [[0.0, 0.0, 5.0]])


@pytest.mark.parametrize("values", ["distinct", "ties"])
@pytest.mark.parametrize(("shape", "window", "stride", "pad"), POOLINGS)
def test_max_pooling_matches_autograd(backend, rng, shape, window, stride, pad, values):
    # With ties (integers 0 to 2, many equal maxima per window) the whole gradient goes to the
    # first maximum of the window, row by row: the choice of torch's max_pool2d too.
    from bpcore.layers import Pooling

    if values == "ties":
        x_host = rng.integers(0, 3, shape).astype(np.float64) - 1.0
    else:
        x_host = rng.standard_normal(shape)
    xt = _leaf(x_host)
    out = F.max_pool2d(xt, window, stride=stride, padding=pad)
    dout_host = rng.standard_normal(tuple(out.shape))
    (out * torch.tensor(dout_host)).sum().backward()

    layer = Pooling(*window, stride=stride, pad=pad)
    y, dx = _layer_backward(layer, backend, x_host, dout_host)
    assert_close(y, out.detach().numpy(), rtol=0, xp=backend.xp)
    assert_close(dx, xt.grad.numpy(), rtol=1e-14, atol=1e-14, xp=backend.xp)


@pytest.mark.parametrize("train_flg", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (4, 2, 3, 2)])
def test_batch_normalization_matches_autograd(backend, rng, shape, train_flg):
    # The book normalizes every feature (c, h, w) of a 4-d input over the batch: torch's
    # batch_norm on the (N, C*H*W) view. The book's momentum 0.9 is torch's 0.1.
    from bpcore.layers import BatchNormalization

    d = int(np.prod(shape[1:]))
    gamma_host, beta_host = rng.standard_normal(d), rng.standard_normal(d)
    mean_host, var_host = rng.standard_normal(d), rng.random(d) + 0.5
    x_host = 3.0 + 2.0 * rng.standard_normal(shape)
    xt, gt, bt = _leaf(x_host), _leaf(gamma_host), _leaf(beta_host)
    running_mean = torch.tensor(mean_host)
    out = F.batch_norm(
        xt.reshape(shape[0], d),
        running_mean,
        torch.tensor(var_host),
        gt,
        bt,
        training=train_flg,
        momentum=0.1,
        eps=1e-6,
    ).reshape(shape)
    dout_host = rng.standard_normal(shape)
    (out * torch.tensor(dout_host)).sum().backward()

    layer = BatchNormalization(
        backend.asarray(gamma_host),
        backend.asarray(beta_host),
        running_mean=backend.asarray(mean_host),
        running_var=backend.asarray(var_host),
    )
    x, dout = backend.asarray(x_host), backend.asarray(dout_host)
    y = layer.forward(x, train_flg)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_numpy(x), x_host)
    np.testing.assert_array_equal(to_numpy(dout), dout_host)
    assert_close(y, out.detach().numpy(), rtol=1e-10, atol=1e-12, xp=backend.xp)
    assert_close(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-10, xp=backend.xp)
    assert_close(layer.dgamma, gt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert_close(layer.dbeta, bt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(layer.running_mean, running_mean.numpy(), rtol=1e-12, atol=1e-14)
    # torch keeps the unbiased variance; the book the batch's own (biased) one.
    flat = x_host.reshape(shape[0], d)
    expected_var = 0.9 * var_host + 0.1 * flat.var(axis=0) if train_flg else var_host
    assert_close(layer.running_var, expected_var, rtol=1e-12)


@pytest.mark.parametrize("train_flg", [True, False])
def test_dropout_matches_autograd_with_the_same_mask(backend, rng, train_flg):
    from bpcore.layers import Dropout

    layer = Dropout(0.3, seed=5)
    x_host, dout_host = rng.standard_normal((6, 7)), rng.standard_normal((6, 7))
    x, dout = backend.asarray(x_host), backend.asarray(dout_host)
    y = layer.forward(x, train_flg)
    dx = layer.backward(dout)
    xt = _leaf(x_host)
    if train_flg:
        mask = to_numpy(layer.mask)
        assert mask.dtype == np.bool_ and 0 < mask.mean() < 1
        out = xt * torch.tensor(mask, dtype=torch.float64)
    else:
        out = xt * 0.7  # the book's inference: scaled, not masked
    (out * torch.tensor(dout_host)).sum().backward()
    assert_close(y, out.detach().numpy(), rtol=1e-15, xp=backend.xp)
    assert_close(dx, xt.grad.numpy(), rtol=1e-15, xp=backend.xp)


def _torch_dense_extend(net, x_host, t_host):
    """MultiLayerNetExtend in training mode with the masks bpcore drew, by torch."""
    config = net.config
    params = {k: _leaf(v) for k, v in net.params.items()}
    n_hidden = len(config["hidden_size_list"])
    h = torch.tensor(x_host)
    for i in range(1, n_hidden + 2):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i > n_hidden:
            break
        if config["use_batchnorm"]:
            h = F.batch_norm(
                h, None, None, params[f"gamma{i}"], params[f"beta{i}"], training=True, eps=1e-6
            )
        h = ACTIVATIONS[config["activation"]](h)
        if config["use_dropout"]:
            h = h * torch.tensor(to_numpy(net.layers[f"Dropout{i}"].mask), dtype=torch.float64)
    loss = F.cross_entropy(h, torch.tensor(t_host))
    for i in range(1, n_hidden + 2):
        loss = loss + 0.5 * config["weight_decay_lambda"] * (params[f"W{i}"] ** 2).sum()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize(
    ("use_dropout", "use_batchnorm", "activation"),
    [(True, True, "relu"), (False, True, "sigmoid"), (True, False, "tanh")],
)
def test_multi_layer_net_extend_matches_autograd(
    backend, rng, use_dropout, use_batchnorm, activation
):
    from bpcore import MultiLayerNetExtend

    # The sizes of test_convnets' MultiLayerNetExtend: JAX compiles their operations once.
    net = MultiLayerNetExtend(
        6,
        [5, 4],
        3,
        activation=activation,
        weight_decay_lambda=0.01,
        use_dropout=use_dropout,
        dropout_ration=0.25,
        use_batchnorm=use_batchnorm,
        dtype="float64",
        seed=3,
        **backend.net_kwargs(),
    )
    x_host, t_host = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
    grads = net.gradient(backend.asarray(x_host), backend.asarray(t_host))
    loss, expected = _torch_dense_extend(net, x_host, t_host)
    assert float(net.last_loss) == pytest.approx(loss, rel=1e-12)
    for key in net.params:
        assert_close(grads[key], expected[key], rtol=1e-8, atol=1e-12, err_msg=key)


def _torch_convnet(net, x_host, t_host):
    """SimpleConvNet or DeepConvNet (training mode, bpcore's masks) by torch."""
    params = {k: _leaf(v) for k, v in net.params.items()}
    h = torch.tensor(x_host)
    for name, layer in net.layers.items():
        if name.startswith("Conv"):
            k = name[len("Conv") :]
            h = F.conv2d(
                h, params[f"W{k}"], params[f"b{k}"], stride=layer.stride, padding=layer.pad
            )
        elif name.startswith("Relu"):
            h = torch.relu(h)
        elif name.startswith("Pool"):
            h = F.max_pool2d(h, (layer.pool_h, layer.pool_w), stride=layer.stride)
        elif name.startswith("Affine"):
            key = next(k for k, v in net.params.items() if v is layer.W)
            h = h.reshape(h.shape[0], -1) @ params[key] + params["b" + key[1:]]
        elif name.startswith("Dropout"):
            h = h * torch.tensor(to_numpy(layer.mask), dtype=torch.float64)
        else:  # pragma: no cover - a layer this oracle does not know
            raise AssertionError(name)
    loss = F.cross_entropy(h, torch.tensor(t_host))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in params.items()}


def _small_deep_convnet(backend, **kwargs):
    from bpcore import DeepConvNet

    convs = [(2, 1), (2, 1), (3, 1), (3, 2), (2, 1), (2, 1)]  # filters, pad: the book's pattern
    params = {
        f"conv_param_{i}": {"filter_num": fn, "filter_size": 3, "pad": pad, "stride": 1}
        for i, (fn, pad) in enumerate(convs, start=1)
    }
    return DeepConvNet(
        input_dim=(2, 8, 7),
        hidden_size=6,
        output_size=3,
        **params,
        **kwargs,
        **backend.net_kwargs(),
    )


@pytest.mark.parametrize("model", ["simple", "deep"])
def test_conv_nets_match_autograd(backend, rng, model):
    from bpcore import SimpleConvNet

    if model == "simple":
        net = SimpleConvNet(
            input_dim=(2, 9, 8),
            conv_param={"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 2},
            hidden_size=5,
            output_size=3,
            weight_init_std=0.3,
            dtype="float64",
            seed=4,
            **backend.net_kwargs(),
        )
        x_host = rng.standard_normal((4, 2, 9, 8))
    else:
        net = _small_deep_convnet(backend, dtype="float64", seed=4)
        x_host = rng.standard_normal((4, 2, 8, 7))
    t_host = rng.integers(0, 3, 4)
    x, t = backend.asarray(x_host), backend.asarray(t_host)
    grads = net.gradient(x, t)
    loss, expected = _torch_convnet(net, x_host, t_host)
    assert float(net.last_loss) == pytest.approx(loss, rel=1e-12)
    for key in net.params:
        assert_close(grads[key], expected[key], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(to_numpy(x), x_host)
