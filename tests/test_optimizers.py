"""The optimizers against the book's update rules, on every backend, in place or not."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from bpcore import MultiLayerNet, to_numpy
from bpcore.optimizers import OPTIMIZERS, SGD, Adam, Momentum

KWARGS = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.8},
    "nesterov": {"lr": 0.1, "momentum": 0.8},
    "adagrad": {"lr": 0.1},
    "rmsprop": {"lr": 0.01, "decay_rate": 0.9},
    "adam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99},
}


def _book_steps(name, kw, params, grads_per_step):
    """The book's common/optimizer.py rules, written out in NumPy float64."""
    p = {k: v.copy() for k, v in params.items()}
    state = {k: np.zeros_like(v) for k, v in p.items()}
    state2 = {k: np.zeros_like(v) for k, v in p.items()}
    for it, grads in enumerate(grads_per_step, start=1):
        for k in p:
            g = grads[k]
            if name == "sgd":
                p[k] -= kw["lr"] * g
            elif name == "momentum":
                state[k] = kw["momentum"] * state[k] - kw["lr"] * g
                p[k] += state[k]
            elif name == "nesterov":  # the parameter moves with the velocity of the last step
                m = kw["momentum"]
                p[k] += m * m * state[k]
                p[k] -= (1 + m) * kw["lr"] * g
                state[k] *= m
                state[k] -= kw["lr"] * g
            elif name == "adagrad":
                state[k] += g * g
                p[k] -= kw["lr"] * g / (np.sqrt(state[k]) + 1e-7)
            elif name == "rmsprop":
                d = kw["decay_rate"]
                state[k] = d * state[k] + (1 - d) * g * g
                p[k] -= kw["lr"] * g / (np.sqrt(state[k]) + 1e-7)
            elif name == "adam":
                b1, b2 = kw["beta1"], kw["beta2"]
                lr_t = kw["lr"] * np.sqrt(1 - b2**it) / (1 - b1**it)
                state[k] += (1 - b1) * (g - state[k])
                state2[k] += (1 - b2) * (g * g - state2[k])
                p[k] -= lr_t * state[k] / (np.sqrt(state2[k]) + 1e-7)
    return p


def _readonly_case():
    """The fixture's interface over `ReadOnlyNumPyBackend`: arrays that cannot be written."""
    from bpcore.testing import ReadOnlyNumPyBackend

    readonly = ReadOnlyNumPyBackend.create()

    class Case:
        asarray = staticmethod(lambda host: readonly.asarray(np.asarray(host)))

        @staticmethod
        def net_kwargs():
            return {"backend": readonly}

    return Case()


def test_nesterov_moves_as_the_books(backend):
    # W = 1, gradient 1, lr 0.1, momentum 0.9: the book's common/optimizer.py moves W by -0.19
    # (no velocity yet), then by 0.81 * -0.1 - 0.19 = -0.271.
    from bpcore.optimizers import Nesterov

    params = {"W": backend.asarray(np.ones(1), "float64")}
    grads = {"W": backend.asarray(np.ones(1), "float64")}
    optimizer = Nesterov(lr=0.1, momentum=0.9)
    optimizer.update(params, grads)
    np.testing.assert_allclose(to_numpy(params["W"]), [1 - 0.19], rtol=1e-12)
    optimizer.update(params, grads)
    np.testing.assert_allclose(to_numpy(params["W"]), [1 - 0.19 - 0.271], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_follow_the_book(backend, name):
    _check_updates_follow_the_book(backend, name)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_follow_the_book_on_immutable_arrays(name):
    # As on JAX: arrays cannot be written, so each step assigns new arrays.
    _check_updates_follow_the_book(_readonly_case(), name)


def _check_updates_follow_the_book(backend, name):
    net = MultiLayerNet(5, [4], 3, dtype="float64", seed=0, **backend.net_kwargs())
    # Updated in place where the library allows it (not JAX, nor read-only NumPy arrays).
    writes = array_api_compat.is_writeable_array(net.params["W1"])
    rng = np.random.default_rng(1)
    host_grads = [  # many steps: a rule that differs in its order drifts away
        {k: rng.standard_normal(v.shape) for k, v in net.params.items()} for _ in range(100)
    ]
    start = {k: to_numpy(v).copy() for k, v in net.params.items()}
    objects = dict(net.params)
    optimizer = OPTIMIZERS[name](**KWARGS[name])
    for grads in host_grads:
        optimizer.update(net.params, {k: backend.asarray(g) for k, g in grads.items()})
    expected = _book_steps(name, KWARGS[name], start, host_grads)
    for key, value in net.params.items():
        np.testing.assert_allclose(to_numpy(value), expected[key], rtol=1e-10, atol=1e-12)
        assert (value is objects[key]) == writes
        layer = net.layers[f"Affine{key[1]}"]
        assert getattr(layer, key[0]) is value  # the layers see the new values


def test_training_with_adam_reduces_the_loss(backend):
    rng = np.random.default_rng(2)
    net = MultiLayerNet(8, [16], 3, seed=3, **backend.net_kwargs())
    x = backend.asarray(rng.standard_normal((64, 8)), "float32")
    t = backend.asarray(rng.integers(0, 3, 64))
    first = float(net.loss(x, t))
    optimizer = Adam(lr=0.01)
    for _ in range(50):
        optimizer.update(net.params, net.gradient(x, t))
    assert float(net.loss(x, t)) < 0.5 * first


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "pattern"),
    [
        (SGD, {"lr": 0}, ValueError, "lr must be a positive finite number, got 0"),
        (SGD, {"lr": float("nan")}, ValueError, "lr must be a positive finite number"),
        (SGD, {"lr": "0.1"}, TypeError, "lr must be a number"),
        (Momentum, {"momentum": 1.0}, ValueError, r"momentum must lie in \[0, 1\)"),
        (Adam, {"beta2": -0.1}, ValueError, r"beta2 must lie in \[0, 1\)"),
    ],
)
def test_bad_hyperparameters(cls, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        cls(**kwargs)


def test_missing_gradient_leaves_params_untouched():
    net = MultiLayerNet(5, [4], 3, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    grads = {k: np.ones_like(v) for k, v in net.params.items() if k != "b2"}
    with pytest.raises(KeyError, match="no entry for parameter"):
        SGD().update(net.params, grads)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])


def test_repr():
    assert repr(Momentum(lr=0.5)) == "Momentum(lr=0.5, momentum=0.9)"
