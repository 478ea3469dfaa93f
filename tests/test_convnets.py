"""The book's chapter 6 to 8 networks: checks, modes, bad input, persistence, the book's calls.

``MultiLayerNetExtend`` is here too: like the convolutional nets it has layers that behave
differently in training (dropout, batch normalization) and buffers (running statistics).
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

import bpcore
from bpcore import (
    DeepConvNet,
    MultiLayerNetExtend,
    SimpleConvNet,
    directional_gradient_check,
    gradient_check,
    to_numpy,
)
from bpcore.testing import assert_close

# Every model here is float64, as in test_torch_oracle: JAX compiles each operation once per
# shape and dtype, in the one worker that runs the JAX cases, so equal shapes share compiles
# (a float32 DeepConvNet would cost another 18 s of compiling).


def _simple(backend, **kwargs):
    kwargs.setdefault("dtype", "float64")
    conv = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 2}
    return SimpleConvNet(
        (2, 9, 8),
        conv,
        hidden_size=5,
        output_size=3,
        weight_init_std=0.3,
        seed=1,
        **kwargs,
        **backend.net_kwargs(),
    )


def _deep(backend, **kwargs):
    kwargs.setdefault("dtype", "float64")
    convs = [(2, 1), (2, 1), (3, 1), (3, 2), (2, 1), (2, 1)]
    params = {
        f"conv_param_{i}": {"filter_num": fn, "filter_size": 3, "pad": pad, "stride": 1}
        for i, (fn, pad) in enumerate(convs, start=1)
    }
    return DeepConvNet(
        (2, 8, 7),
        **params,
        hidden_size=6,
        output_size=3,
        seed=2,
        **kwargs,
        **backend.net_kwargs(),
    )


def _extend(backend, **kwargs):
    options = {"use_dropout": True, "dropout_ration": 0.3, "use_batchnorm": True}
    options.update(kwargs)
    return MultiLayerNetExtend(
        6,
        [5, 4],
        3,
        weight_decay_lambda=0.01,
        seed=3,
        dtype="float64",
        **options,
        **backend.net_kwargs(),
    )


def _batch(backend, net, rng, n=4):
    x = rng.standard_normal((n, *net.input_shape))
    t = rng.integers(0, net.output_size, n)
    return backend.asarray(x), backend.asarray(t)


MODELS = {"simple": _simple, "deep": _deep, "extend": _extend}


def _off_the_kinks(backend, net, rng):
    """Small random biases: with the initial zeros, a window of padding or a dead feature map
    puts a ReLU's input exactly at 0, where a central difference reads 1/2 and backprop 0."""
    for key, value in net.params.items():
        if key.startswith("b"):
            net.params[key] = backend.resolve().param_asarray(
                0.1 * rng.standard_normal(value.shape).astype(net.dtype_name)
            )
    return net


@pytest.mark.parametrize("model", list(MODELS))
def test_gradient_checks_pass(backend, rng, model):
    # Elementwise and directional, in float64: dropout masks held fixed, batch normalization
    # in training mode; the check leaves parameters and running statistics as they were.
    net = _off_the_kinks(backend, MODELS[model](backend), rng)
    x, t = _batch(backend, net, rng)
    params = {k: to_numpy(v).copy() for k, v in net.params.items()}
    buffers = {k: to_numpy(v).copy() for k, v in net.buffers.items()}
    check = gradient_check(net, x, t)
    assert check.passed, check
    assert sorted(check) == sorted(net.params)
    if model == "extend":  # held masks and training mode: the case a directional check can miss
        directional = directional_gradient_check(net, x, t, seed=0)
        assert directional.passed, directional
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), params[key], err_msg=key)
    for key, value in net.buffers.items():
        np.testing.assert_array_equal(to_numpy(value), buffers[key], err_msg=key)


def test_gradient_check_catches_a_wrong_convolution(backend, rng, monkeypatch):
    from bpcore.layers import Convolution

    net = _simple(backend)
    x, t = _batch(backend, net, rng)
    original = Convolution.backward_params

    def halved(self, dout):
        original(self, dout)
        self.dW = self.dW * 0.5

    monkeypatch.setattr(Convolution, "backward_params", halved)
    check = gradient_check(net, x, t)
    assert not check.passed and check["W1"] > 0.1 and check["W2"] < 1e-5


@pytest.mark.integration  # the script's calls; test_gradient_checks_pass covers every backend
def test_book_ch07_gradient_check_calls(backend):
    # ch07/gradient_check.py: one random 10x10 image, a (1, 1) column label, then the book's
    # mean |numerical - backprop| per parameter.
    net = SimpleConvNet(
        input_dim=(1, 10, 10),
        conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=10,
        output_size=10,
        weight_init_std=0.01,
        seed=0,
        **backend.net_kwargs(),
    )
    X = backend.asarray(np.random.default_rng(0).random(100).reshape((1, 1, 10, 10)))
    T = backend.asarray(np.array([1]).reshape((1, 1)))
    grad_num = net.numerical_gradient(X, T)
    grad = net.gradient(X, T)
    for key in grad_num:
        diff = float(np.abs(to_numpy(grad_num[key]) - to_numpy(grad[key])).mean())
        scale = float(np.abs(to_numpy(grad_num[key])).max())
        assert diff <= 1e-3 * scale + 1e-9, key


def test_book_batch_norm_gradient_check_calls(backend, rng):
    # ch06/batch_norm_gradient_check.py: one-hot samples through [100, 100] hidden layers with
    # batch normalization; here narrower, the same calls, and two samples where the book has
    # one: a batch of one normalizes every feature to exactly beta, 0 at first, ReLU's kink.
    net = MultiLayerNetExtend(
        dtype="float64",
        input_size=20,
        hidden_size_list=[8, 8],
        output_size=10,
        use_batchnorm=True,
        seed=0,
        **backend.net_kwargs(),
    )
    x_batch = backend.asarray(rng.random((2, 20)))
    t_batch = backend.asarray(np.eye(10)[[3, 8]])
    grad_backprop = net.gradient(x_batch, t_batch)
    grad_numerical = net.numerical_gradient(x_batch, t_batch)
    assert sorted(grad_numerical) == sorted(net.params)
    for key in grad_numerical:
        diff = float(
            np.average(np.abs(to_numpy(grad_backprop[key]) - to_numpy(grad_numerical[key])))
        )
        assert diff < 1e-3, key


def test_modes_and_running_statistics(backend, rng):
    net = _extend(backend, use_dropout=False)
    x, t = _batch(backend, net, rng, n=6)
    before = {k: to_numpy(v).copy() for k, v in net.buffers.items()}
    inference = to_numpy(net.predict(x))
    assert {k: to_numpy(v).tolist() for k, v in net.buffers.items()} == {
        k: v.tolist() for k, v in before.items()
    }
    net.predict(x, train_flg=True)
    moved = [k for k, v in net.buffers.items() if not np.array_equal(to_numpy(v), before[k])]
    assert sorted(moved) == sorted(net.buffers)
    # The running mean moved by (1 - momentum) towards the batch's mean.
    h = to_numpy(x) @ to_numpy(net.params["W1"]) + to_numpy(net.params["b1"])
    assert_close(net.buffers["BatchNorm1/running_mean"], 0.1 * h.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(to_numpy(net.predict(x)), inference)
    # The loss of the book's gradient is the training-mode loss.
    net.gradient(x, t)
    assert float(net.last_loss) == pytest.approx(float(net.loss(x, t, train_flg=True)), rel=1e-5)


def test_dropout_masks_follow_the_networks_seed(backend, rng):
    a, b = _extend(backend, use_batchnorm=False), _extend(backend, use_batchnorm=False)
    x, t = _batch(backend, a, rng, n=6)
    a.gradient(x, t)
    b.gradient(x, t)
    for name in ("Dropout1", "Dropout2"):
        mask_a, mask_b = to_numpy(a.layers[name].mask), to_numpy(b.layers[name].mask)
        np.testing.assert_array_equal(mask_a, mask_b)
    first = to_numpy(a.layers["Dropout1"].mask).copy()
    a.gradient(x, t)  # a fresh mask each step (30 elements: equal by chance with p < 1e-4)
    assert not np.array_equal(to_numpy(a.layers["Dropout1"].mask), first)
    # Inference is deterministic: no mask, the book's scaling.
    np.testing.assert_array_equal(to_numpy(a.predict(x)), to_numpy(a.predict(x)))


@pytest.mark.parametrize("model", ["simple", "deep"])
def test_conv_nets_want_images(backend, rng, model):
    net = MODELS[model](backend)
    c, h, w = net.input_shape
    params = {k: to_numpy(v).copy() for k, v in net.params.items()}
    flat = backend.asarray(rng.standard_normal((2, c * h * w)))
    with pytest.raises(ValueError, match=rf"shape \(N, {c}, {h}, {w}\).*flatten=False"):
        net.predict(flat)
    wrong = backend.asarray(rng.standard_normal((2, c, w, h)))
    with pytest.raises(ValueError, match=rf"\(N, {c}, {h}, {w}\)"):
        net.gradient(wrong, backend.asarray(np.array([0, 1])))
    # The other tests' batch of 4: on JAX, the programs they compiled for its shapes serve here.
    x, _ = _batch(backend, net, rng)
    bad = backend.asarray(np.array([0, 7, 1, 2]))
    if net.backend_info.reads_values_freely or net.backend_info.is_lazy:
        with pytest.raises(ValueError, match="labels from 0 to 7"):
            net.gradient(x, bad)
    else:  # labels not read at every call (it would wait for the device): NaN, not a number
        assert all(np.all(np.isnan(to_numpy(g))) for g in net.gradient(x, bad).values())
    with pytest.raises(ValueError, match="labels from 0 to 7"):
        net.accuracy(x, bad)
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), params[key], err_msg=key)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SimpleConvNet((1, 28)), "input_dim must be"),
        (lambda: SimpleConvNet(conv_param={"filter_num": 3}), "missing"),
        (
            lambda: SimpleConvNet(
                (1, 4, 4), {"filter_num": 2, "filter_size": 5, "pad": 0, "stride": 1}
            ),
            "does not fit",
        ),
        (
            lambda: SimpleConvNet(
                conv_param={"filter_num": 2, "filter_size": 3, "pad": -1, "stride": 1}
            ),
            "pad",
        ),
        (lambda: DeepConvNet((1, 2, 2)), "pooling needs at least 2x2"),
        (
            lambda: MultiLayerNetExtend(4, [3], 2, use_dropout=True, dropout_ration=1.0),
            "dropout_ratio",
        ),
    ],
)
def test_bad_architectures_are_named(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_accuracy_counts_every_sample_in_batches(backend, rng):
    net = _extend(backend)
    x, t = _batch(backend, net, rng, n=4)
    whole = net.accuracy(x, t, batch_size=None)
    assert net.accuracy(x, t, batch_size=3) == whole == net.accuracy(x, t)
    predicted = np.argmax(to_numpy(net.predict(x)), axis=1)
    assert whole == pytest.approx(float(np.mean(predicted == to_numpy(t))))
    # The book's conv nets evaluate 100 samples at a time by default.
    assert inspect.signature(SimpleConvNet.accuracy).parameters["batch_size"].default == 100
    assert inspect.signature(DeepConvNet.accuracy).parameters["batch_size"].default == 100


@pytest.mark.parametrize("model", list(MODELS))
def test_save_params_and_load_params(backend, rng, tmp_path, model):
    net = MODELS[model](backend)
    x, t = _batch(backend, net, rng)
    if net.buffers:
        net.gradient(x, t)  # running statistics move away from their initial values
    path = tmp_path / "params.pkl"  # the book's name; the content is a bpcore checkpoint
    net.save_params(str(path))
    with open(path, "rb") as f:
        assert f.read(2) == b"PK"  # a zip archive (.npz), not a pickle
    other = MODELS[model](backend)
    if other.buffers:
        other.gradient(*_batch(backend, net, rng))
    other.params["b1"] = other.params["b1"] + 1.0
    other.load_params(str(path))
    for key in net.params:
        np.testing.assert_array_equal(to_numpy(other.params[key]), to_numpy(net.params[key]))
    for key in net.buffers:
        np.testing.assert_array_equal(to_numpy(other.buffers[key]), to_numpy(net.buffers[key]))
    assert_close(other.predict(x), to_numpy(net.predict(x)), rtol=0)
    loaded = bpcore.load(path, backend=backend.name, device=backend.device)
    assert type(loaded) is type(net) and loaded.config == net.config
    assert_close(loaded.predict(x), to_numpy(net.predict(x)), rtol=0)


def test_load_params_takes_only_what_fits_and_changes_nothing(tmp_path):
    # A pickle of arrays (the book's weights) or a checkpoint, of this network only.
    net = SimpleConvNet((1, 8, 8), hidden_size=4, seed=0)
    other = SimpleConvNet((1, 8, 8), hidden_size=5, seed=0)
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps({k: to_numpy(v) for k, v in other.params.items()}))
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match=r"params.pkl: parameter W2 has shape \(120, 5\)"):
        net.load_params(str(path))
    other_path = other.save_params(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="does not match"):
        net.load_params(other_path)
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), before[key])


def test_same_seed_same_weights_on_every_backend(backend):
    host = DeepConvNet((1, 12, 12), seed=5)
    here = DeepConvNet((1, 12, 12), seed=5, **backend.net_kwargs())
    for key, value in host.params.items():
        np.testing.assert_array_equal(to_numpy(here.params[key]), to_numpy(value))
    # The book's He scales, from its hard-coded fan-ins for these layer sizes.
    stds = {k: float(np.std(to_numpy(v))) for k, v in DeepConvNet(seed=0).params.items()}
    assert stds["W6"] == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)
    assert stds["W7"] == pytest.approx(np.sqrt(2 / (64 * 4 * 4)), rel=0.05)


def test_book_layer_order_of_deep_conv_net():
    net = DeepConvNet(seed=0)
    layers = list(net.layers.values())
    # The book reads W and b from its list's layers 0, 2, 5, 7, 10, 12, 15, 18.
    for i, index in enumerate((0, 2, 5, 7, 10, 12, 15, 18), start=1):
        assert layers[index].W is net.params[f"W{i}"]
    assert [type(layer).__name__ for layer in layers[15:]] == [
        "Affine",
        "Relu",
        "Dropout",
        "Affine",
        "Dropout",
    ]
