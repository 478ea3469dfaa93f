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
    ReduceLROnPlateau,
    wants_batches,
)
from bpcore.cli import main
from bpcore.datasets import load_digits

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
