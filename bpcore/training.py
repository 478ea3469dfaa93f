"""The book's ``Trainer``, keeping the data on the network's device: the training loop.

The training and test sets are moved to the network's backend and device once, validated once
and cast to the network's dtype once. Each epoch shuffles with a permutation drawn on the host
from ``(seed, epoch)`` (so a resumed run shuffles exactly as an uninterrupted one) and copied to
the device, where it is cut into the epoch's batches of indices; mini-batches are gathered
there with ``take``. Losses stay on the device as 0-d arrays and are read back only when the
progress bar shows them or an epoch ends, so a GPU is not waited for at every step.

Where the data is placed and split is `bpcore.placement`; what the loop shows is in
`bpcore.console`; the run checkpoint's format in
`bpcore.checkpoints` (`save_run`, `load_run`); the book's own network classes are adapted in
`bpcore.book`; the evaluation is the networks' (`bpcore.networks.passes.evaluate_in_batches`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks
from .backends import Array
from .book import BookNetwork, trainable
from .callbacks import Callback, wants_batches
from .checkpoints import atomic_write, load_run, save_run
from .console import Progress, epoch_line, interactive
from .networks.passes import evaluate_in_batches
from .optimizers import OPTIMIZERS, Optimizer
from .placement import on_device, split_count, split_off
from .steps import TrainingStep, compile_evaluation

__all__ = ["BookNetwork", "Trainer", "TrainingDivergedError"]

# Accuracy is computed over chunks of this many samples, to bound the memory of the scores.
_EVAL_CHUNK = 10_000


# The CSV history's header before any epoch is done.
_CSV_COLUMNS = ["epoch", "train_loss", "test_loss", "train_acc", "test_acc", "seconds"]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; training was stopped."""


class Trainer:
    """Train a network with mini-batches, as the book's ``Trainer`` does, on any backend.

    Parameters
    ----------
    network : TwoLayerNet or MultiLayerNet
    x_train, t_train, x_test, t_test : array
        NumPy arrays or arrays of the network's backend; moved to its device once. Labels are
        class indices ``(N,)`` or one-hot rows.
    epochs : int, default 20
    mini_batch_size : int, default 100
    optimizer : str or Optimizer, default "SGD"
        A name (``"SGD"``, ``"Momentum"``, ``"Nesterov"``, ``"AdaGrad"``, ``"RMSprop"``,
        ``"Adam"``, any case) or an optimizer object.
    optimizer_param : dict, default ``{"lr": 0.01}``
        Keyword arguments for the named optimizer.
    evaluate_sample_num_per_epoch : int, optional
        Measure the accuracies on only this many samples at each epoch's end (the book's
        option); all samples by default.
    verbose : {0, 1, 2} or bool, default True
        As Keras' ``fit``: 0 (or False) prints nothing; 1 (or True) shows a progress bar
        (``tqdm.auto``: a widget in Jupyter, a bar in a terminal, with loss, accuracy and
        samples/s) and a line per epoch on stderr, and only the line per epoch when stderr is
        neither a terminal nor a notebook's (a CI log); 2 prints the line per epoch only.
    seed : int, optional
        Seeds the shuffling of each epoch.
    checkpoint : path, optional
        Write a checkpoint there at the end of every epoch (network, optimizer state, history).
    resume : path, optional
        Continue from such a checkpoint: parameters, optimizer state and hyperparameters (its
        learning rate wins over ``optimizer_param``), history, epoch count. The network's class
        and sizes, the optimizer's kind and the mini-batch size must match the checkpoint's.
        The dropout layers' generators go on from where they were, so the resumed run equals
        the uninterrupted one (except on CuPy, whose generator state cannot be saved).
    callbacks : sequence of Callback, optional
        Called at the start and end of training and of every epoch, and after every step for
        those that define ``on_batch_end`` (`bpcore.callbacks`: early stopping, a learning-rate
        schedule or plateau, the best checkpoint, a history file).
    validation_data : (x, t), optional
        Data to evaluate on after every epoch, as Keras' ``fit`` does: ``val_loss`` and
        ``val_acc`` in `epoch_history`, which callbacks then monitor by default (model
        selection on the validation set, not the test set).
    validation_split : float, optional
        Instead, hold out this fraction of the training set (in (0, 1)) as validation data:
        a split drawn from ``seed``, the same in a resumed run.

    Attributes
    ----------
    step : TrainingStep
        The gradient and the update of one mini-batch (`bpcore.compile_step`): one compiled
        program on JAX.
    train_loss_list : list of float
        The loss of every step, as in the book.
    train_acc_list, test_acc_list : list of float
        The accuracies at the end of every epoch.
    epoch_history : list of dict
        One row per epoch: ``epoch``, ``train_loss`` (the mean of its steps), ``test_loss``,
        ``train_acc``, ``test_acc``, ``seconds`` (steps and evaluation). `save_history`
        writes it as CSV or JSON.
    stop_training : bool
        Set it (a callback does) to end `train`: after the current epoch when set at an
        epoch's end, after the current step when set by ``on_batch_end`` (the epoch then ends
        there, as in Keras: its steps are evaluated, checkpointed and counted as an epoch).
    base_lr : float or None
        The learning rate the run started from (the optimizer's when `train` or the first
        `train_step` began), kept in checkpoints: a learning-rate schedule counts from it, also
        after a resume.
    epochs_done : int
    seconds : float
        Time spent in training steps, over all calls (the end-of-epoch evaluation is not
        counted here; it is in `epoch_history`'s ``seconds``).
    """

    def __init__(
        self,
        network: Any,
        x_train: Any,
        t_train: Any,
        x_test: Any,
        t_test: Any,
        epochs: int = 20,
        mini_batch_size: int = 100,
        optimizer: str | Optimizer = "SGD",
        optimizer_param: Mapping[str, Any] | None = None,
        evaluate_sample_num_per_epoch: int | None = None,
        verbose: bool = True,
        *,
        seed: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        resume: str | os.PathLike[str] | None = None,
        callbacks: Sequence[Callback] = (),
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float | None = None,
    ) -> None:
        given = type(network).__name__
        network = trainable(network)
        if not network.has_state and (checkpoint is not None or resume is not None):
            raise ValueError(
                f"checkpoint= and resume= need a bpcore network; {given} "
                f"is trained through its own gradient() and predict(), as the book's Trainer "
                f"does"
            )
        self.network = network
        self.epochs = _checks.check_positive_int(epochs, "epochs")
        self.batch_size = _checks.check_positive_int(mini_batch_size, "mini_batch_size")
        if evaluate_sample_num_per_epoch is not None:
            _checks.check_positive_int(
                evaluate_sample_num_per_epoch, "evaluate_sample_num_per_epoch"
            )
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.verbose = _verbosity(verbose)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.optimizer = _make_optimizer(optimizer, optimizer_param)
        # Set when the run starts (so a rate changed before then counts); a resumed run takes
        # its checkpoint's, as the optimizer's own rate may have been scheduled down since.
        self.base_lr: float | None = None
        # Gradient and update as one call: one compiled program per step on JAX.
        self.step = TrainingStep(network, self.optimizer, checked=False)
        self._evaluation = compile_evaluation(network)

        self.callbacks = list(callbacks)
        self.stop_training = False
        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []
        self.val_acc_list: list[float] = []
        self.epoch_history: list[dict[str, float]] = []
        self._epoch_seconds = 0.0
        self.epochs_done = 0
        self.seconds = 0.0
        self._progress: Progress | None = None
        self._batches: list[Array] = []
        self._batch_callbacks: list[Callback] = []
        if validation_data is not None and validation_split is not None:
            raise ValueError("give validation_data or validation_split, not both")
        self.validation_split = validation_split
        if self.checkpoint is not None and not self.checkpoint.parent.is_dir():
            raise FileNotFoundError(f"no folder {self.checkpoint.parent} for checkpoint=")
        # The data is checked before a checkpoint is restored: bad data changes no network.
        self.x_train, self.t_train = on_device(network, x_train, t_train, _names("train"))
        self.x_test, self.t_test = on_device(network, x_test, t_test, _names("test"))
        if validation_split is not None:  # checked before a resume changes the network
            split_count(self.x_train.shape[0], validation_split)
        if resume is not None:  # before the split: the checkpoint's seed draws it
            self._resume(Path(resume))
        self.x_val: Array | None = None
        self.t_val: Array | None = None
        if validation_split is not None:
            (self.x_train, self.t_train), (self.x_val, self.t_val) = split_off(
                network, self.x_train, self.t_train, validation_split, self.seed
            )
        elif validation_data is not None:
            self.x_val, self.t_val = on_device(network, *validation_data, _names("val"))

    def __repr__(self) -> str:
        return (
            f"Trainer({self.network!r}, epochs={self.epochs}, mini_batch_size={self.batch_size}, "
            f"optimizer={self.optimizer!r}, seed={self.seed})"
        )

    # -- data --------------------------------------------------------------------------------

    # -- training ----------------------------------------------------------------------------

    @property
    def has_validation(self) -> bool:
        """Whether the trainer evaluates validation data after every epoch."""
        return self.x_val is not None

    @property
    def history(self) -> dict[str, list[float]]:
        """The lists, by name (``val_acc`` with validation data)."""
        lists = {
            "train_loss": self.train_loss_list,
            "train_acc": self.train_acc_list,
            "test_acc": self.test_acc_list,
        }
        return {**lists, "val_acc": self.val_acc_list} if self.has_validation else lists

    @property
    def iter_per_epoch(self) -> int:
        """Steps in one epoch: the training set in mini-batches, the last one possibly short."""
        n: int = self.x_train.shape[0]
        return -(-n // self.batch_size)

    def train(self, epochs: int | None = None) -> dict[str, list[float]]:
        """Train up to `epochs` in all (`train_step` after `train_step`); return `history`.

        With ``epochs``, train that many epochs more than are done (a second ``fit``, in
        Keras' terms): `epochs` becomes ``epochs_done + epochs``. Without it, a trainer that
        has done its `epochs` trains nothing.

        Raises
        ------
        TrainingDivergedError
            When the loss becomes NaN or infinite; the message names the first such step. It
            is noticed at the next read-back (every 50 steps with the progress bar, else at
            the epoch's end), so the parameters may have gone on for some steps; the last
            checkpoint, if any, is intact.
        """
        if epochs is not None:
            self.epochs = self.epochs_done + _checks.check_positive_int(epochs, "epochs")
        self.network.check_layers()  # once per run: the steps use the unchecked gradient
        self.stop_training = False
        self._start_run()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        with self._stepping():
            try:
                while self.epochs_done < self.epochs and not self.stop_training:
                    self._step()
            finally:
                self._close_progress()
                for callback in self.callbacks:
                    callback.on_train_end(self)
        return self.history

    def train_step(self) -> None:
        """One mini-batch: gradient and update; at an epoch's end, evaluation and checkpoint.

        The book's ``Trainer.train_step``. Each epoch visits the training set once, in an order
        drawn from ``(seed, epoch)``. The step's loss stays on the device: `train_loss_list`
        gets the epoch's losses at its end, when they are read back and checked.
        """
        with self._stepping():
            self._step()

    def _stepping(self) -> contextlib.AbstractContextManager[Any]:
        """The network's device current; overflow in a diverging run reported once, as
        TrainingDivergedError, rather than as NumPy warnings at every step (np.errstate covers
        NumPy-backed libraries only)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.network.backend_info.activate())
        stack.enter_context(np.errstate(over="ignore", invalid="ignore"))
        return stack

    def _step(self) -> None:
        started = time.perf_counter()
        if self._progress is None:
            self._start_epoch()
        progress = self._progress
        assert progress is not None
        idx = self._batches[progress.steps_done]
        loss = self.step.run(self.x_train, self.t_train, idx)  # the device is current already
        progress.step(loss, self.step.hits, samples=int(idx.shape[0]))
        for callback in self._batch_callbacks:  # the loss as a 0-d array: nothing read back
            callback.on_batch_end(self, progress.steps_done, {"loss": loss})
        if progress.steps_done < progress.steps and not self.stop_training:
            self._count(started)
            return
        # The epoch's read-back (it waits for the device). A callback that stopped training
        # within the epoch ends it here, as in Keras: its steps so far are kept, evaluated,
        # counted as an epoch and checkpointed; the next epoch starts a new order.
        losses = progress.finish()
        self._count(started)
        self._end_epoch(losses)

    def _count(self, started: float) -> None:
        """Add the time since ``started`` to `seconds` and to the epoch's."""
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self._epoch_seconds += elapsed

    def _start_run(self) -> None:
        if self.base_lr is None:
            self.base_lr = float(self.optimizer.lr)
        # Only the callbacks that look at steps are called at every step.
        self._batch_callbacks = [c for c in self.callbacks if wants_batches(c)]

    def _start_epoch(self) -> None:
        self._start_run()  # train_step() without train()
        self._epoch_seconds = 0.0
        for callback in self.callbacks:
            callback.on_epoch_begin(self, self.epochs_done + 1)
        n = self.x_train.shape[0]
        order = np.random.default_rng([self.seed, self.epochs_done]).permutation(n)
        # Copied to the device once and cut into the epoch's batches now: a step then moves
        # nothing between host and device (JAX uploads the bounds of a slice as scalars).
        whole = self.network.backend_info.indices(order)
        size = self.batch_size
        self._batches = [whole[i : min(i + size, n)] for i in range(0, n, size)]
        self._progress = Progress(
            self.iter_per_epoch,
            f"epoch {self.epochs_done + 1}/{self.epochs}",
            self._diverged,
            self.network.backend_info.read_floats,
            bar=self.verbose == 1 and interactive(),
        )

    def _end_epoch(self, losses: np.ndarray) -> None:
        self._close_progress()
        self.train_loss_list.extend(losses.tolist())
        started = time.perf_counter()
        test_loss = self._evaluate()
        validation = {}
        if self.x_val is not None and self.t_val is not None:
            val_loss, val_acc = self._loss_and_accuracy(self.x_val, self.t_val)
            self.val_acc_list.append(val_acc)
            validation = {"val_loss": val_loss, "val_acc": val_acc}
        self._epoch_seconds += time.perf_counter() - started  # `seconds` counts the steps only
        self.epochs_done += 1
        row = {
            "epoch": self.epochs_done,
            "train_loss": float(np.mean(losses)),
            "test_loss": test_loss,
            "train_acc": self.train_acc_list[-1],
            "test_acc": self.test_acc_list[-1],
            **validation,
            "seconds": self._epoch_seconds,
        }
        self.epoch_history.append(row)
        if self.verbose:
            epoch_line(row, self.epochs)
        if self.checkpoint is not None:
            self.save_checkpoint(self.checkpoint)
        for callback in self.callbacks:
            callback.on_epoch_end(self, dict(row))

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._progress, self._batches = None, []

    def _diverged(self, value: float, step: int) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"the loss became {value} at epoch {self.epochs_done + 1}, step {step}: training "
            f"stopped; try a smaller learning rate (optimizer {self.optimizer!r})"
        )

    def _evaluate(self) -> float:
        """Append the epoch's accuracies; return the mean loss on the test samples."""
        limit = self.evaluate_sample_num_per_epoch
        test_loss = float("nan")
        for x, t, history in (
            (self.x_train, self.t_train, self.train_acc_list),
            (self.x_test, self.t_test, self.test_acc_list),
        ):
            if limit is not None:
                x, t = x[: min(limit, x.shape[0]), ...], t[: min(limit, t.shape[0]), ...]
            test_loss, accuracy = self._loss_and_accuracy(x, t)
            history.append(accuracy)
        return test_loss

    def _loss_and_accuracy(self, x: Array, t: Array) -> tuple[float, float]:
        # Inference mode, weight decay included, in chunks whose counts and losses stay on the
        # device until they are all computed: the networks' own evaluation.
        accuracy, loss = evaluate_in_batches(
            self._evaluation, x, t, _EVAL_CHUNK, self.network.backend_info
        )
        return loss, accuracy

    def evaluate(self, x: Any, t: Any) -> tuple[float, float]:
        """The mean loss (weight decay included) and the accuracy on ``x`` and ``t``.

        As Keras' ``evaluate``: in inference mode, on any data (NumPy arrays or the network's
        backend's), validated as the training data is.
        """
        with self.network.backend_info.activate():
            return self._loss_and_accuracy(*on_device(self.network, x, t, ("x", "t")))

    def save_history(self, path: str | os.PathLike[str]) -> Path:
        """Write `epoch_history` to ``path``: CSV for a ``.csv`` name, else JSON (atomically).

        The CSV has a header and one row per epoch. The JSON holds ``epochs`` (the rows) and
        ``train_loss`` (the loss of every step, `train_loss_list`).
        """
        path = Path(path)
        if path.suffix.lower() == ".csv":
            # Every column any row has (a run resumed with validation data has it from then
            # on), in the rows' order; a row without a value leaves its field empty.
            keys = dict.fromkeys(key for row in self.epoch_history for key in row)
            named = dict.fromkeys([*_CSV_COLUMNS[:-1], *keys])
            columns = [*(key for key in named if key != "seconds"), "seconds"]
            lines = [",".join(columns)]
            lines += [
                ",".join(repr(row[c]) if c in row else "" for c in columns)
                for row in self.epoch_history
            ]
            text = "\n".join(lines) + "\n"
        else:
            text = json.dumps(
                {"epochs": self.epoch_history, "train_loss": self.train_loss_list}, indent=1
            )
        with atomic_write(path) as f:
            f.write(text.encode())
        return path

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the network, the optimizer state and the history to ``path`` (atomically).

        A run checkpoint (`bpcore.checkpoints.save_run`), which ``resume=`` continues.
        """
        trainer = {
            "epochs_done": self.epochs_done,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seconds": self.seconds,
            "base_lr": self.base_lr,
            "history": self.history,
            "epoch_history": self.epoch_history,
            "validation_split": self.validation_split,
        }
        scaler = getattr(self.network, "loss_scaler", None)
        if scaler is not None:  # mixed float16: the run goes on at the scale it had reached
            trainer["loss_scaler"] = scaler.state_dict()
        return save_run(self.network, path, self.optimizer, trainer)

    def _resume(self, path: Path) -> None:
        # Everything is checked before anything is set (see load_run).
        state = load_run(
            self.network,
            path,
            self.optimizer,
            batch_size=self.batch_size,
            validation_split=self.validation_split,
        )
        self.epochs_done = int(state["epochs_done"])
        self.seed = int(state["seed"])
        self.seconds = float(state.get("seconds", 0.0))
        if state.get("base_lr") is not None:  # older checkpoints lack it
            self.base_lr = float(state["base_lr"])
        history = state.get("history", {})
        self.train_loss_list = list(history.get("train_loss", []))
        self.train_acc_list = list(history.get("train_acc", []))
        self.test_acc_list = list(history.get("test_acc", []))
        self.val_acc_list = list(history.get("val_acc", []))
        self.epoch_history = [dict(row) for row in state.get("epoch_history", [])]
        scaler = getattr(self.network, "loss_scaler", None)
        if scaler is not None and isinstance(state.get("loss_scaler"), dict):
            with self.network.backend_info.activate():
                scaler.start(next(iter(self.network.params.values())))
                scaler.load_state_dict(state["loss_scaler"])


def _names(split: str) -> tuple[str, str]:
    return f"x_{split}", f"t_{split}"


def _verbosity(verbose: Any) -> int:
    """``verbose`` as Keras' levels 0, 1, 2 (False and True are 0 and 1)."""
    if verbose in (0, 1, 2) and isinstance(verbose, (bool, int)):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, 2, True or False, got {verbose!r}")


def _make_optimizer(optimizer: str | Optimizer, params: Mapping[str, Any] | None) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        if params:
            raise ValueError("optimizer_param applies to an optimizer given by name only")
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        valid = ", ".join(cls.__name__ for cls in OPTIMIZERS.values())
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {valid}")
    kwargs = {"lr": 0.01} if params is None else dict(params)
    try:
        return OPTIMIZERS[optimizer.lower()](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad optimizer_param for {optimizer}: {exc}") from None
