"""`compile_step`: the book's two lines as one call, one compiled program on JAX, no read-back."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNetExtend, SimpleConvNet, TwoLayerNet, compile_step, to_numpy
from bpcore.optimizers import OPTIMIZERS

N_STEPS = 4


def _data(backend, n=12, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.standard_normal((n, d)), "float32")
    t = backend.asarray(rng.integers(0, classes, n))
    return x, t


def _extend(backend):
    return MultiLayerNetExtend(
        6, [5, 4], 3, use_dropout=True, dropout_ration=0.2, use_batchnorm=True, seed=3,
        **backend.net_kwargs(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "network"),
    [
        ("sgd", "extend"),
        ("momentum", "extend"),
        ("adagrad", "two-layer"),
        ("rmsprop", "two-layer"),
        ("adam", "two-layer"),
        ("adam", "convnet"),
    ],
)
def test_step_equals_the_books_two_lines(backend, name, network):
    # With dropout, batch statistics and running statistics, every piece of state the compiled
    # program carries in and out must come out as the eager lines leave it. (Not with the
    # optimizers that divide by the gradient's size: b1 before a batch normalization has a
    # gradient of rounding noise, which they blow up to a step of lr either way.)
    x, t = _data(backend)
    if network == "extend":
        books, ours = _extend(backend), _extend(backend)
    elif network == "convnet":
        books, ours = (
            SimpleConvNet(
                (1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
                hidden_size=5, output_size=3, seed=0, **backend.net_kwargs(),
            )
            for _ in range(2)
        )  # fmt: skip
        x = backend.asarray(np.reshape(to_numpy(x), (2, 1, 6, 6)), "float32")
        t = backend.asarray(np.array([0, 2]))
    else:
        books, ours = (TwoLayerNet(6, 5, 3, seed=0, **backend.net_kwargs()) for _ in range(2))
    book_opt, our_opt = OPTIMIZERS[name](lr=0.05), OPTIMIZERS[name](lr=0.05)
    step = compile_step(ours, our_opt)
    assert step.compiled == (backend.name == "jax")
    for _ in range(N_STEPS):
        book_opt.update(books.params, books.gradient(x, t))
        loss = step(x, t)
        np.testing.assert_allclose(float(loss), float(books.last_loss), rtol=1e-5)
    for key in books.params:
        np.testing.assert_allclose(
            to_numpy(ours.params[key]), to_numpy(books.params[key]), rtol=1e-4, atol=1e-6
        )
    for key, value in books.buffers.items():
        np.testing.assert_allclose(to_numpy(ours.buffers[key]), to_numpy(value), rtol=1e-5)
    arrays, scalars = our_opt.state()
    book_arrays, book_scalars = book_opt.state()
    assert scalars == book_scalars
    assert sorted(arrays) == sorted(book_arrays)


def test_a_changed_learning_rate_reaches_the_compiled_step(backend):
    x, t = _data(backend)
    books, ours = (TwoLayerNet(6, 5, 3, seed=0, **backend.net_kwargs()) for _ in range(2))
    book_opt, our_opt = OPTIMIZERS["adam"](lr=0.01), OPTIMIZERS["adam"](lr=0.01)
    step = compile_step(ours, our_opt)
    for lr in (0.01, 0.1, 0.001):
        book_opt.lr = our_opt.lr = lr
        book_opt.update(books.params, books.gradient(x, t))
        step(x, t)
    for key in books.params:
        np.testing.assert_allclose(
            to_numpy(ours.params[key]), to_numpy(books.params[key]), rtol=1e-4, atol=1e-6
        )
    assert our_opt.iter == book_opt.iter == 3


def test_no_tracer_stays_in_the_layers_or_the_optimizer():
    jax = pytest.importorskip("jax")
    net = MultiLayerNetExtend(
        6, [5], 3, use_dropout=True, use_batchnorm=True, seed=0, backend="jax"
    )
    optimizer = OPTIMIZERS["adam"]()
    step = compile_step(net, optimizer)
    x, t = jax.numpy.ones((4, 6)), jax.numpy.asarray([0, 1, 2, 0])
    step(x, t)
    step(x, t)

    def leaves(obj):
        for value in vars(obj).values():
            yield from value.values() if isinstance(value, dict) else [value]

    objects = [*net.layers.values(), net.last_layer, optimizer, *net.params.values()]
    objects += [layer.generator for layer in net.layers.values() if hasattr(layer, "generator")]
    for obj in objects:
        for value in leaves(obj) if hasattr(obj, "__dict__") else [obj]:
            assert not isinstance(value, jax.core.Tracer), f"a tracer in {obj!r}"
    # And the network still works eagerly, from where the compiled steps left it.
    assert np.isfinite(float(net.loss(x, t)))


@contextlib.contextmanager
def _no_reads(jax):
    """Fail on any read of a JAX array's value to the host.

    ``jax.transfer_guard_device_to_host("disallow")`` catches reads from a GPU; JAX does not
    enforce it for CPU arrays, so every read is also made to fail where all of them go through:
    the array's ``_value``.
    """
    from jax._src.array import ArrayImpl

    def refuse(self):
        raise RuntimeError("a device array was read back to the host")

    original = ArrayImpl._value
    ArrayImpl._value = property(refuse)
    try:
        with jax.transfer_guard_device_to_host("disallow"):
            yield
    finally:
        ArrayImpl._value = original


def test_the_books_loop_reads_nothing_back_on_jax():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((40, 6)).astype("float32")
    t_host = rng.integers(0, 3, 40)
    x, t = jnp.asarray(x_host), jnp.asarray(t_host)
    bad_t = jnp.asarray(np.where(t_host == 0, 7, t_host))

    # The guard itself: it must catch a read, or this test could not fail.
    with _no_reads(jax), pytest.raises(RuntimeError, match="read back"):
        float(jnp.sum(x))

    for net in (
        TwoLayerNet(6, 5, 3, seed=0, backend="jax"),
        MultiLayerNetExtend(6, [5], 3, use_dropout=True, use_batchnorm=True, backend="jax"),
    ):
        optimizer = OPTIMIZERS["adam"]()
        step = compile_step(net, optimizer)
        step(x, t)  # compiled outside the guard: tracing may look at shapes, not values
        with _no_reads(jax):
            for _ in range(3):  # the book's loop through the public API, eagerly
                optimizer.update(net.params, net.gradient(x, t))
                net.loss(x, t)
            for _ in range(3):  # and compiled
                step(x, t)
            loss = step(x, bad_t)  # a bad batch is not read either: it makes the loss NaN
        assert np.isnan(float(loss))

    # The Trainer's steps too, between its read-backs (at an epoch's end without a bar).
    net = TwoLayerNet(6, 5, 3, seed=0, backend="jax")
    trainer = bpcore.Trainer(
        net, x_host, t_host, x_host, t_host, epochs=1, mini_batch_size=8, verbose=False
    )
    trainer.train_step()  # compiles
    with _no_reads(jax):
        for _ in range(trainer.iter_per_epoch - 2):
            trainer.train_step()
    assert trainer.step.compiled
    trainer.train_step()  # the epoch's end reads the losses
    assert len(trainer.train_loss_list) == trainer.iter_per_epoch


def test_step_checks_the_batch(backend):
    net = TwoLayerNet(6, 5, 3, seed=0, **backend.net_kwargs())
    step = compile_step(net, OPTIMIZERS["sgd"]())
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    x, _ = _data(backend)
    with pytest.raises(ValueError, match="5 features per sample"):
        step(backend.asarray(np.ones((4, 5)), "float32"), backend.asarray(np.array([0, 1, 2, 0])))
    with pytest.raises(TypeError, match="x must be an array"):
        step([[0.0] * 6], backend.asarray(np.array([0])))
    for key, value in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[key]), value)
    with pytest.raises(TypeError, match="bpcore optimizer"):
        compile_step(net, object())
