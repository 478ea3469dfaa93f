"""The Trainer as users of Keras expect it: validation data, more epochs, evaluate, callbacks.

Validation data (given, or a seeded split of the training set) is evaluated after every
epoch, ``val_loss`` and ``val_acc`` go into the history and the epoch line, and callbacks
watch them by default: model selection on the validation set, not the test set.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import bpcore
from bpcore import MultiLayerNet, Trainer, to_numpy
from bpcore.callbacks import (
    BestCheckpoint,
    Callback,
    EarlyStopping,
    HistoryLogger,
    ReduceLROnPlateau,
    wants_batches,
)
from bpcore.cli import main
from bpcore.datasets import load_digits
from bpcore.testing import BackendCase

(X, T), (XT, TT) = load_digits()
X, T = X[:320], T[:320]


def _trainer(backend, epochs=2, **kwargs):
    net = MultiLayerNet(64, [16], 10, seed=0, **backend.net_kwargs())
    options = {"optimizer": "Adam", "optimizer_param": {"lr": 0.01}, "verbose": 0, "seed": 3}
    return Trainer(net, X, T, XT, TT, epochs=epochs, mini_batch_size=64, **{**options, **kwargs})


def test_a_validation_split_is_held_out_and_evaluated(backend):
    trainer = _trainer(backend, validation_split=0.25)
    assert (trainer.x_train.shape[0], trainer.x_val.shape[0]) == (240, 80)
    trainer.train()
    row = trainer.epoch_history[-1]
    assert list(row) == [
        "epoch", "train_loss", "test_loss", "train_acc", "test_acc", "val_loss", "val_acc",
        "seconds",
    ]  # fmt: skip
    rows = [r["val_acc"] for r in trainer.epoch_history]
    assert trainer.history["val_acc"] == trainer.val_acc_list == rows
    # The split is drawn from the seed: the same samples on every backend, none in training.
    held = {tuple(np.round(r, 6)) for r in to_numpy(trainer.x_val)}
    kept = {tuple(np.round(r, 6)) for r in to_numpy(trainer.x_train)}
    reference = _trainer(type(backend)("numpy", "cpu"), validation_split=0.25)
    assert held == {tuple(np.round(r, 6)) for r in to_numpy(reference.x_val)}
    assert len(held & kept) <= 1  # the digits hold a few duplicate images, at most
    loss, accuracy = trainer.evaluate(trainer.x_val, trainer.t_val)
    assert (loss, accuracy) == pytest.approx((row["val_loss"], row["val_acc"]), rel=1e-5)


def test_validation_data_and_evaluate(backend, capsys):
    trainer = _trainer(backend, validation_data=(XT[:100], TT[:100]), verbose=2)
    trainer.train()
    row = trainer.epoch_history[-1]
    assert row["val_acc"] == pytest.approx(trainer.evaluate(XT[:100], TT[:100])[1])
    assert trainer.evaluate(XT, TT) == pytest.approx((row["test_loss"], row["test_acc"]), 1e-5)
    assert "val loss" in capsys.readouterr().err  # the epoch line
    with pytest.raises(ValueError, match=r"x holds a batch of 3 samples but t holds 2 labels"):
        trainer.evaluate(XT[:3], TT[:2])
    with pytest.raises(ValueError, match="not both"):
        _trainer(backend, validation_data=(XT, TT), validation_split=0.2)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, 0.0001])
def test_bad_validation_splits(fraction):
    with pytest.raises(ValueError, match="validation_split"):
        _trainer(type("B", (), {"net_kwargs": lambda self: {}})(), validation_split=fraction)


def test_train_with_epochs_goes_on_for_that_many_more(backend):
    trainer = _trainer(backend, epochs=1)
    trainer.train()
    trainer.train()  # all epochs done: nothing more
    assert trainer.epochs_done == 1
    trainer.train(epochs=2)
    assert (trainer.epochs_done, trainer.epochs, len(trainer.test_acc_list)) == (3, 3, 3)
    straight = _trainer(backend, epochs=3)
    straight.train()
    np.testing.assert_allclose(trainer.train_loss_list, straight.train_loss_list, rtol=1e-5)


def test_callbacks_watch_the_validation_set_by_default(backend, tmp_path):
    stop, best, plateau = (
        EarlyStopping(patience=5),
        BestCheckpoint(tmp_path / "b.npz"),
        (ReduceLROnPlateau()),
    )
    trainer = _trainer(backend, validation_split=0.2, callbacks=[stop, best, plateau])
    trainer.train()
    assert (stop.monitor, best.monitor, plateau.monitor) == ("val_loss", "val_acc", "val_loss")
    assert best.best == max(trainer.val_acc_list)
    plain = EarlyStopping()
    _trainer(backend, callbacks=[plain]).train()
    assert plain.monitor == "test_loss"
    with pytest.raises(ValueError, match="needs a Trainer with validation data"):
        _trainer(backend, callbacks=[EarlyStopping(monitor="val_loss")]).train()


class _Stalled:
    """A trainer whose monitored value stops improving: what a callback sees of one."""

    has_validation = True

    def __init__(self):
        self.optimizer = bpcore.optimizers.SGD(lr=1.0)


def test_reduce_lr_on_plateau():
    trainer, plateau = _Stalled(), ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1)
    plateau.on_train_begin(trainer)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5, 0.6, 0.6]
    for epoch, loss in enumerate(losses, start=1):
        plateau.on_epoch_end(trainer, {"epoch": epoch, "val_loss": loss})
    # Keras' counting: a reduction after 2 stalled epochs, then 1 epoch of cooldown that still
    # counts towards the next patience.
    assert plateau.reductions == [(4, 0.5), (6, 0.25), (10, 0.125)]
    assert trainer.optimizer.lr == 0.125
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)


def test_a_per_batch_hook_sees_every_step_and_costs_nothing_unused(backend):
    class Steps(Callback):
        def __init__(self):
            self.seen = []

        def on_batch_end(self, trainer, step, logs):
            self.seen.append((trainer.epochs_done + 1, step, logs["loss"]))

    steps = Steps()
    trainer = _trainer(backend, callbacks=[steps, EarlyStopping()])
    trainer.train()
    per_epoch = trainer.iter_per_epoch
    assert [(e, s) for e, s, _ in steps.seen] == [
        (e, s) for e in (1, 2) for s in range(1, per_epoch + 1)
    ]
    losses = [float(to_numpy(loss)) for _, _, loss in steps.seen]  # 0-d arrays, unread
    np.testing.assert_allclose(losses, trainer.train_loss_list, rtol=1e-6)
    assert wants_batches(steps) and not wants_batches(EarlyStopping())


def test_the_command_line_validation_split_and_json(tmp_path, capsys):
    history = tmp_path / "h.csv"
    argv = ["train", "--epochs", "1", "--quiet", "--json", "--validation-split", "0.2"]
    assert main([*argv, "--history", str(history)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"val_loss", "val_acc", "test_loss", "seed"} <= set(results)
    assert results["hidden"] == [100] and results["seed"] == 0
    with open(history) as f:
        assert {"val_loss", "val_acc"} <= set(next(csv.DictReader(f)))


def test_resume_with_nothing_left_says_so(tmp_path, capsys):
    path = tmp_path / "ck.npz"
    assert main(["train", "--epochs", "2", "--quiet", "--checkpoint", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", "--epochs", "2", "--quiet", "--resume", str(path)]) == 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and "2 epochs done" in err


def test_the_run_reads_in_order_and_counts_its_epochs_right(capsys):
    # The network line came after the epoch lines, and one epoch read "1 epochs".
    assert main(["train", "--epochs", "1", "--json", "--validation-split", "0.1"]) == 0
    err = capsys.readouterr().err.splitlines()
    network = next(i for i, line in enumerate(err) if line.startswith("MultiLayerNet("))
    epoch = next(i for i, line in enumerate(err) if line.startswith("epoch 1/1:"))
    assert network < epoch
    assert "val loss" in err[epoch]
    (summary,) = [line for line in err if line.startswith("digits: test accuracy")]
    assert " 1 epoch in " in summary and "validation accuracy" in summary


class _StopAt(Callback):
    """Stops training from the per-batch hook, at a step of the first epoch."""

    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, step, logs):
        if step == self.step:
            trainer.stop_training = True


def test_a_stop_within_an_epoch_ends_that_epoch_and_keeps_its_steps(backend, tmp_path):
    # The steps of the epoch that a per-batch callback stopped were lost: no losses, no row,
    # no checkpoint, and a resume redid them.
    path = tmp_path / "ck.npz"
    trainer = _trainer(backend, epochs=3, callbacks=[_StopAt(2)], checkpoint=path)
    trainer.train()
    assert trainer.epochs_done == 1 and len(trainer.train_loss_list) == 2
    row = trainer.epoch_history[-1]
    assert row["train_loss"] == pytest.approx(np.mean(trainer.train_loss_list))
    assert row["test_acc"] == trainer.test_acc_list[-1]
    resumed = _trainer(backend, epochs=3, resume=path)
    assert resumed.epochs_done == 1 and len(resumed.train_loss_list) == 2
    resumed.train()
    assert len(resumed.train_loss_list) == 2 + 2 * resumed.iter_per_epoch


def test_a_resume_with_another_validation_split_is_refused(backend, tmp_path):
    # Resumed without its split, the run trained on the held-out samples too, and its history
    # file lost the validation columns' values.
    path = tmp_path / "ck.npz"
    _trainer(backend, epochs=1, validation_split=0.25, checkpoint=path).train()
    for split in (None, 0.5):
        net = MultiLayerNet(64, [16], 10, seed=5, **backend.net_kwargs())
        before = {key: to_numpy(value).copy() for key, value in net.params.items()}
        with pytest.raises(ValueError, match=r"validation_split=0\.25, not"):
            Trainer(net, X, T, XT, TT, resume=path, validation_split=split, mini_batch_size=64,
                    optimizer="Adam", verbose=0)  # fmt: skip
        for key, value in before.items():
            np.testing.assert_array_equal(to_numpy(net.params[key]), value)
    resumed = _trainer(backend, epochs=2, validation_split=0.25, resume=path)
    resumed.train()
    assert [row["epoch"] for row in resumed.epoch_history] == [1, 2]


def test_a_history_gains_validation_columns_midway(backend, tmp_path):
    path = tmp_path / "ck.npz"
    _trainer(backend, epochs=1, checkpoint=path).train()
    trainer = _trainer(backend, epochs=2, resume=path, validation_data=(XT[:50], TT[:50]))
    trainer.train()
    with open(trainer.save_history(tmp_path / "h.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(row["epoch"], bool(row["val_acc"])) for row in rows] == [("1", False), ("2", True)]
    assert list(rows[0])[-1] == "seconds"


def test_reduce_lr_on_plateau_in_a_real_run(backend):
    # Every epoch "stalls" (no gain of 10 in the loss): the rate halves after each, and the
    # steps of the next epoch use the halved rate.
    plateau = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=10.0)
    seen = []

    class Rates(Callback):
        def on_epoch_begin(self, trainer, epoch):
            seen.append(trainer.optimizer.lr)

    trainer = _trainer(backend, epochs=3, callbacks=[plateau, Rates()])
    trainer.train()
    assert seen == [0.01, 0.01, 0.005]
    assert plateau.reductions == [(2, 0.005), (3, 0.0025)]
    assert trainer.optimizer.lr == 0.0025 and plateau.monitor == "test_loss"


@pytest.mark.parametrize("callback", ["history", "best"])
def test_files_in_a_missing_folder_fail_before_any_step(backend, tmp_path, callback):
    path = tmp_path / "no" / "such" / "h.csv"
    make = {"history": HistoryLogger, "best": BestCheckpoint}[callback]
    trainer = _trainer(backend, callbacks=[make(path)])
    with pytest.raises(FileNotFoundError, match="no folder"):
        trainer.train()
    assert trainer.train_loss_list == [] and trainer.epochs_done == 0


@pytest.mark.parametrize("option", ["--history", "--checkpoint", "--plot"])
def test_the_command_line_refuses_a_missing_folder_at_once(tmp_path, capsys, option):
    assert main(["train", "--epochs", "1", option, str(tmp_path / "missing" / "f.csv")]) == 2
    assert "no folder" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_a_bad_seed_is_named(seed):
    net = MultiLayerNet(64, [16], 10, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        Trainer(net, X, T, XT, TT, seed=seed)


def test_an_unused_batch_hook_moves_nothing_during_an_epoch(monkeypatch):
    # Within an epoch, with callbacks that have no per-batch hook, a step neither reads a value
    # back nor uploads one: the losses are read once, at the epoch's end, and the batches'
    # indices go to the device when the epoch starts (JAX uploaded each slice's bounds).
    jax = pytest.importorskip("jax")
    trainer = _trainer(BackendCase("jax", "cpu"), epochs=1, callbacks=[EarlyStopping()])
    reads = []
    backend = type(trainer.network.backend_info)
    read_floats = backend.read_floats
    counted = staticmethod(lambda values: reads.append(1) or read_floats(values))
    monkeypatch.setattr(backend, "read_floats", counted)
    trainer.train_step()  # the epoch's order goes to the device here
    with jax.transfer_guard("disallow"):
        for _ in range(trainer.iter_per_epoch - 2):
            trainer.train_step()
        with pytest.raises(Exception, match="Disallowed host-to-device"):
            jax.numpy.asarray(np.ones(2))  # the guard is on
    assert reads == []
    trainer.train_step()  # the epoch's end: its losses read back in one go
    assert len(reads) >= 1 and len(trainer.train_loss_list) == trainer.iter_per_epoch
