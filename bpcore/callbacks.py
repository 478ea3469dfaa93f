"""Callbacks for the `Trainer`: the hooks users of Keras' ``fit`` reach for first.

A callback is an object with any of the methods of `Callback`; the `Trainer` calls them at the
start of ``train()``, at the start and end of every epoch, and at the end of ``train()``. At an
epoch's end it passes that epoch's row of ``trainer.epoch_history``: ``epoch``, ``train_loss``
(the mean of the epoch's steps), ``test_loss``, ``train_acc``, ``test_acc``, with validation
data ``val_loss`` and ``val_acc``, and ``seconds``. A callback that defines ``on_batch_end`` is
called after every step too; the others cost nothing per step. A callback stops training by
setting ``trainer.stop_training = True``: at an epoch's end, training ends there; in
``on_batch_end``, the epoch ends after that step (as in Keras: its steps are evaluated,
checkpointed and counted as an epoch).

Callbacks that watch a value (`EarlyStopping`, `ReduceLROnPlateau`, `BestCheckpoint`) watch
the validation set's by default when the trainer has validation data, else the test set's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "BestCheckpoint",
    "Callback",
    "EarlyStopping",
    "HistoryLogger",
    "LearningRateSchedule",
    "ReduceLROnPlateau",
    "wants_batches",
]

#: The values an epoch's row holds, which callbacks may monitor.
MONITORED = ("train_loss", "test_loss", "train_acc", "test_acc", "val_loss", "val_acc")


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_train_begin(self, trainer: Any) -> None:
        """Called when ``trainer.train()`` starts."""

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        """Called before the first step of epoch ``epoch`` (counted from 1)."""

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        """Called after an epoch's evaluation and checkpoint, with its history row."""

    def on_batch_end(self, trainer: Any, step: int, logs: dict[str, Any]) -> None:
        """Called after step ``step`` (from 1) of the epoch, with ``{"loss": loss}``.

        The loss is a 0-d array on the device: reading it (``float(loss)``) waits for the
        device at every step. Only callbacks that override this method are called per step.
        """

    def on_train_end(self, trainer: Any) -> None:
        """Called when ``trainer.train()`` returns (or raises)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def wants_batches(callback: Any) -> bool:
    """Whether ``callback`` has an ``on_batch_end`` of its own (the `Trainer` calls only those)."""
    hook = getattr(type(callback), "on_batch_end", None)
    return hook is not None and hook is not Callback.on_batch_end


def _monitor(monitor: str | None) -> tuple[str | None, bool]:
    """The monitored key (None: chosen when training starts), and whether larger is better
    (accuracies) or smaller (losses)."""
    if monitor is None:
        return None, False
    if monitor not in MONITORED:
        raise ValueError(f"monitor must be one of {', '.join(MONITORED)}, got {monitor!r}")
    return monitor, monitor.endswith("_acc")


def _watched(monitor: str | None, default: str, trainer: Any) -> tuple[str, bool]:
    """What a callback watches in ``trainer``'s run: ``monitor``, or ``default`` on the
    validation set if the trainer has one, else on the test set."""
    validation = bool(getattr(trainer, "has_validation", False))
    if monitor is None:
        monitor = ("val_" if validation else "test_") + default
    elif monitor.startswith("val_") and not validation:
        raise ValueError(f"monitor={monitor!r} needs a Trainer with validation data")
    return monitor, monitor.endswith("_acc")


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, optional
        One of ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``, ``val_loss``,
        ``val_acc``; losses should fall, accuracies rise. By default ``val_loss`` when the
        trainer has validation data, else ``test_loss``.
    patience : int, default 0
        Epochs without improvement to allow before stopping.
    min_delta : float, default 0.0
        The least change that counts as an improvement.

    Attributes
    ----------
    best : float or None
        The best value seen.
    stopped_epoch : int or None
        The epoch after which training stopped.
    """

    def __init__(self, monitor: str | None = None, patience: int = 0, min_delta: float = 0.0):
        self.monitor, self._larger = _monitor(monitor)
        self._given = monitor
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.stopped_epoch: int | None = None
        self._waited = 0

    def on_train_begin(self, trainer: Any) -> None:
        """Choose what to watch; forget the last run's best value."""
        self.monitor, self._larger = _watched(self._given, "loss", trainer)
        self.best, self.stopped_epoch, self._waited = None, None, 0

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        """Keep an improvement, or count an epoch without one and stop after ``patience``."""
        if self.monitor is None:  # trained with train_step(), not train()
            self.on_train_begin(trainer)
        value = logs[str(self.monitor)]
        if self.best is None or _improves(value, self.best, self._larger, self.min_delta):
            self.best, self._waited = value, 0
            return
        self._waited += 1
        if self._waited > self.patience:
            trainer.stop_training = True
            self.stopped_epoch = int(logs["epoch"])


def _improves(value: float, best: float, larger: bool, min_delta: float) -> bool:
    return value > best + min_delta if larger else value < best - min_delta


class LearningRateSchedule(Callback):
    """Set the optimizer's learning rate at the start of every epoch.

    Parameters
    ----------
    kind : {"step", "cosine"}
        ``step``: ``lr0 * gamma ** ((epoch - 1) // step_size)``. ``cosine``: from ``lr0`` at the
        first epoch down to ``min_lr`` after the last, ``min_lr + (lr0 - min_lr) * (1 +
        cos(pi * (epoch - 1) / epochs)) / 2``.
    step_size : int, default 10
        Epochs between two steps (``step``).
    gamma : float, default 0.1
        The factor of each step (``step``).
    min_lr : float, default 0.0
        The rate the cosine ends at.

    ``lr0`` is the learning rate the run started from (``trainer.base_lr``: the optimizer's rate
    when training began, or, for a run resumed from a checkpoint, the rate that run started
    from), so a resumed run continues the same schedule. Attributes: ``lrs``, the rate
    of every epoch so far.
    """

    def __init__(
        self, kind: str, *, step_size: int = 10, gamma: float = 0.1, min_lr: float = 0.0
    ) -> None:
        if kind not in ("step", "cosine"):
            raise ValueError(f"kind must be 'step' or 'cosine', got {kind!r}")
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        if not (0 < gamma <= 1) or not (min_lr >= 0):
            raise ValueError(f"need 0 < gamma <= 1 and min_lr >= 0, got {gamma!r}, {min_lr!r}")
        self.kind, self.step_size, self.gamma, self.min_lr = kind, step_size, gamma, min_lr
        self.lrs: list[float] = []
        self._lr0: float | None = None

    def on_train_begin(self, trainer: Any) -> None:
        """Take ``lr0`` from the trainer, the first time."""
        if self._lr0 is None:
            base = getattr(trainer, "base_lr", None)
            self._lr0 = float(trainer.optimizer.lr if base is None else base)

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        """Set the optimizer's learning rate to this epoch's `rate`."""
        self.on_train_begin(trainer)  # trained with train_step(), not train()
        lr = self.rate(epoch, trainer.epochs)
        trainer.optimizer.lr = lr
        self.lrs.append(lr)

    def rate(self, epoch: int, epochs: int) -> float:
        """The learning rate of epoch ``epoch`` (from 1) of ``epochs``."""
        lr0 = self._lr0 if self._lr0 is not None else 0.0
        if self.kind == "step":
            return lr0 * self.gamma ** ((epoch - 1) // self.step_size)
        cosine = (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2
        return self.min_lr + (lr0 - self.min_lr) * cosine


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has stalled, as Keras' does.

    Parameters
    ----------
    monitor : str, optional
        As for `EarlyStopping` (by default ``val_loss``, else ``test_loss``).
    factor : float, default 0.1
        The factor, in (0, 1).
    patience : int, default 10
        Epochs without improvement before the rate is reduced.
    min_delta : float, default 1e-4
        The least change that counts as an improvement.
    cooldown : int, default 0
        Epochs to wait after a reduction before counting again.
    min_lr : float, default 0.0
        The rate is never set below this.

    Attributes
    ----------
    reductions : list of (int, float)
        The epochs after which the rate was reduced, and the new rate.
    """

    def __init__(
        self,
        monitor: str | None = None,
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        self.monitor, self._larger = _monitor(monitor)
        self._given = monitor
        if not (isinstance(factor, (int, float)) and 0 < factor < 1):
            raise ValueError(f"factor must be a number in (0, 1), got {factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not (math.isfinite(min_delta) and min_delta >= 0 and math.isfinite(min_lr)):
            raise ValueError(
                f"need finite min_delta >= 0 and min_lr, got {min_delta!r}, {min_lr!r}"
            )
        self.factor, self.patience, self.min_delta = float(factor), patience, float(min_delta)
        self.cooldown, self.min_lr = cooldown, float(min_lr)
        self.best: float | None = None
        self.reductions: list[tuple[int, float]] = []
        self._waited = self._cooling = 0

    def on_train_begin(self, trainer: Any) -> None:
        """Choose what to watch; forget the last run's best value."""
        self.monitor, self._larger = _watched(self._given, "loss", trainer)
        self.best, self._waited, self._cooling = None, 0, 0

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        """Count an epoch without improvement; after ``patience`` of them, reduce the rate."""
        if self.monitor is None:  # trained with train_step(), not train()
            self.on_train_begin(trainer)
        value = logs[str(self.monitor)]
        if self._cooling:
            self._cooling -= 1
        if self.best is None or _improves(value, self.best, self._larger, self.min_delta):
            self.best, self._waited = value, 0
            return
        if self._cooling:
            return
        self._waited += 1
        if self._waited > self.patience - 1:
            lr = max(float(trainer.optimizer.lr) * self.factor, self.min_lr)
            if lr < trainer.optimizer.lr:
                trainer.optimizer.lr = lr
                self.reductions.append((int(logs["epoch"]), lr))
            self._waited, self._cooling = 0, self.cooldown


class BestCheckpoint(Callback):
    """Save a checkpoint whenever ``monitor`` improves: the best network of the run.

    Parameters
    ----------
    path : path
        Where to write it (atomically, as `Trainer.save_checkpoint` does).
    monitor : str, optional
        As for `EarlyStopping`; by default ``val_acc`` with validation data, else ``test_acc``.
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str | None = None) -> None:
        self.path = Path(path)
        self.monitor, self._larger = _monitor(monitor)
        self._given = monitor
        self.best: float | None = None

    def on_train_begin(self, trainer: Any) -> None:
        """Choose what to watch; check that the file's folder exists (before any step)."""
        _check_folder(self.path, "BestCheckpoint")
        self.monitor, self._larger = _watched(self._given, "acc", trainer)

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        """Save the checkpoint if this epoch's value is the best so far."""
        if self.monitor is None:  # trained with train_step(), not train()
            self.on_train_begin(trainer)
        value = logs[str(self.monitor)]
        if self.best is None or _improves(value, self.best, self._larger, 0.0):
            self.best = value
            trainer.save_checkpoint(self.path)


class HistoryLogger(Callback):
    """Write ``trainer.epoch_history`` to a CSV or JSON file after every epoch.

    The format follows the suffix (``.csv``, else JSON); see `Trainer.save_history`. The file is
    complete after each epoch, so a run that is killed keeps the epochs it finished.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_train_begin(self, trainer: Any) -> None:
        """Check that the file's folder exists, before any step is spent."""
        _check_folder(self.path, "HistoryLogger")

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        """Write the history so far."""
        trainer.save_history(self.path)


def _check_folder(path: Path, owner: str) -> None:
    """Raise FileNotFoundError now, not after an epoch of training, when ``path`` cannot be
    written for want of its folder (files are written atomically and never make folders)."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {path.parent} for {owner}'s file {path.name}")
