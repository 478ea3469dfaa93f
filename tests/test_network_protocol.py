"""The public protocol networks share: what checkpoints, gradient checks and the Trainer use.

A network class of a few lines (its constructor, ``param_shapes`` and ``build``) gets the book's
API, checkpoints, gradient checks and training; state that is not a parameter (a buffer) is saved
and restored with the parameters; the float64 gradient check rebinds the network's own
parameters and gives them back.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from array_api_compat import device

import bpcore
from bpcore import TwoLayerNet, to_numpy
from bpcore.backends import namespace
from bpcore.initializers import initial_weights
from bpcore.layers import Affine, Relu
from bpcore.networks import Network


class Counter:
    """A layer with a buffer: how many samples it has seen in training mode (as running
    statistics count what a batch normalization has seen); it passes its input through."""

    buffer_names = ("seen",)

    def __init__(self, seen):
        self.seen = seen

    def forward(self, x):
        self.seen = self.seen + x.shape[0]  # a new array: immutable backends allow nothing else
        return x

    def backward(self, dout):
        return dout


class CountingNet(Network):
    """Affine, Counter, ReLU, Affine: a new network is a constructor, its shapes, its layers."""

    def __init__(self, input_size, hidden_size, output_size, *, seed=None, **where):
        config = {"input_size": input_size, "hidden_size": hidden_size, "output_size": output_size}
        sizes = [input_size, hidden_size, output_size]
        super().__init__(config, initial_weights(sizes, "he", "float64", seed), **where)

    @staticmethod
    def param_shapes(config):
        n, h, c = config["input_size"], config["hidden_size"], config["output_size"]
        return {"W1": (n, h), "b1": (h,), "W2": (h, c), "b2": (c,)}

    @staticmethod
    def build(config, params):
        b1 = params["b1"]
        seen = namespace(b1).zeros((1,), dtype=b1.dtype, device=device(b1))
        return OrderedDict(
            Affine1=Affine(params["W1"], params["b1"]),
            Counter1=Counter(seen),
            Relu1=Relu(),
            Affine2=Affine(params["W2"], params["b2"]),
        )


def _batch(backend, rng, n=5, features=6, classes=3):
    return (
        backend.asarray(rng.standard_normal((n, features)), "float32"),
        backend.asarray(rng.integers(0, classes, n)),
    )


def test_a_short_network_class_gets_the_books_api(backend, rng):
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    reference = TwoLayerNet(6, 4, 3, weight_init_std="he", seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng)
    assert sorted(net.params) == ["W1", "W2", "b1", "b2"]
    assert net.layers["Affine1"].W is net.params["W1"]
    np.testing.assert_allclose(to_numpy(net.loss(x, t)), to_numpy(reference.loss(x, t)))
    assert bpcore.gradient_check(net, x, t).passed
    assert net.lastLayer is net.last_layer


def test_buffers_are_saved_and_restored_on_every_backend(backend, rng, tmp_path):
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng)
    net.gradient(x, t)
    net.gradient(x, t)
    assert to_numpy(net.buffers["Counter1/seen"]).tolist() == [10.0]
    path = net.save(tmp_path / "net.npz")
    for loaded in (bpcore.load(path), bpcore.load(path, **backend.net_kwargs())):
        assert type(loaded) is CountingNet
        assert to_numpy(loaded.buffers["Counter1/seen"]).tolist() == [10.0]
        for key, value in net.params.items():
            assert to_numpy(loaded.params[key]).tobytes() == to_numpy(value).tobytes()
    fresh = CountingNet(6, 4, 3, seed=1, **backend.net_kwargs())
    bpcore.checkpoints.load_into(fresh, path)
    assert to_numpy(fresh.buffers["Counter1/seen"]).tolist() == [10.0]
    assert to_numpy(fresh.params["W1"]).tobytes() == to_numpy(net.params["W1"]).tobytes()


def test_from_arrays_draws_nothing_and_checks_shapes(monkeypatch):
    host = {k: to_numpy(v) for k, v in TwoLayerNet(4, 3, 2, seed=0).params.items()}

    def no_draws(*args, **kwargs):
        raise AssertionError("from_arrays drew random weights")

    monkeypatch.setattr(np.random, "default_rng", no_draws)
    net = TwoLayerNet.from_arrays({"input_size": 4, "hidden_size": 3, "output_size": 2}, host)
    assert net.config == {"input_size": 4, "hidden_size": 3, "output_size": 2}
    assert net.dtype_name == "float32"
    np.testing.assert_array_equal(net.params["W2"], host["W2"])
    with pytest.raises(ValueError, match=r"parameter b1 has shape \(4,\)"):
        TwoLayerNet.from_arrays(
            {"input_size": 4, "hidden_size": 3, "output_size": 2}, {**host, "b1": np.zeros(4)}
        )
    with pytest.raises(ValueError, match=r"no array for parameter\(s\) \['W2'\]"):
        TwoLayerNet.from_arrays(
            {"input_size": 4, "hidden_size": 3, "output_size": 2},
            {k: v for k, v in host.items() if k != "W2"},
        )


def test_using_dtype_gives_the_networks_own_arrays_back(backend, rng):
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    before = dict(net.params)
    seen = net.buffers["Counter1/seen"]
    x, t = _batch(backend, rng)

    def fail_inside():
        with net.using_dtype("float64") as work:
            assert work is net and net.dtype_name == "float64"
            assert net.params["W1"].dtype == backend.param_xp.float64
            assert net.layers["Affine1"].W is net.params["W1"]
            assert net.buffers["Counter1/seen"].dtype == backend.param_xp.float64
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert net.dtype_name == "float32"
    for key, value in net.params.items():
        assert value is before[key]
        assert net.params.layer_of(key)[0].__dict__[key[0]] is value
    assert net.buffers["Counter1/seen"] is seen
    assert float(net.loss(x, t)) > 0


def test_the_float64_check_leaves_a_float32_network_as_it_was(backend, rng):
    net = TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())
    before = {k: (v, to_numpy(v).copy()) for k, v in net.params.items()}
    x, t = _batch(backend, rng)
    check = bpcore.gradient_check(net, x, t)
    assert check.dtype == ("float64" if backend.resolve().has_dtype("float64") else "float32")
    for key, (value, host) in before.items():
        assert net.params[key] is value
        np.testing.assert_array_equal(to_numpy(value), host)
    assert net.dtype == backend.xp.float32


def test_train_step_is_the_books(rng):
    (x, t), (xt, tt) = bpcore.datasets.load_digits()
    net = TwoLayerNet(64, 16, 10, seed=0)
    trainer = bpcore.Trainer(
        net, x[:200], t[:200], xt, tt, epochs=2, mini_batch_size=50, verbose=False, seed=0
    )
    for _ in range(trainer.iter_per_epoch):
        trainer.train_step()
    assert trainer.epochs_done == 1
    assert len(trainer.train_loss_list) == 4 and len(trainer.test_acc_list) == 1
    reference = bpcore.Trainer(
        TwoLayerNet(64, 16, 10, seed=0),
        x[:200],
        t[:200],
        xt,
        tt,
        epochs=2,
        mini_batch_size=50,
        verbose=False,
        seed=0,
    )
    reference.train()
    trainer.train()
    assert trainer.train_loss_list == reference.train_loss_list


def test_numerical_gradient_starts_every_loss_from_the_same_buffers(backend, rng):
    # Counter adds to its buffer in every forward pass, as running statistics do: the
    # numerical gradient's thousands of forward passes must neither see nor keep those updates.
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng)
    seen = net.buffers["Counter1/seen"]
    grads = net.numerical_gradient(x, t)
    assert net.buffers["Counter1/seen"] is seen
    assert to_numpy(seen).tolist() == [0.0]
    reference = net.gradient(x, t)
    for key, value in reference.items():
        np.testing.assert_allclose(to_numpy(grads[key]), to_numpy(value), rtol=1e-2, atol=1e-4)


def test_using_state_swaps_a_state_in_and_gives_everything_back(backend, rng):
    # The one save-and-restore: whatever happens inside, the network's own arrays (the same
    # objects), its dtype, its last loss and, with layers=True, what its layers keep come back.
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng)
    net.gradient(x, t)
    own, loss, dtype = net.state(), net.last_loss, net.dtype_name
    layer_x = net.layers["Affine1"].x
    xp = backend.param_xp
    doubled = bpcore.networks.NetworkState(
        {k: v * 2 for k, v in own.params.items()}, {k: v + 5 for k, v in own.buffers.items()}
    )

    def fail_inside():
        with net.using_state(doubled, layers=True) as saved:
            assert saved.params["W1"] is own.params["W1"]
            assert net.params["W1"] is doubled.params["W1"]
            assert net.layers["Affine1"].W is doubled.params["W1"]
            assert to_numpy(net.buffers["Counter1/seen"]).tolist() == [10.0]  # 5 seen, + 5
            net.gradient(x[:2, ...], t[:2])  # leaves new inputs, gradients and a loss behind
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    for key, value in own.params.items():
        assert net.params[key] is value and net.params.layer_of(key)[0].__dict__[key[0]] is value
    assert net.buffers["Counter1/seen"] is own.buffers["Counter1/seen"]
    assert net.last_loss is loss and net.dtype_name == dtype
    assert net.layers["Affine1"].x is layer_x  # layers=True: the layers' own attributes too
    with net.using_state():
        net.gradient(x[:2, ...], t[:2])
    assert net.layers["Affine1"].x is not layer_x  # without layers=True they keep the pass
    assert net.params["W1"].dtype == xp.float32


def test_gradcheck_functions_take_the_network(backend, rng):
    # The machinery lives in bpcore.gradcheck as functions of the network; the methods of the
    # same names are the same computation.
    net = CountingNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng)
    by_function = bpcore.gradcheck.numerical_gradient(net, x, t)
    by_method = net.numerical_gradient(x, t)
    for key, value in by_method.items():
        assert to_numpy(by_function[key]).tobytes() == to_numpy(value).tobytes()
    assert bpcore.gradcheck.check_dtype(net) == net.check_dtype()
    with bpcore.gradcheck.checking(net, x, t) as (xc, tc):
        assert net.dtype_name == bpcore.gradcheck.check_dtype(net)
        assert tuple(tc.shape) == (5, 3)  # class labels as one-hot rows, built once
    assert net.dtype_name == "float32"


def test_accuracy_and_the_trainer_count_with_one_evaluation_loop(backend, rng):
    # Network.accuracy and the Trainer's end of epoch both run evaluate_in_batches; accuracy
    # counts hits only, so the loss layer keeps what the last gradient left there.
    net = TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = _batch(backend, rng, n=7)
    net.gradient(x, t)
    last = net.last_layer
    kept = (last.loss, last.y, last.t)
    whole = net.accuracy(x, t)
    assert net.accuracy(x, t, batch_size=3) == whole  # batches of 3, 3 and 1
    assert (last.loss, last.y, last.t) == kept
    accuracy, loss = bpcore.networks.passes.evaluate_in_batches(
        net.unchecked_evaluation, *net.check_batch(x, t), 3, net.backend_info
    )
    assert accuracy == whole
    np.testing.assert_allclose(loss, float(net.loss(x, t)), rtol=1e-6)


def test_to_moves_a_copy_to_another_backend_device_and_dtype(backend, rng):
    net = bpcore.MultiLayerNetExtend(6, [4], 3, use_batchnorm=True, use_dropout=True, seed=0)
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 0, 1])
    net.gradient(x, t)  # running statistics away from their start
    own = {key: (value, to_numpy(value).copy()) for key, value in net.params.items()}
    moved = net.to(backend.name, backend.device)
    assert type(moved) is type(net) and moved.config == net.config
    assert (moved.backend, moved.dtype_name) == (backend.name, "float32")
    for key, (value, host) in own.items():
        assert net.params[key] is value  # the original is untouched
        np.testing.assert_array_equal(to_numpy(moved.params[key]), host)
    for key, value in net.buffers.items():
        np.testing.assert_array_equal(to_numpy(moved.buffers[key]), to_numpy(value))
    xb, tb = backend.asarray(x, "float32"), backend.asarray(t)
    np.testing.assert_allclose(
        to_numpy(moved.predict(xb)), to_numpy(net.predict(x.astype(np.float32))), rtol=1e-5
    )
    wide = moved.to(dtype="float64")
    assert (wide.backend, wide.dtype_name) == (backend.name, "float64")
    back = wide.to("numpy", dtype="float32")
    for key, (_, host) in own.items():
        np.testing.assert_array_equal(to_numpy(back.params[key]), host)
    assert float(moved.loss(xb, tb)) == pytest.approx(float(net.loss(x, t)), rel=1e-5)


def _masks(net, x, n=3):
    """The next ``n`` dropout masks ``net`` draws (forward passes in training mode)."""
    xb = net.xp.asarray(x, device=net.device, dtype=net.xp.float32)
    return [to_numpy(net.predict(xb, train_flg=True)) for _ in range(n)]


def test_to_carries_the_dropout_generators_and_reads_them_only(backend, rng):
    x = rng.random((5, 6))

    def build():
        return bpcore.MultiLayerNetExtend(
            6, [8], 3, use_dropout=True, seed=0, **backend.net_kwargs()
        )

    net = build()
    _masks(net, x, 1)  # the generators away from their start
    same = net.to(backend.name)  # the library named again: its device and its draws kept
    assert same.device == net.device
    # The copy draws what the original draws next, and taking it advanced nothing.
    expected = _masks(build(), x, 4)[1:]
    np.testing.assert_array_equal(_masks(same, x), expected)
    np.testing.assert_array_equal(_masks(net, x), expected)
    other = "numpy" if backend.name != "numpy" else "array_api_strict"
    a, b = build().to(other), build().to(other)  # elsewhere: seeded from the state, reproducible
    np.testing.assert_array_equal(_masks(a, x), _masks(b, x))


def test_to_a_library_by_name_stays_on_the_networks_device():
    import array_api_strict

    device = array_api_strict.Device("device1")
    net = TwoLayerNet(6, 4, 3, seed=0, backend="array_api_strict", device=device)
    assert net.to("array_api_strict").device == device
    assert net.to("array_api_strict", dtype="float64").device == device
    assert net.to("numpy").device == "cpu"
