"""Host batches on every backend: the book's loop, with only ``backend=`` added, runs as it is.

The book's scripts slice NumPy arrays into mini-batches and hand them to ``gradient``, ``loss``
and ``accuracy``. Every entry point takes them on every backend and moves them to the network's
device once per call; labels that come from the host are checked there, for free.
"""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from bpcore import TwoLayerNet, to_numpy
from bpcore.datasets import load_digits


def _book_ch05_loop(network, x_train, t_train, iters_num=30, seed=0):
    """ch05/train_neuralnet.py's loop, as the book writes it (NumPy batches, params -= ...)."""
    rng = np.random.default_rng(seed)  # the book's np.random.choice, seeded
    train_size, batch_size, learning_rate = x_train.shape[0], 100, 0.1
    train_loss_list, train_acc_list = [], []
    iter_per_epoch = 10  # max(train_size / batch_size, 1) in the book: an integer here
    for i in range(iters_num):
        batch_mask = rng.choice(train_size, batch_size)
        x_batch = x_train[batch_mask]
        t_batch = t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        loss = network.loss(x_batch, t_batch)
        train_loss_list.append(float(loss))
        if i % iter_per_epoch == 0:
            train_acc_list.append(network.accuracy(x_train, t_train))
    return train_loss_list, train_acc_list


def test_the_books_ch05_loop_runs_unchanged_and_gives_numpys_numbers(backend):
    (x_train, t_train), _ = load_digits(one_hot_label=True)
    reference = _book_ch05_loop(TwoLayerNet(64, 50, 10, seed=0), x_train, t_train)
    network = TwoLayerNet(64, 50, 10, seed=0, **backend.net_kwargs())
    losses, accuracies = _book_ch05_loop(network, x_train, t_train)
    np.testing.assert_allclose(losses, reference[0], rtol=1e-4)
    np.testing.assert_allclose(accuracies, reference[1], atol=2 / x_train.shape[0])
    assert losses[-1] < losses[0]


def test_every_entry_point_takes_host_arrays(backend, rng):
    net = TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 0, 1])
    xb, tb = backend.asarray(x, "float32"), backend.asarray(t)
    np.testing.assert_array_equal(to_numpy(net.predict(x)), to_numpy(net.predict(xb)))
    assert float(net.loss(x, t)) == float(net.loss(xb, tb))
    assert net.accuracy(x, t) == net.accuracy(xb, tb)
    for key, value in net.gradient(x, t).items():
        assert value.dtype == net.params[key].dtype
        np.testing.assert_allclose(to_numpy(value), to_numpy(net.gradient(xb, tb)[key]))
    numeric = net.numerical_gradient(x, t)
    assert sorted(numeric) == sorted(net.params)
    assert bpcore.gradient_check(net, x, t).passed
    assert bpcore.directional_gradient_check(net, x, t, seed=0).passed


def test_host_labels_are_checked_on_the_host_before_they_move(backend, rng):
    # Even where labels on the device are not read (JAX, a GPU), host labels cost nothing to
    # read: a bad one is an error at once, and nothing changes.
    net = TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())
    before = {key: to_numpy(value).copy() for key, value in net.params.items()}
    x = rng.random((4, 6))
    with pytest.raises(ValueError, match=r"t holds class labels from 0 to 7; expected integers"):
        net.gradient(x, np.array([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="not one-hot"):
        net.loss(x, np.eye(3)[[0, 1, 2, 2]] * 2)
    with pytest.raises(ValueError, match=r"x holds a batch of 4 samples but t holds 3 labels"):
        net.gradient(x, np.array([0, 1, 2]))
    for key, value in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[key]), value)


def test_another_librarys_arrays_move_by_dlpack(backend, rng):
    # array-api-strict's arrays (PyTorch's, for a strict network) speak DLPack. A Dask network
    # keeps taking its own and NumPy's arrays only, and says how to move the others.
    net = TwoLayerNet(6, 4, 3, seed=0, **backend.net_kwargs())
    x, t = rng.random((5, 6)).astype(np.float32), np.array([0, 1, 2, 0, 1])
    if backend.name == "dask":
        xs = pytest.importorskip("array_api_strict")
        with pytest.raises(TypeError, match=r"cannot move .* net\.xp\.asarray\(bpcore"):
            net.loss(xs.asarray(x), t)
        return
    if backend.name == "array_api_strict":
        source = pytest.importorskip("torch")
        foreign = source.from_numpy(x), source.from_numpy(t)
    else:
        source = pytest.importorskip("array_api_strict")
        foreign = source.asarray(x), source.asarray(t)
    by_dlpack = net.loss(*foreign)
    assert float(by_dlpack) == pytest.approx(float(net.loss(x, t)), rel=1e-6)
