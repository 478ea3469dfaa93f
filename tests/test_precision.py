"""Half precision and mixed precision, on every backend that has the dtype.

Each layer's forward pass in float16 and bfloat16 is compared with its float32 forward pass on
the same (rounded) inputs, within the half dtype's tolerance; a backend without the dtype must
refuse it by name. Mixed-precision networks keep float32 masters, and loss scaling skips a step
that overflows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import bpcore
from bpcore import LossScaler, to_numpy
from bpcore.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    Tanh,
)
from bpcore.optimizers import SGD, Adam
from bpcore.precision import Gradients

HALF = ["float16", "bfloat16"]
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23}


def _has(backend, dtype):
    return backend.resolve().has_dtype(dtype)


def _refuses(backend, dtype):
    """A backend without ``dtype`` refuses it by name: for layers' arrays and networks."""
    with pytest.raises(ValueError, match=f"dtype '{dtype}' is not supported by backend"):
        bpcore.TwoLayerNet(4, 3, 2, dtype=dtype, **backend.net_kwargs())
    with pytest.raises(ValueError, match=f"dtype '{dtype}' is not supported by backend"):
        bpcore.TwoLayerNet(4, 3, 2, precision=f"mixed_{dtype}", **backend.net_kwargs())


def _pair(backend, host, dtype):
    """``host`` rounded to ``dtype`` on the backend, and the same values in float32."""
    b = backend.resolve()
    half = b.xp.astype(backend.asarray(host, "float32"), b.dtype(dtype))
    return half, b.xp.astype(half, b.xp.float32)


def _layer_cases(rng):
    """(name, host parameters, layer from parameters, forward's extra arguments, input shape,
    the number of terms behind one output)."""
    return [
        ("Relu", [], lambda: Relu(), (), (6, 7), 1),
        ("Sigmoid", [], lambda: Sigmoid(), (), (6, 7), 1),
        ("Tanh", [], lambda: Tanh(), (), (6, 7), 1),
        ("Affine", [rng.standard_normal((7, 5)), rng.standard_normal(5)], Affine, (), (6, 7), 8),
        ("Convolution", [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
         lambda W, b: Convolution(W, b, stride=2, pad=1), (), (2, 3, 7, 7), 28),
        ("Pooling", [], lambda: Pooling(2, 2, stride=2), (), (2, 3, 6, 6), 1),
        ("Dropout", [], lambda: Dropout(0.3, seed=0), (False,), (6, 7), 1),
        ("BatchNormalization", [rng.uniform(0.5, 1.5, 7), rng.standard_normal(7)],
         BatchNormalization, (True,), (6, 7), 6),
    ]  # fmt: skip


@pytest.mark.parametrize("dtype", HALF)
def test_each_layer_forward_in_half_agrees_with_float32(backend, dtype):
    """On the same rounded inputs and parameters, within ``8 eps sqrt(n)`` of the largest
    output, ``n`` the number of terms behind each output (as `bpcore compare` judges)."""
    if not _has(backend, dtype):
        _refuses(backend, dtype)
        return
    b = backend.resolve()
    for name, host_params, make, args, shape, n in _layer_cases(np.random.default_rng(0)):
        pairs = [_pair(backend, p, dtype) for p in host_params]
        x_half, x_32 = _pair(backend, np.random.default_rng(1).standard_normal(shape), dtype)
        expected = to_numpy(make(*(f for _, f in pairs)).forward(x_32, *args)).astype(np.float64)
        out = make(*(h for h, _ in pairs)).forward(x_half, *args)
        assert out.dtype == b.dtype(dtype), name
        got = to_numpy(b.xp.astype(out, b.xp.float32)).astype(np.float64)
        tolerance = 8 * EPS[dtype] * math.sqrt(n) * max(1.0, float(np.max(np.abs(expected))))
        error = float(np.max(np.abs(got - expected)))
        assert error <= tolerance, f"{name} in {dtype}: {error:.3g} > {tolerance:.3g}"


@pytest.mark.parametrize("dtype", HALF)
def test_softmax_loss_of_half_scores_is_float32(backend, dtype):
    """The log-sum-exp and the loss in float32: the same loss as float32 scores give; the
    gradient in the scores' dtype, within its rounding of the float32 gradient."""
    if not _has(backend, dtype):
        _refuses(backend, dtype)
        return
    b = backend.resolve()
    rng = np.random.default_rng(2)
    x_half, x_32 = _pair(backend, 30 * rng.standard_normal((5, 4)), dtype)  # large logits
    t = backend.asarray(rng.integers(0, 4, 5))
    half, full = SoftmaxWithLoss(), SoftmaxWithLoss()
    loss_half, loss_32 = half.forward(x_half, t), full.forward(x_32, t)
    assert loss_half.dtype == b.xp.float32
    np.testing.assert_allclose(to_numpy(loss_half), to_numpy(loss_32), rtol=1e-6)
    dx_half, dx_32 = half.backward(), full.backward()
    assert dx_half.dtype == b.dtype(dtype)
    got = to_numpy(b.xp.astype(dx_half, b.xp.float32))
    np.testing.assert_allclose(got, to_numpy(dx_32), rtol=0, atol=EPS[dtype] * 0.2)


@pytest.mark.parametrize("dtype", HALF)
def test_batch_norm_statistics_in_float32_buffers_keep_their_dtype(backend, dtype):
    if not _has(backend, dtype):
        _refuses(backend, dtype)
        return
    b = backend.resolve()
    rng = np.random.default_rng(3)
    # A large common offset: a float16 sum of squares over the batch would lose the spread.
    x_half, x_32 = _pair(backend, 300 + rng.standard_normal((64, 3)), dtype)
    gamma, gamma_32 = _pair(backend, np.ones(3), dtype)
    beta, beta_32 = _pair(backend, np.zeros(3), dtype)
    layer = BatchNormalization(gamma, beta, running_mean=beta * 0, running_var=beta * 0)
    reference = BatchNormalization(gamma_32, beta_32)
    out, expected = layer.forward(x_half, True), reference.forward(x_32, True)
    assert layer.running_mean.dtype == b.dtype(dtype)  # the buffers' own dtype
    np.testing.assert_allclose(
        to_numpy(b.xp.astype(layer.running_var, b.xp.float32)),
        to_numpy(reference.running_var),
        rtol=4 * EPS[dtype],
    )
    got = to_numpy(b.xp.astype(out, b.xp.float32))
    np.testing.assert_allclose(got, to_numpy(expected), rtol=0, atol=8 * EPS[dtype] * 4)
    dx = layer.backward(out)
    assert dx.dtype == b.dtype(dtype) and layer.dgamma.dtype == b.dtype(dtype)


def _batch(backend, n=32, shape=(1, 10, 10), seed=0):
    rng = np.random.default_rng(seed)
    return backend.asarray(rng.random((n, *shape)).astype(np.float32)), backend.asarray(
        rng.integers(0, 10, n)
    )


def _conv_net(backend, **kwargs):
    return bpcore.SimpleConvNet(
        (1, 10, 10),
        {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=8,
        seed=0,
        **backend.net_kwargs(),
        **kwargs,
    )


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_gradients_are_float32_and_near_float32s(backend, precision):
    """Float32 masters stay in ``params`` (and in the layers after a pass); the gradients are
    float32, within the half dtype's rounding of a float32 network's."""
    dtype = precision.removeprefix("mixed_")
    if not _has(backend, dtype):
        _refuses(backend, dtype)
        return
    x, t = _batch(backend)
    net, reference = _conv_net(backend, precision=precision), _conv_net(backend)
    grads, expected = net.gradient(x, t), reference.gradient(x, t)
    assert isinstance(grads, Gradients) == (dtype == "float16")
    for key, g in grads.items():
        assert g.dtype == net.params[key].dtype == backend.param_xp.float32
        # Rounding in each layer above, and ReLUs whose input rounds across 0 (bfloat16 moves
        # W2's gradient by 9% of its norm): 16 eps of the norm.
        reference = to_numpy(expected[key])
        error = float(np.linalg.norm(to_numpy(g) - reference))
        assert error <= 16 * EPS[dtype] * float(np.linalg.norm(reference)), key
    for key in net.params:
        layer, attribute = net.params.layer_of(key)
        assert getattr(layer, attribute) is net.params[key]
    assert net.last_loss.dtype == backend.param_xp.float32
    assert net.predict(x).dtype == backend.resolve().dtype(dtype)


def test_overflowing_step_is_skipped_and_the_scale_lowered(backend):
    """A loss scale forced too high: the gradients overflow float16; the step leaves the
    parameters and Adam's moments alone and halves the scale, until steps fit again."""
    if not _has(backend, "float16"):
        _refuses(backend, "float16")
        return
    x, t = _batch(backend)
    net = _conv_net(backend, precision="mixed_float16")
    net.loss_scaler = LossScaler(init_scale=2.0**40, growth_interval=3)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    optimizer = Adam(lr=0.01)
    grads = net.gradient(x, t)
    assert not bool(grads.finite)
    assert all(not np.any(to_numpy(g)) for g in grads.values())  # zeros for other optimizers
    optimizer.update(net.params, grads)
    assert optimizer.m == {} and optimizer.iter == 1  # skipped; the step count moves
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), before[key])
    assert float(net.loss_scaler.scale) == 2.0**39
    for _ in range(40):  # halved at each overflow, then steps go through
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
    assert bool(grads.finite)
    scale = float(net.loss_scaler.scale)
    assert scale < 2.0**39 and math.log2(scale) == int(math.log2(scale))
    assert np.any(to_numpy(net.params["W1"]) != before["W1"])
    # Three finite steps in a row double the scale.
    for _ in range(3):
        net.gradient(x, t)
    assert float(net.loss_scaler.scale) in (scale * 2, scale * 4)


def test_compiled_step_skips_an_overflowing_step_on_the_device(backend):
    """The same in `compile_step` (compiled on JAX: the flag is never read back). After two
    good steps Adam's momentum would move the parameters even with zero gradients: a skipped
    step leaves them, and the moments, exactly as they were."""
    if not _has(backend, "float16"):
        _refuses(backend, "float16")
        return
    x, t = _batch(backend)
    net = _conv_net(backend, precision="mixed_float16")
    optimizer = Adam(lr=0.01)
    step = bpcore.compile_step(net, optimizer)
    step(x, t)
    step(x, t)
    scaler = net.loss_scaler
    xp = backend.param_xp
    scaler.load_state({"scale": scaler.scale * 2.0**30, "good_steps": scaler.good_steps})
    high = float(scaler.scale)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    moments = {k: to_numpy(v).copy() for k, v in optimizer.m.items()}
    step(x, t)
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), before[key])
    for key, value in optimizer.m.items():
        np.testing.assert_array_equal(to_numpy(value), moments[key])
    assert float(scaler.scale) == high / 2 and xp.isdtype(scaler.scale.dtype, "real floating")
    for _ in range(30):
        step(x, t)
    assert float(scaler.scale) < high / 2
    assert np.any(to_numpy(net.params["W1"]) != before["W1"])


def test_compiled_mixed_step_never_reads_back():
    """On JAX the mixed float16 step (scale, overflow test, skip) runs with transfers to the
    host forbidden."""
    jax = pytest.importorskip("jax")
    net = bpcore.TwoLayerNet(20, 8, 10, backend="jax", precision="mixed_float16", seed=0)
    rng = np.random.default_rng(0)
    x = net.backend_info.asarray(rng.random((16, 20)).astype(np.float32))
    t = net.backend_info.asarray(rng.integers(0, 10, 16))
    step = bpcore.compile_step(net, Adam())
    step(x, t)  # compiled, and the optimizer's scalars sent, before the guard
    with jax.transfer_guard("disallow"):
        for _ in range(3):
            loss = step(x, t)
    assert math.isfinite(float(loss))


def test_book_optimizer_sees_zero_gradients_on_overflow():
    """An optimizer that does not know the flag (the book's SGD writes ``-=``) is not moved."""
    net = bpcore.TwoLayerNet(20, 8, 10, precision="mixed_float16", seed=0)
    net.loss_scaler = LossScaler(init_scale=2.0**60)
    rng = np.random.default_rng(0)
    x, t = rng.random((16, 20)), rng.integers(0, 10, 16)
    before = {k: v.copy() for k, v in net.params.items()}
    grads = net.gradient(x, t)
    for key in net.params:  # the book's SGD.update
        net.params[key] -= 0.1 * grads[key]
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])
    SGD(0.1).update(net.params, grads)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("dtype", HALF)
def test_half_network_inference_save_and_load(backend, dtype, tmp_path):
    """A network in float16 or bfloat16 (the book's half_float_network.py casts float64
    weights to float16): predictions within rounding of float32's; a checkpoint round trip."""
    if not _has(backend, dtype):
        _refuses(backend, dtype)
        return
    x, t = _batch(backend, n=8)
    full = _conv_net(backend)
    half = full.to(dtype=dtype)
    assert half.dtype_name == dtype and half.params["W1"].dtype == backend.resolve().dtype(dtype)
    assert f"dtype: {dtype}," in half.summary()
    b = backend.resolve()
    got = to_numpy(b.xp.astype(half.predict(x), b.xp.float32))
    expected = to_numpy(full.predict(x))
    np.testing.assert_allclose(got, expected, atol=0.05 * np.max(np.abs(expected)))
    if dtype == "float16":  # bfloat16's 8 bits may flip a close call; its scores are held above
        assert half.accuracy(x, t) == full.accuracy(x, t)
    path = half.save(tmp_path / "half.npz")
    loaded = bpcore.load(path, **backend.net_kwargs())
    assert loaded.dtype_name == dtype
    for key, value in half.params.items():
        np.testing.assert_array_equal(to_numpy(loaded.params[key]), to_numpy(value))


def test_mixed_network_keeps_its_precision_through_copies_and_checkpoints(tmp_path):
    net = _conv_net(bpcore.testing.BackendCase("numpy", "cpu"), precision="mixed_float16")
    assert "precision='mixed_float16'" in repr(net)
    assert "dtype: float32 (precision mixed_float16)" in net.summary()
    copy = net.to()
    assert copy.precision == "mixed_float16" and copy.loss_scaler is not None
    assert net.to(precision=None).precision is None
    loaded = bpcore.load(net.save(tmp_path / "mixed.npz"))
    assert loaded.precision == "mixed_float16" and loaded.dtype_name == "float32"


def test_gradient_check_of_a_half_network_runs_in_float64_and_says_so():
    net = bpcore.TwoLayerNet(4, 5, 3, precision="mixed_float16", seed=0)
    rng = np.random.default_rng(0)
    with pytest.warns(
        UserWarning, match="computes in float16; its gradients are checked in float64"
    ):
        check = bpcore.gradient_check(net, rng.random((2, 4)), np.array([0, 2]))
    assert check.dtype == "float64" and check.passed
    half = bpcore.TwoLayerNet(4, 5, 3, dtype="float16", seed=0)
    with pytest.warns(UserWarning, match="computes in float16"):
        assert bpcore.gradient_check(half, rng.random((2, 4)), np.array([0, 2])).passed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a float32 network's check is float64 as documented
        bpcore.gradient_check(
            bpcore.TwoLayerNet(4, 5, 3, seed=0), rng.random((2, 4)), np.array([0, 2])
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"init_scale": 0}, ValueError, "init_scale must be a positive finite number"),
        ({"init_scale": "big"}, TypeError, "init_scale must be a number"),
        ({"growth_factor": float("inf")}, ValueError, "growth_factor must be a positive"),
        ({"backoff_factor": 1}, ValueError, r"backoff_factor must lie in \(0, 1\)"),
        ({"growth_interval": 0}, ValueError, "growth_interval must be at least 1"),
        ({"growth_interval": 2.5}, TypeError, "growth_interval must be an integer"),
    ],
)
def test_bad_loss_scaler_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        LossScaler(**kwargs)


def test_a_resumed_mixed_float16_run_goes_on_at_its_loss_scale(tmp_path):
    """The Trainer's run checkpoint keeps the loss scale and the count of finite steps."""
    rng = np.random.default_rng(0)
    x, t = rng.random((64, 20)).astype(np.float32), rng.integers(0, 10, 64)
    path = tmp_path / "run.npz"

    def trainer(epochs, **kwargs):
        net = bpcore.TwoLayerNet(20, 8, 10, precision="mixed_float16", seed=0)
        net.loss_scaler = LossScaler(init_scale=2.0**8, growth_interval=3)
        return bpcore.Trainer(
            net, x, t, x, t, epochs=epochs, mini_batch_size=16, optimizer="adam",
            verbose=False, seed=0, **kwargs,
        )  # fmt: skip

    first = trainer(2, checkpoint=path)
    first.train()
    reached = first.network.loss_scaler.state_dict()
    assert reached["scale"] > 2.0**8  # it grew: 8 finite steps
    resumed = trainer(3, resume=path)
    assert resumed.network.loss_scaler.state_dict() == reached
    resumed.train()
    assert resumed.epochs_done == 3


def test_a_lazy_backend_computes_the_scalers_outcome_with_the_gradients():
    """Dask has no float16, but a loss scaler set on a float32 network runs there too: the
    flag and the new scale are computed in the same pass as the gradients, which are those of
    the same network without a scaler."""
    pytest.importorskip("dask")
    net, twin = (bpcore.TwoLayerNet(20, 8, 10, backend="dask", seed=0) for _ in range(2))
    net.loss_scaler = LossScaler(init_scale=2.0**10, growth_interval=1)
    rng = np.random.default_rng(0)
    x = net.backend_info.asarray(rng.random((16, 20)).astype(np.float32))
    t = net.backend_info.asarray(rng.integers(0, 10, 16))
    grads, expected = net.gradient(x, t), twin.gradient(x, t)
    assert isinstance(grads, Gradients) and bool(grads.finite)
    for key, g in grads.items():
        assert isinstance(g, np.ndarray)  # computed, not a lazy graph
        np.testing.assert_allclose(g, expected[key], rtol=1e-5, atol=1e-7)
    assert isinstance(net.loss_scaler.scale, np.ndarray)
    assert float(net.loss_scaler.scale) == 2.0**11  # one finite step, growth_interval 1
