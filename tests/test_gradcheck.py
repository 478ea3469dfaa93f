"""Whole-network gradient checks, element-wise and directional, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, TwoLayerNet, to_numpy
from bpcore.gradcheck import STEP, TOLERANCE


def _data(backend, rng, n=5, features=8, classes=4):
    x = backend.asarray(rng.standard_normal((n, features)))
    t = backend.asarray(rng.integers(0, classes, n))
    return x, t


def test_two_layer_net_gradient_check(backend, dtype, rng):
    net = TwoLayerNet(8, 6, 4, weight_init_std="he", dtype=dtype, seed=10, **backend.net_kwargs())
    check = bpcore.gradient_check(net, *_data(backend, rng))
    assert check.dtype == "float64"  # promoted for float32 networks too
    assert sorted(check) == ["W1", "W2", "b1", "b2"]
    assert check.passed, check
    assert max(check.values()) <= TOLERANCE["float64"]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.1])
def test_multi_layer_net_gradient_check(backend, dtype, rng, activation, weight_decay_lambda):
    # Hidden layers wide enough that no sample has every unit of a layer dead: that would put the
    # next layer's pre-activations exactly on the ReLU kink (biases start at 0), where the
    # central difference sees half a slope and backprop, as in the book, takes 0.
    net = MultiLayerNet(
        8,
        [12, 10],
        4,
        activation=activation,
        weight_decay_lambda=weight_decay_lambda,
        dtype=dtype,
        seed=11,
        **backend.net_kwargs(),
    )
    check = bpcore.gradient_check(net, *_data(backend, rng))
    assert len(check) == 6
    assert check.passed, check


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_directional_gradient_check(backend, rng, activation):
    net = MultiLayerNet(
        30,
        [40, 20],
        10,
        activation=activation,
        weight_decay_lambda=0.05,
        seed=12,
        **backend.net_kwargs(),
    )
    x, t = _data(backend, rng, n=16, features=30, classes=10)
    check = bpcore.directional_gradient_check(net, x, t, seed=0)
    assert check.method == "directional"
    assert len(check) == 6
    assert check.passed, check


def test_checks_catch_a_wrong_gradient(backend, rng, monkeypatch):
    # A check that cannot fail proves nothing: break Sigmoid.backward and watch both checks fail.
    net = MultiLayerNet(8, [6], 4, activation="sigmoid", seed=13, **backend.net_kwargs())
    x, t = _data(backend, rng)
    assert bpcore.gradient_check(net, x, t).passed
    monkeypatch.setattr(
        bpcore.layers.Sigmoid, "backward", lambda self, dout: dout * self.out
    )  # drops the (1 - out) factor
    check = bpcore.gradient_check(net, x, t)
    assert not check.passed
    assert check["b2"] <= TOLERANCE["float64"]  # the last layer does not go through Sigmoid
    assert check["W1"] > 0.1
    assert not bpcore.directional_gradient_check(net, x, t, seed=1).passed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checks_see_a_layer_swapped_into_the_network(backend, rng, dtype):
    # A float32 network is checked on a float64 twin: the twin must keep the user's layers, or
    # a broken layer swapped in by hand would be checked as the stock one and pass.
    class ForgetfulRelu(bpcore.layers.Relu):
        def backward(self, dout):
            return dout  # inactive units pass their gradient on

    net = TwoLayerNet(8, 6, 4, dtype=dtype, seed=13, **backend.net_kwargs())
    x, t = _data(backend, rng)
    assert bpcore.gradient_check(net, x, t).passed
    net.layers["Relu1"] = ForgetfulRelu()
    check = bpcore.gradient_check(net, x, t)
    assert check["W1"] > 0.1 and check["W2"] <= TOLERANCE["float64"]
    assert not bpcore.directional_gradient_check(net, x, t, seed=1).passed


def test_checks_see_an_affine_subclass_and_refuse_an_unbound_affine(backend, rng):
    class HalfAffine(bpcore.layers.Affine):
        def backward_params(self, dout):  # the bug: half the weight gradient
            super().backward_params(dout)
            self.dW = self.dW * 0.5

    net = TwoLayerNet(8, 6, 4, seed=13, **backend.net_kwargs())  # float32: checked on a twin
    x, t = _data(backend, rng)
    net.layers["Affine1"].__class__ = HalfAffine  # the bound layer, its class swapped
    check = bpcore.gradient_check(net, x, t)
    assert check["W1"] > 0.1 and check["b1"] <= TOLERANCE["float64"] and check["W2"] <= 1e-5

    snapshot = {k: to_numpy(v).copy() for k, v in net.params.items()}
    net.layers["Affine2"] = bpcore.layers.Affine(net.params["W2"], net.params["b2"])
    with pytest.raises(ValueError, match=r"params\['W2'\] belongs to a layer that is no longer"):
        net.gradient(x, t)
    with pytest.raises(ValueError, match=r"no longer in net\.layers"):
        bpcore.gradient_check(net, x, t)
    for key, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value), snapshot[key])


def test_a_jax_layer_that_cannot_be_traced_is_checked_eagerly(rng):
    pytest.importorskip("jax")

    class PickySoftmax(bpcore.layers.SoftmaxWithLoss):
        def forward(self, x, t):
            if not bool(x.shape[0] > 0 and (x == x).all()):  # a decision on values: untraceable
                raise ValueError("NaN scores")
            return super().forward(x, t)

    from bpcore.testing import BackendCase

    case = BackendCase("jax", "cpu")
    net = TwoLayerNet(5, 4, 3, seed=1, dtype="float64", **case.net_kwargs())
    net.last_layer = PickySoftmax()
    x, t = case.asarray(rng.standard_normal((4, 5))), case.asarray([0, 1, 2, 1])
    assert bpcore.gradient_check(net, x, t).passed
    import jax

    for layer in [*net.layers.values(), net.last_layer]:  # no tracer left behind
        for value in vars(layer).values():
            assert not isinstance(value, jax.core.Tracer)
    net.last_layer.backward(1)


def test_check_leaves_the_network_unchanged(backend, rng):
    for dtype in ("float32", "float64"):
        net = TwoLayerNet(8, 6, 4, dtype=dtype, seed=14, **backend.net_kwargs())
        objects = dict(net.params)
        values = {k: to_numpy(v).copy() for k, v in objects.items()}
        x, t = _data(backend, rng)
        bpcore.gradient_check(net, x, t)
        bpcore.directional_gradient_check(net, x, t, seed=0)
        for key, value in net.params.items():
            assert value is objects[key]
            np.testing.assert_array_equal(to_numpy(value), values[key])
        assert net.layers["Affine1"].W is objects["W1"]


def test_float32_fallback_where_the_device_has_no_float64(rng):
    # array-api-strict offers a device without float64, as some GPUs and TPUs are.
    net = MultiLayerNet(
        8, [6], 4, activation="tanh", seed=15, backend="array_api_strict", device="no_float64"
    )
    A = net.backend_info.asarray
    x, t = A(rng.standard_normal((5, 8)).astype("float32")), A(rng.integers(0, 4, 5))
    check = bpcore.gradient_check(net, x, t)
    assert check.dtype == "float32"
    assert check.tolerance == TOLERANCE["float32"] > TOLERANCE["float64"]
    assert check.h == STEP["float32"]
    assert check.passed, check
    grads = net.numerical_gradient(x, t)
    assert grads["W1"].dtype == net.dtype


def test_gradient_check_result_repr_and_tolerance_override(rng):
    net = TwoLayerNet(4, 3, 2, backend="numpy", seed=0)
    x, t = rng.standard_normal((2, 4)), np.array([0, 1])
    check = bpcore.gradient_check(net, x, t, tolerance=-1.0)
    assert not check.passed
    assert "GradientCheck({W1: " in repr(check)
    assert "method='elementwise'" in repr(check)


def test_nan_gradients_fail_the_checks(backend, rng, monkeypatch):
    net = MultiLayerNet(8, [6], 4, activation="sigmoid", seed=16, **backend.net_kwargs())
    x, t = _data(backend, rng)
    monkeypatch.setattr(bpcore.layers.Sigmoid, "backward", lambda self, dout: dout * np.nan)
    check = bpcore.gradient_check(net, x, t)
    assert check["W1"] == float("inf")
    assert not check.passed
    assert not bpcore.directional_gradient_check(net, x, t, seed=0).passed


def test_immutable_arrays_take_the_functional_path(rng):
    # JAX arrays cannot be written to; the central difference then builds each perturbed copy
    # with where. On NumPy arrays that are really read-only, expect the in-place path's result.
    from bpcore.testing import BackendCase, ReadOnlyNumPyBackend

    readonly = ReadOnlyNumPyBackend.create()
    net = TwoLayerNet(5, 4, 3, dtype="float64", seed=17, backend=readonly)
    reference = TwoLayerNet(5, 4, 3, dtype="float64", seed=17, backend="numpy")
    x_host, t_host = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    assert not net.params["W1"].flags.writeable
    functional = net.numerical_gradient(readonly.asarray(x_host), readonly.asarray(t_host))
    in_place = reference.numerical_gradient(x_host, t_host)
    for key in in_place:
        np.testing.assert_allclose(functional[key], in_place[key], rtol=1e-12, atol=1e-15)
    assert not net.params["W1"].flags.writeable  # the network's own arrays, untouched
    assert bpcore.gradient_check(net, readonly.asarray(x_host), readonly.asarray(t_host)).passed
    assert BackendCase("numpy", "cpu").resolve().writes_in_place(reference.params["W1"])


def test_jax_differences_are_vectorized(rng):
    # No Python loop over elements on JAX: the loss function is traced a few times, then runs
    # compiled over batches of elements, whatever the parameter's size.
    pytest.importorskip("jax")
    from bpcore.testing import BackendCase

    jax_backend = BackendCase("jax", "cpu").resolve()
    xp = jax_backend.xp
    x = xp.asarray(rng.standard_normal((40, 30)))
    calls = []

    def f(a):
        calls.append(1)
        return xp.sum(xp.sin(a) * a)

    grad = jax_backend.central_difference(f, x, 1e-5)
    assert len(calls) <= 5  # a trace for the batches, one for the rest, one eager: not 2 * 1200
    expected = np.sin(to_numpy(x)) + to_numpy(x) * np.cos(to_numpy(x))
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-6, atol=1e-8)


def test_the_0_1_0_numerical_gradient_function_is_the_networks(rng):
    from bpcore.gradcheck import network_numerical_gradient

    net = TwoLayerNet(5, 4, 3, seed=2)
    x, t = rng.standard_normal((3, 5)), np.array([0, 2, 1])
    expected = net.numerical_gradient(x, t)
    for key, value in network_numerical_gradient(net, x, t).items():
        np.testing.assert_array_equal(value, expected[key])
