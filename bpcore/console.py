"""What a training run shows on the console: the progress bar and the line per epoch.

A `Progress` follows one epoch: it keeps the steps' losses on the device and reads them back
in one go every 50 steps (with the bar) and at the epoch's end, checking them for divergence
there. `epoch_line` writes the line each epoch ends with. Both write to stderr through tqdm,
which keeps a line clear of a bar that is still drawn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .backends import Array

__all__ = ["Progress", "epoch_line", "interactive"]

# How often (in steps) the progress bar reads the loss back from the device.
_SHOW_EVERY = 50


class Progress:
    """One epoch's progress: the bar, the losses kept on the device, their checked read-back.

    Losses and hit counts stay on the device; every 50 steps (with the bar) and at the
    epoch's end the losses not read yet are read back in one go and checked for divergence.
    """

    def __init__(
        self,
        steps: int,
        desc: str,
        diverged: Any,
        read: Callable[[list[Array]], np.ndarray],
        *,
        bar: bool,
    ) -> None:
        self.steps = steps
        self._read_floats = read  # the backend's: many 0-d arrays in one read-back
        self.steps_done = 0
        self.samples = 0
        self._diverged = diverged
        self._losses: list[Array] = []
        self._hits: list[Array] = []
        self._hit_total = 0.0
        self._read: list[float] = []
        self._started = time.perf_counter()
        self._bar = None
        if bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=steps, desc=desc, unit="step", file=sys.stderr, leave=False)

    def step(self, loss: Array, hits: Any, samples: int) -> None:
        """Record a step's loss (and, with the bar, its ``hits()``), reading back when due."""
        self._losses.append(loss)
        self.steps_done += 1
        self.samples += samples
        if self._bar is None:
            return
        # Running accuracy of the batches seen, from the scores the step computed anyway (on
        # Dask, computed with the gradients, like the labels the loss layer kept).
        self._hits.append(hits())
        if self.steps_done % _SHOW_EVERY == 0 or self.steps_done == self.steps:
            shown = len(self._read)
            self._read_back()
            self._hit_total += float(self._read_floats(self._hits).sum())  # since the last read
            self._hits.clear()
            acc = self._hit_total / self.samples
            rate = self.samples / max(time.perf_counter() - self._started, 1e-9)
            self._bar.set_postfix(
                loss=f"{self._read[-1]:.4f}",
                acc=f"{acc:.4f}",
                samples_s=f"{rate:,.0f}",
                refresh=False,
            )
            self._bar.update(self.steps_done - shown)
            self._bar.refresh()  # show the figures now, however short the epoch

    def _read_back(self) -> None:
        """Read the losses not read yet to the host, in one go; raise at the first not finite."""
        pending = self._losses[len(self._read) :]
        if not pending:
            return
        values = self._read_floats(pending)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            index = int(bad[0])
            raise self._diverged(values[index], len(self._read) + index + 1)
        self._read.extend(values.tolist())

    def finish(self) -> np.ndarray:
        """The epoch's losses, read back and checked."""
        self._read_back()
        return np.asarray(self._read)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def epoch_line(row: Mapping[str, float], epochs: int) -> None:
    """Write an epoch's line (its `bpcore.Trainer.epoch_history` row) to stderr."""
    from tqdm.auto import tqdm

    # Through tqdm, which keeps the line clear of a bar that is still drawn.
    validation = (
        f", val loss {row['val_loss']:.4f}, val acc {row['val_acc']:.4f}"
        if "val_loss" in row
        else ""
    )
    tqdm.write(
        f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}, "
        f"test loss {row['test_loss']:.4f}, train acc {row['train_acc']:.4f}, "
        f"test acc {row['test_acc']:.4f}{validation}",
        file=sys.stderr,
    )


def interactive() -> bool:
    """Whether a progress bar can be seen: stderr is a terminal, or a notebook's kernel runs."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules
