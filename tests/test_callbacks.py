"""The Trainer's per-epoch history, its files, and the callbacks of `bpcore.callbacks`."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

import bpcore
from bpcore import Trainer, TwoLayerNet, to_numpy
from bpcore.callbacks import (
    BestCheckpoint,
    Callback,
    EarlyStopping,
    HistoryLogger,
    LearningRateSchedule,
)


def _data(n=120, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 2
    t = rng.integers(0, classes, n)
    x = (centers[t] + rng.standard_normal((n, d))).astype("float32")
    return x[:90], t[:90], x[90:], t[90:]


def _trainer(backend=None, epochs=4, callbacks=(), lr=0.05, **kwargs):
    x, t, x_test, t_test = _data()
    where = backend.net_kwargs() if backend is not None else {}
    net = TwoLayerNet(8, 6, 3, seed=0, **where)
    return Trainer(
        net, x, t, x_test, t_test, epochs=epochs, mini_batch_size=30, optimizer="SGD",
        optimizer_param={"lr": lr}, verbose=False, seed=0, callbacks=callbacks, **kwargs,
    )  # fmt: skip


def test_epoch_history_rows(backend):
    trainer = _trainer(backend, epochs=3)
    evaluation = trainer._evaluation

    def slow_evaluation(x, t):  # evaluation time a row must count, and trainer.seconds not
        time.sleep(0.02)
        return evaluation(x, t)

    trainer._evaluation = slow_evaluation
    trainer.train()
    rows = trainer.epoch_history
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["train_acc"] for r in rows] == trainer.train_acc_list
    assert [r["test_acc"] for r in rows] == trainer.test_acc_list
    steps = trainer.iter_per_epoch
    for i, row in enumerate(rows):
        assert row["train_loss"] == pytest.approx(
            np.mean(trainer.train_loss_list[i * steps : (i + 1) * steps])
        )
        assert row["seconds"] > 0
    # An epoch's seconds are its steps' (all that trainer.seconds counts) and its evaluation's
    # (two evaluations an epoch, train and test, each slowed by 0.02 s).
    assert sum(r["seconds"] for r in rows) - trainer.seconds >= 3 * 2 * 0.02
    _, _, x_test, t_test = _data()
    net = trainer.network
    expected = float(net.loss(net.xp.asarray(x_test), net.xp.asarray(t_test)))
    assert rows[-1]["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_history_files(tmp_path):
    trainer = _trainer(epochs=3)
    trainer.train()
    with open(trainer.save_history(tmp_path / "h.csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [1, 2, 3]
    for row, kept in zip(table, trainer.epoch_history, strict=True):
        for key, value in kept.items():
            assert float(row[key]) == value  # repr of a float reads back exactly
    saved = json.loads(trainer.save_history(tmp_path / "h.json").read_text())
    assert saved["epochs"] == trainer.epoch_history
    assert saved["train_loss"] == trainer.train_loss_list


def test_early_stopping_stops_when_the_monitor_stalls():
    # No accuracy can rise by 1.0: epoch 1 sets the best, epoch 2 waits, epoch 3 stops.
    stop = EarlyStopping(monitor="test_acc", patience=1, min_delta=1.0)
    trainer = _trainer(epochs=10, callbacks=[stop])
    trainer.train()
    assert trainer.epochs_done == 3
    assert stop.stopped_epoch == 3
    assert stop.best == trainer.test_acc_list[0]
    # A loss that keeps falling never stops the run.
    keep = EarlyStopping(monitor="train_loss", patience=0)
    trainer = _trainer(epochs=4, callbacks=[keep])
    trainer.train()
    assert trainer.epochs_done == 4 and keep.stopped_epoch is None


def test_learning_rate_schedules():
    step = LearningRateSchedule("step", step_size=2, gamma=0.5)
    trainer = _trainer(epochs=5, callbacks=[step], lr=0.1)
    trainer.train()
    assert step.lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert trainer.optimizer.lr == pytest.approx(0.025)
    cosine = LearningRateSchedule("cosine", min_lr=0.01)
    trainer = _trainer(epochs=5, callbacks=[cosine], lr=0.1)
    trainer.train()
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)]
    assert cosine.lrs == pytest.approx(expected)
    assert cosine.lrs[0] == pytest.approx(0.1)


def test_a_resumed_run_continues_its_schedule(tmp_path):
    # Stopped after 2 of 4 epochs and resumed by a new Trainer with a new schedule: the same
    # rates and the same weights as the run that was never stopped (the optimizer's own rate,
    # saved at 0.025, must not become the schedule's lr0).
    def schedule():
        return LearningRateSchedule("step", step_size=1, gamma=0.5)

    whole = schedule()
    uninterrupted = _trainer(epochs=4, callbacks=[whole], lr=0.1)
    uninterrupted.train()
    path = tmp_path / "ck.npz"
    _trainer(epochs=2, callbacks=[schedule()], lr=0.1, checkpoint=path).train()
    rest = schedule()
    resumed = _trainer(epochs=4, callbacks=[rest], lr=0.1, resume=path)
    resumed.train()
    assert whole.lrs == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert rest.lrs == whole.lrs[2:]
    for key, value in uninterrupted.network.params.items():
        np.testing.assert_array_equal(to_numpy(resumed.network.params[key]), to_numpy(value))
    # The base rate is the checkpoint's, whatever rate the resuming Trainer is given.
    assert _trainer(epochs=4, lr=0.7, resume=path).base_lr == 0.1


def test_a_schedule_starts_from_the_rate_set_before_training():
    step = LearningRateSchedule("step", step_size=1, gamma=0.5)
    trainer = _trainer(epochs=2, callbacks=[step], lr=0.1)
    trainer.optimizer.lr = 0.4  # after the Trainer is built, before it trains
    trainer.train()
    assert trainer.base_lr == 0.4 and step.lrs == pytest.approx([0.4, 0.2])


def test_best_checkpoint_keeps_the_best_epochs_network(tmp_path):
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, logs):
            snapshots.append({k: to_numpy(v).copy() for k, v in trainer.network.params.items()})

    path = tmp_path / "best.npz"
    best = BestCheckpoint(path, monitor="test_loss")
    trainer = _trainer(epochs=5, callbacks=[best, Snapshot()], lr=0.5)
    trainer.train()
    losses = [r["test_loss"] for r in trainer.epoch_history]
    epoch = int(np.argmin(losses))  # the first of equal bests, as the callback keeps it
    assert best.best == losses[epoch]
    loaded = bpcore.load(path)
    for key, value in snapshots[epoch].items():
        np.testing.assert_array_equal(to_numpy(loaded.params[key]), value)


def test_history_logger_keeps_the_epochs_of_a_run_that_dies(tmp_path):
    class Crash(Callback):
        def on_epoch_end(self, trainer, logs):
            if logs["epoch"] == 2:
                raise KeyboardInterrupt

    path = tmp_path / "history.csv"
    trainer = _trainer(epochs=5, callbacks=[HistoryLogger(path), Crash()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    with open(path, newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_bad_callback_arguments():
    with pytest.raises(ValueError, match="monitor must be one of train_loss, test_loss"):
        EarlyStopping(monitor="validation_loss")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="kind must be 'step' or 'cosine'"):
        LearningRateSchedule("linear")
    with pytest.raises(ValueError, match="step_size"):
        LearningRateSchedule("step", step_size=0)
    with pytest.raises(ValueError, match="monitor must be one of"):
        BestCheckpoint("x.npz", monitor="accuracy")
