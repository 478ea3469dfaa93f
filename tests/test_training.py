"""The Trainer: the book's history, device-resident batches, divergence, checkpoints and resume."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, Trainer, TrainingDivergedError, TwoLayerNet, to_numpy
from bpcore.datasets import load_digits

DIGITS = load_digits()


def _trainer(backend, epochs=3, samples=None, **kwargs):
    """A Trainer of the digits: all 1,437 training samples, or the first ``samples``."""
    (x, t), (xt, tt) = DIGITS
    x, t = x[:samples], t[:samples]
    net = MultiLayerNet(64, [32], 10, seed=0, **backend.net_kwargs())
    options = {
        "optimizer": "Adam",
        "optimizer_param": {"lr": 0.01},
        "verbose": False,
        "seed": 1,
        **kwargs,
    }
    return Trainer(net, x, t, xt, tt, epochs=epochs, mini_batch_size=64, **options)


@pytest.mark.slow
def test_history_and_accuracy(backend):
    trainer = _trainer(backend, epochs=3)
    history = trainer.train()
    steps_per_epoch = -(-1437 // 64)
    assert len(trainer.train_loss_list) == 3 * steps_per_epoch
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 3
    assert history["test_acc"] is trainer.test_acc_list
    assert all(isinstance(v, float) for v in trainer.train_loss_list)
    assert np.mean(trainer.train_loss_list[-10:]) < 0.5 * np.mean(trainer.train_loss_list[:10])
    assert trainer.test_acc_list[-1] >= 0.9
    # The data moved to the network's device once, in its dtype.
    assert trainer.x_train.dtype == trainer.network.dtype
    assert trainer.epochs_done == 3


@pytest.fixture(scope="session")
def numpy_losses():
    """The losses of one epoch of `_trainer` on NumPy: the reference every backend is held to."""
    reference = _trainer(bpcore.testing.BackendCase("numpy", "cpu"), epochs=1)
    reference.train()
    return reference.train_loss_list


def test_same_seed_same_run_on_every_backend(backend, numpy_losses):
    # Same initial weights, same shuffles: the first losses agree across backends.
    trainer = _trainer(backend, epochs=1)
    trainer.train()
    np.testing.assert_allclose(trainer.train_loss_list[:5], numpy_losses[:5], rtol=1e-4)


def test_one_hot_labels_and_evaluation_subset(backend):
    (x, t), (xt, tt) = load_digits(one_hot_label=True)
    net = TwoLayerNet(64, 16, 10, seed=0, **backend.net_kwargs())
    trainer = Trainer(
        net,
        x,
        t,
        xt,
        tt,
        epochs=1,
        optimizer="sgd",
        optimizer_param={"lr": 0.1},
        evaluate_sample_num_per_epoch=100,
        verbose=False,
        seed=0,
    )
    trainer.train()
    assert len(trainer.test_acc_list) == 1
    assert (trainer.test_acc_list[0] * 100).is_integer()  # measured on 100 samples


@pytest.mark.parametrize("verbose", [False, True])
def test_divergence_stops_with_a_clear_error(backend, verbose):
    # With or without the progress bar, the error names the first bad step.
    trainer = _trainer(
        backend, epochs=2, optimizer="SGD", optimizer_param={"lr": 1e30}, verbose=verbose
    )
    with pytest.raises(
        TrainingDivergedError, match=r"the loss became (nan|inf) at epoch 1, step [2-4]:"
    ):
        trainer.train()


@pytest.mark.slow
def test_checkpoint_and_resume_continue_the_same_run(backend, tmp_path):
    path = tmp_path / "run.npz"
    # 320 samples: five steps an epoch are enough to show a resumed run going on the same way.
    straight = _trainer(backend, epochs=2, samples=320)
    straight.train()

    first = _trainer(backend, epochs=1, samples=320, checkpoint=path)
    first.train()
    resumed = _trainer(backend, epochs=2, samples=320, resume=path)
    assert resumed.epochs_done == 1
    resumed.train()
    np.testing.assert_allclose(resumed.train_loss_list, straight.train_loss_list, rtol=1e-5)
    for key, value in straight.network.params.items():
        np.testing.assert_allclose(
            to_numpy(resumed.network.params[key]), to_numpy(value), rtol=1e-4, atol=1e-6
        )
    # The checkpoint is also a plain network checkpoint.
    assert bpcore.load(path).params["W1"].shape == (64, 32)


def test_resume_refuses_a_different_network(tmp_path):
    path = tmp_path / "run.npz"
    (x, t), (xt, tt) = DIGITS
    Trainer(
        MultiLayerNet(64, [32], 10, seed=0), x, t, xt, tt, epochs=1, verbose=False, checkpoint=path
    ).train()
    with pytest.raises(ValueError, match="does not match the network to train"):
        Trainer(MultiLayerNet(64, [16], 10, seed=0), x, t, xt, tt, resume=path, verbose=False)
    with pytest.raises(ValueError, match="was trained with SGD, not Adam"):
        Trainer(
            MultiLayerNet(64, [32], 10, seed=0),
            x,
            t,
            xt,
            tt,
            optimizer="adam",
            optimizer_param={},
            resume=path,
            verbose=False,
        )
    with pytest.raises(ValueError, match="mini-batches of 100, not 50"):
        Trainer(
            MultiLayerNet(64, [32], 10, seed=0),
            x,
            t,
            xt,
            tt,
            mini_batch_size=50,
            resume=path,
            verbose=False,
        )


@pytest.mark.slow
def test_resume_in_another_dtype(backend, tmp_path):
    path = tmp_path / "run.npz"
    (x, t), (xt, tt) = DIGITS
    x, t = x[:320], t[:320]
    kwargs = dict(optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    Trainer(
        MultiLayerNet(64, [16], 10, seed=0, dtype="float64", **backend.net_kwargs()),
        x,
        t,
        xt,
        tt,
        epochs=1,
        checkpoint=path,
        **kwargs,
    ).train()
    net = MultiLayerNet(64, [16], 10, seed=0, dtype="float32", **backend.net_kwargs())
    trainer = Trainer(net, x, t, xt, tt, epochs=2, resume=path, **kwargs)
    trainer.train()
    assert trainer.epochs_done == 2
    assert all(m.dtype == net.dtype for m in trainer.optimizer.m.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer 'lbfgs'; expected one of SGD"),
        ({"optimizer_param": {"lr": -1}}, ValueError, "lr must be a positive finite number"),
        ({"optimizer_param": {"momentum": 0.9}}, ValueError, "bad optimizer_param for SGD"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"mini_batch_size": 0}, ValueError, "mini_batch_size must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, error, pattern):
    (x, t), (xt, tt) = DIGITS
    with pytest.raises(error, match=pattern):
        Trainer(TwoLayerNet(64, 8, 10), x, t, xt, tt, verbose=False, **kwargs)


def test_bad_data_is_caught_once_up_front():
    (x, t), (xt, tt) = DIGITS
    bad = t.astype(np.int64)
    bad[7] = 10
    with pytest.raises(ValueError, match=r"t_train holds class labels from 0 to 10"):
        Trainer(TwoLayerNet(64, 8, 10), x, bad, xt, tt, verbose=False)
    with pytest.raises(ValueError, match="x_test has 63 features"):
        Trainer(TwoLayerNet(64, 8, 10), x, t, xt[:, :63], tt, verbose=False)


def test_a_parameter_layer_taken_out_of_the_network_stops_training():
    (x, t), (xt, tt) = load_digits()
    net = TwoLayerNet(64, 8, 10, seed=0)
    trainer = Trainer(net, x, t, xt, tt, epochs=1, verbose=False, seed=0)
    net.layers["Affine2"] = bpcore.layers.Affine(net.params["W2"], net.params["b2"])
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match=r"params\['W2'\] belongs to a layer that is no longer"):
        trainer.train()
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, before[key])
    assert trainer.epochs_done == 0


@pytest.mark.parametrize("batch", [32, 8])  # 45 steps (fewer than a display period), 180
def test_verbose_progress_in_a_terminal(capsys, monkeypatch, batch):
    (x, t), (xt, tt) = DIGITS
    net = TwoLayerNet(64, 8, 10, seed=0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    Trainer(net, x, t, xt, tt, epochs=1, mini_batch_size=batch, seed=0).train()
    err = capsys.readouterr().err
    assert "epoch 1/1: loss " in err
    assert "test acc" in err
    assert re.search(r"acc=0\.\d{4}, loss=\d\.\d{4}, samples_s=[\d,]+", err), err


@pytest.mark.parametrize("verbose", [True, 1, 2])
def test_one_line_per_epoch_when_stderr_is_not_a_terminal(capsys, verbose):
    # As in a CI log: no bar drawn with carriage returns, one line per epoch (Keras' verbose=2
    # always prints just that).
    (x, t), (xt, tt) = DIGITS
    net = TwoLayerNet(64, 8, 10, seed=0)
    Trainer(net, x, t, xt, tt, epochs=3, seed=0, verbose=verbose).train()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(
            rf"epoch {epoch}/3: loss \d\.\d{{4}}, test loss \d\.\d{{4}}, "
            rf"train acc \d\.\d{{4}}, test acc \d\.\d{{4}}",
            line,
        ), line


def test_verbose_zero_prints_nothing_and_bad_levels_are_refused(capsys):
    (x, t), (xt, tt) = DIGITS
    Trainer(TwoLayerNet(64, 8, 10, seed=0), x, t, xt, tt, epochs=1, verbose=0).train()
    assert capsys.readouterr().err == ""
    for bad in (3, -1, "yes", 1.0):
        with pytest.raises(ValueError, match="verbose must be 0, 1, 2"):
            Trainer(TwoLayerNet(64, 8, 10, seed=0), x, t, xt, tt, verbose=bad)


@pytest.mark.parametrize("model", ["convnet", "extend"])
def test_new_networks_train_and_resume_with_their_running_statistics(backend, tmp_path, model):
    # Images stay (N, 1, 8, 8) for the conv net; the MLP has dropout and batch normalization,
    # whose running statistics travel in the checkpoint and come back on resume.
    from bpcore import MultiLayerNetExtend, SimpleConvNet

    flat = model == "extend"
    (x, t), (xt, tt) = load_digits(flatten=flat)
    x, t, xt, tt = x[:320], t[:320], xt[:100], tt[:100]

    def trainer(epochs, **kwargs):
        if flat:
            net = MultiLayerNetExtend(
                64,
                [24],
                10,
                use_dropout=True,
                dropout_ration=0.1,
                use_batchnorm=True,
                seed=0,
                **backend.net_kwargs(),
            )
        else:
            conv = {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}
            net = SimpleConvNet(
                (1, 8, 8), conv, 16, weight_init_std="relu", seed=0, **backend.net_kwargs()
            )
        return Trainer(
            net,
            x,
            t,
            xt,
            tt,
            epochs=epochs,
            mini_batch_size=32,
            optimizer="Adam",
            optimizer_param={"lr": 0.01},
            verbose=False,
            seed=1,
            **kwargs,
        )

    path = tmp_path / "run.npz"
    # The MLP learns in two epochs; the small conv net needs three to beat chance clearly.
    epochs = 2 if flat else 3
    straight = trainer(epochs)
    straight.train()
    assert np.mean(straight.train_loss_list[-5:]) < np.mean(straight.train_loss_list[:5])
    assert straight.test_acc_list[-1] > 0.25  # chance is 0.1
    trainer(epochs - 1, checkpoint=path).train()
    resumed = trainer(epochs, resume=path)
    net = resumed.network
    saved = bpcore.load(path)
    for key, value in saved.buffers.items():
        np.testing.assert_allclose(to_numpy(net.buffers[key]), to_numpy(value), rtol=1e-6)
    if flat:
        assert len(net.buffers) == 2
        assert not np.allclose(to_numpy(net.buffers["BatchNorm1/running_var"]), 0.0)
        # Dropout draws other masks after a resume than straight on: compare the parameters
        # loosely; without dropout the run would continue exactly.
        resumed.train()
        assert resumed.test_acc_list[-1] > 0.5
        return
    resumed.train()
    np.testing.assert_allclose(resumed.train_loss_list, straight.train_loss_list, rtol=1e-4)


class _BooksOwnConvNet:
    """A network written as the book's ch07/simple_convnet.py is: its own class, NumPy
    parameters, bpcore's layers (``from common.layers import *`` with common/ being bpcore)."""

    def __init__(self):
        from collections import OrderedDict

        from bpcore.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss

        rng = np.random.default_rng(0)
        self.params = {
            "W1": 0.3 * rng.standard_normal((4, 1, 3, 3)),
            "b1": np.zeros(4),
            "W2": 0.3 * rng.standard_normal((4 * 3 * 3, 10)),
            "b2": np.zeros(10),
        }
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def gradient(self, x, t):
        self.last_layer.forward(self.predict(x), t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Conv1"].dW,
            "b1": self.layers["Conv1"].db,
            "W2": self.layers["Affine1"].dW,
            "b2": self.layers["Affine1"].db,
        }


def test_the_books_own_network_class_trains(tmp_path):
    # ch07/train_convnet.py with common/ replaced by bpcore: the book's network, bpcore's Trainer.
    (x, t), (xt, tt) = load_digits(flatten=False)
    net = _BooksOwnConvNet()
    trainer = Trainer(
        net,
        x[:400],
        t[:400],
        xt[:100],
        tt[:100],
        epochs=3,
        mini_batch_size=40,
        optimizer="Adam",
        optimizer_param={"lr": 0.01},
        verbose=False,
        seed=0,
    )
    trainer.train()
    assert len(trainer.train_loss_list) == 30
    assert np.mean(trainer.train_loss_list[-5:]) < np.mean(trainer.train_loss_list[:5])
    assert trainer.test_acc_list[-1] > 0.25  # chance is 0.1
    assert trainer.network.params is net.params  # updated in the book's own dict
    with pytest.raises(ValueError, match="checkpoint= and resume= need a bpcore network"):
        Trainer(net, x, t, xt, tt, checkpoint=tmp_path / "run.npz")


def test_a_resumed_run_with_dropout_is_the_uninterrupted_run(backend, tmp_path):
    # The dropout generators' state goes into the run checkpoint: the resumed run draws the
    # masks the uninterrupted one draws, bit for bit.
    path = tmp_path / "run.npz"
    (x, t), (xt, tt) = DIGITS
    x, t = x[:320], t[:320]
    kwargs = dict(optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0)

    def net(seed):
        return bpcore.MultiLayerNetExtend(
            64, [16], 10, use_dropout=True, dropout_ration=0.3, seed=seed, **backend.net_kwargs()
        )

    straight = Trainer(net(0), x, t, xt, tt, epochs=2, **kwargs)
    straight.train()
    Trainer(net(0), x, t, xt, tt, epochs=1, checkpoint=path, **kwargs).train()
    resumed = Trainer(net(7), x, t, xt, tt, epochs=2, resume=path, **kwargs)
    resumed.train()
    assert resumed.train_loss_list == straight.train_loss_list
    for key, value in straight.network.params.items():
        assert to_numpy(resumed.network.params[key]).tobytes() == to_numpy(value).tobytes()


def test_mismatched_data_is_named_as_the_trainer_was_given_it():
    (x, t), (xt, tt) = DIGITS
    with pytest.raises(ValueError, match="x_train holds a batch of 1437 samples but t_train"):
        Trainer(MultiLayerNet(64, [8], 10), x, t[:10], xt, tt, verbose=False)
    with pytest.raises(ValueError, match="x_test holds a batch of 360 samples but t_test"):
        Trainer(MultiLayerNet(64, [8], 10), x, t, xt, tt[:5], verbose=False)


def test_a_run_resumed_on_another_backend_starts_its_generators_afresh(tmp_path):
    # The generators' states are the library's own (NumPy's bit generator, a torch.Generator,
    # a JAX key): elsewhere the resumed run draws other masks, and nothing breaks.
    path = tmp_path / "run.npz"
    (x, t), (xt, tt) = DIGITS
    kwargs = dict(epochs=2, mini_batch_size=64, verbose=False, seed=0)

    def net(backend):
        return bpcore.MultiLayerNetExtend(64, [16], 10, use_dropout=True, seed=0, backend=backend)

    Trainer(net("numpy"), x[:128], t[:128], xt, tt, checkpoint=path, epochs=1,
            mini_batch_size=64, verbose=False, seed=0).train()  # fmt: skip
    pytest.importorskip("torch")
    resumed = Trainer(net("torch"), x[:128], t[:128], xt, tt, resume=path, **kwargs)
    resumed.train()
    assert resumed.epochs_done == 2


def test_bad_data_with_resume_changes_no_network_and_a_missing_folder_fails_first(tmp_path):
    path = tmp_path / "run.npz"
    (x, t), (xt, tt) = DIGITS
    Trainer(MultiLayerNet(64, [8], 10, seed=0), x, t, xt, tt, epochs=1, verbose=False,
            checkpoint=path).train()  # fmt: skip
    net = MultiLayerNet(64, [8], 10, seed=1)
    before = to_numpy(net.params["W1"]).copy()
    with pytest.raises(ValueError, match="t_train holds 10 labels"):
        Trainer(net, x, t[:10], xt, tt, resume=path, verbose=False)
    np.testing.assert_array_equal(to_numpy(net.params["W1"]), before)
    with pytest.raises(FileNotFoundError, match=r"no folder .* for checkpoint="):
        Trainer(net, x, t, xt, tt, verbose=False, checkpoint=tmp_path / "missing" / "ck.npz")
