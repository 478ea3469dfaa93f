"""TwoLayerNet and MultiLayerNet: the book's API on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.testing import RTOL, assert_close


def _batch(backend, rng, n=6, features=10, classes=4):
    x = backend.asarray(rng.standard_normal((n, features)), "float32")
    t_host = rng.integers(0, classes, n)
    return x, backend.asarray(t_host), t_host


def _host_forward(params, x, activation="relu"):
    """The network's scores computed in NumPy float64 from the same parameters."""
    act = {
        "relu": lambda a: np.maximum(a, 0),
        "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
        "tanh": np.tanh,
    }[activation]
    n_layers = len(params) // 2
    h = x.reshape(x.shape[0], -1).astype("float64")
    for i in range(1, n_layers + 1):
        h = h @ to_numpy(params[f"W{i}"]).astype("float64") + to_numpy(params[f"b{i}"])
        if i < n_layers:
            h = act(h)
    return h


def test_two_layer_net_structure(backend, dtype):
    net = TwoLayerNet(10, 7, 4, seed=0, dtype=dtype, **backend.net_kwargs())
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert type(net.last_layer).__name__ == "SoftmaxWithLoss"
    xp = backend.xp
    shapes = {"W1": (10, 7), "b1": (7,), "W2": (7, 4), "b2": (4,)}
    for key, value in net.params.items():
        assert value.shape == shapes[key]
        assert value.dtype == getattr(xp, dtype)
        assert net.xp is xp
    # The layers hold the very arrays in params.
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.layers["Affine2"].b is net.params["b2"]
    assert net.backend == backend.name
    assert "TwoLayerNet(input_size=10, hidden_size=7, output_size=4" in repr(net)


def test_multi_layer_net_structure(backend):
    net = MultiLayerNet(10, [8, 6, 5], 4, activation="sigmoid", seed=0, **backend.net_kwargs())
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    assert list(net.layers) == [
        "Affine1",
        "Activation_function1",
        "Affine2",
        "Activation_function2",
        "Affine3",
        "Activation_function3",
        "Affine4",
    ]
    assert type(net.layers["Activation_function2"]).__name__ == "Sigmoid"
    plain = MultiLayerNet(10, [], 4, seed=0, **backend.net_kwargs())  # softmax regression
    assert list(plain.layers) == ["Affine1"]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_predict_loss_accuracy_match_host_math(backend, rng, activation):
    net = MultiLayerNet(
        10,
        [8, 6],
        4,
        activation=activation,
        weight_decay_lambda=0.3,
        dtype="float64",
        seed=1,
        **backend.net_kwargs(),
    )
    x, t, t_host = _batch(backend, rng)
    x_host = to_numpy(x)
    scores = _host_forward(net.params, x_host, activation)
    assert_close(net.predict(x), scores, rtol=1e-12, atol=1e-12, xp=backend.xp)

    log_p = (
        scores
        - np.log(np.sum(np.exp(scores - scores.max(1, keepdims=True)), axis=1, keepdims=True))
        - scores.max(1, keepdims=True)
    )
    decay = 0.5 * 0.3 * sum(np.sum(to_numpy(net.params[f"W{i}"]) ** 2) for i in (1, 2, 3))
    loss = net.loss(x, t)
    assert loss.ndim == 0  # a 0-d array of the backend: no host sync
    assert_close(loss, -np.mean(log_p[np.arange(6), t_host]) + decay, rtol=1e-12, xp=backend.xp)

    acc = net.accuracy(x, t)
    assert isinstance(acc, float)
    assert acc == pytest.approx(np.mean(scores.argmax(1) == t_host))


def test_one_hot_and_integer_labels_agree(backend, rng):
    net = TwoLayerNet(10, 7, 4, seed=2, dtype="float64", **backend.net_kwargs())
    x, t, t_host = _batch(backend, rng)
    t_one_hot = backend.asarray(np.eye(4)[t_host])
    assert float(net.loss(x, t)) == pytest.approx(float(net.loss(x, t_one_hot)), rel=1e-14)
    assert net.accuracy(x, t) == net.accuracy(x, t_one_hot)
    g_int, g_hot = net.gradient(x, t), net.gradient(x, t_one_hot)
    for key in g_int:
        assert_close(g_int[key], g_hot[key], rtol=1e-12, atol=1e-15)


def test_weight_decay_adds_to_loss_and_gradient(backend, rng):
    kwargs = dict(seed=3, dtype="float64", **backend.net_kwargs())
    plain = MultiLayerNet(10, [8], 4, **kwargs)
    decayed = MultiLayerNet(10, [8], 4, weight_decay_lambda=0.1, **kwargs)
    x, t, _ = _batch(backend, rng)
    W1, W2 = to_numpy(plain.params["W1"]), to_numpy(plain.params["W2"])
    penalty = 0.05 * (np.sum(W1**2) + np.sum(W2**2))
    assert float(decayed.loss(x, t)) == pytest.approx(float(plain.loss(x, t)) + penalty, rel=1e-13)
    g_plain, g_decayed = plain.gradient(x, t), decayed.gradient(x, t)
    assert_close(g_decayed["W1"], to_numpy(g_plain["W1"]) + 0.1 * W1, rtol=1e-12, atol=1e-15)
    assert_close(g_decayed["b1"], g_plain["b1"], rtol=0)


def test_inputs_of_any_numeric_dtype_are_cast(backend, rng):
    net = TwoLayerNet(12, 5, 3, seed=0, **backend.net_kwargs())
    raw = rng.integers(0, 256, (4, 12)).astype(np.uint8)  # images with normalize=False
    as_float = net.predict(backend.asarray(raw.astype("float32")))
    for dtype in ["uint8", "int32", "int64", "float64"]:
        out = net.predict(backend.asarray(raw.astype(dtype)))
        assert_close(out, as_float, rtol=1e-6, dtype=net.dtype)


def test_multidimensional_inputs_are_flattened(backend, rng):
    net = TwoLayerNet(12, 5, 3, seed=0, dtype="float64", **backend.net_kwargs())
    images = rng.standard_normal((4, 1, 3, 4))
    flat = images.reshape(4, 12)
    assert_close(
        net.predict(backend.asarray(images)), net.predict(backend.asarray(flat)), rtol=1e-14
    )
    grads = net.gradient(backend.asarray(images), backend.asarray([0, 1, 2, 0]))
    assert grads["W1"].shape == (12, 5)


def test_numerical_gradient_agrees_with_gradient(backend, dtype, rng):
    net = MultiLayerNet(
        6, [5], 3, activation="sigmoid", dtype=dtype, seed=4, **backend.net_kwargs()
    )
    x = backend.asarray(rng.standard_normal((4, 6)))
    t = backend.asarray([0, 2, 1, 2])
    analytic, numeric = net.gradient(x, t), net.numerical_gradient(x, t)
    assert list(numeric) == list(net.params)
    for key in analytic:
        assert numeric[key].dtype == net.dtype
        scale = float(np.max(np.abs(to_numpy(analytic[key]))))
        assert_close(
            numeric[key], analytic[key], rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=key
        )


def test_assigning_params_rebinds_the_layers(backend, rng):
    net = TwoLayerNet(10, 7, 4, seed=5, **backend.net_kwargs())
    x, _, _ = _batch(backend, rng)
    xp = backend.param_xp
    new_W2 = xp.zeros_like(net.params["W2"])
    net.params["W2"] = new_W2
    assert net.layers["Affine2"].W is new_W2
    # With W2 = 0 every score is b2.
    assert_close(net.predict(x), np.broadcast_to(to_numpy(net.params["b2"]), (6, 4)), rtol=0)
    net.params.update({"b2": xp.ones_like(net.params["b2"])})
    assert_close(net.predict(x), np.ones((6, 4)), rtol=0)


def test_functional_sgd_steps_reduce_the_loss(backend, rng):
    # The update every backend supports (immutable ones included): params[key] = new array.
    net = MultiLayerNet(10, [16], 4, seed=6, **backend.net_kwargs())
    x, t, _ = _batch(backend, rng, n=32)
    first = float(net.loss(x, t))
    for _ in range(30):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] = net.params[key] - 0.5 * grads[key]
    assert float(net.loss(x, t)) < 0.5 * first


def test_book_style_in_place_update_is_seen_by_the_layers(rng):
    # The book's optimizers do params[key] -= lr * grads[key] on NumPy arrays.
    net = TwoLayerNet(10, 7, 4, seed=7, backend="numpy")
    x, t = rng.standard_normal((8, 10)).astype("float32"), rng.integers(0, 4, 8)
    first = float(net.loss(x, t))
    for _ in range(20):
        grads = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grads[key]
    assert net.layers["Affine1"].W is net.params["W1"]
    assert float(net.loss(x, t)) < first


def test_entry_points_do_not_change_params_or_inputs(backend, rng):
    net = TwoLayerNet(10, 7, 4, seed=8, **backend.net_kwargs())
    x, t, t_host = _batch(backend, rng)
    x_host = to_numpy(x).copy()
    objects = dict(net.params)
    values = {k: to_numpy(v).copy() for k, v in net.params.items()}
    net.predict(x)
    net.loss(x, t)
    net.accuracy(x, t)
    net.gradient(x, t)
    net.numerical_gradient(x, t)
    for key in net.params:
        assert net.params[key] is objects[key]
        assert (
            net.layers["Affine1" if key.endswith("1") else "Affine2"].__dict__[key[0]]
            is objects[key]
        )
        np.testing.assert_array_equal(to_numpy(net.params[key]), values[key])
    np.testing.assert_array_equal(to_numpy(x), x_host)
    np.testing.assert_array_equal(to_numpy(t), t_host)


def test_summary_lists_layers_shapes_and_parameters(backend):
    from bpcore import MultiLayerNetExtend

    net = MultiLayerNetExtend(
        12, [7, 5], 3, use_dropout=True, use_batchnorm=True, seed=0, **backend.net_kwargs()
    )
    before = {name: dict(vars(layer)) for name, layer in net.layers.items()}
    text = net.summary()
    assert repr(text) == str(text)  # a notebook shows the table, not an escaped string
    lines = text.splitlines()
    assert lines[0] == "MultiLayerNetExtend"
    rows = {line.split()[0]: line for line in lines if line.split()[0] in net.layers}
    assert list(rows) == list(net.layers)
    assert "(N, 7)" in rows["Affine1"] and rows["Affine1"].endswith(f"{12 * 7 + 7:,}")
    assert "(N, 5)" in rows["BatchNorm2"] and rows["BatchNorm2"].endswith(f"{2 * 5:,}")
    assert "(N, 3)" in rows["Affine3"] and rows["Affine3"].endswith(f"{5 * 3 + 3:,}")
    total = sum(int(np.prod(p.shape)) for p in net.params.values())
    assert f"Total params: {total:,}" in text
    assert f"backend: {net.backend}" in text and "dtype: float32" in text
    for name, layer in net.layers.items():  # nothing of the sample pass is left behind
        assert set(vars(layer)) == set(before[name])
        for key, value in vars(layer).items():
            assert value is before[name][key], (name, key)
