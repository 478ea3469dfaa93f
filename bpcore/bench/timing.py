"""Timing rows side by side: interleaved rounds, warm-up apart, pytest-benchmark's clock and stats.

On a shared machine the load drifts over seconds, so rows timed one after another are compared
under different loads. `time_interleaved` times every row once per round, in an order that
rotates from round to round, so that each row sees the same drift; a row's first call (where
libraries cache, and JAX compiles) is timed apart and kept out of the statistics. Libraries
in one process disturb each other through their thread pools, which keep spinning for a while
after a call: the harness lets them settle between rows.

The clock is pytest-benchmark's (`pytest_benchmark.timers.default_timer`) and the statistics are
its `pytest_benchmark.stats.Stats`: the nox ``bench`` sessions (pytest-benchmark) and
``bpcore bench`` read the same clock and summarize the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Timing", "stats_of", "time_interleaved"]

#: The shortest a timed round should last: shorter calls are repeated within a round, so that
#: the clock's resolution and the loop's own cost stay far below what is measured.
MIN_ROUND_SECONDS = 0.002

#: The most calls one round repeats (a call of a microsecond needs no more for 2 ms).
MAX_ITERATIONS = 1000

#: How long the harness waits before each timed round (and each first call), untimed: long
#: enough for the thread pools of the library just timed (OpenBLAS's workers spin for about
#: 0.1 s after a call, OpenMP's and XLA's for less) to stop spinning before another library's
#: row starts. Without it, on two cores, PyTorch eager's SimpleConvNet step measured up to four
#: times slower in the rounds right after a NumPy row.
SETTLE_SECONDS = 0.2

#: The longest the slowest row's round should last, where the rows' speeds differ widely: the
#: fastest row's round may then last less than `MIN_ROUND_SECONDS`.
MAX_ROUND_SECONDS = 0.5


def _pytest_benchmark() -> tuple[Callable[[], float], Any]:
    try:
        from pytest_benchmark.stats import Stats
        from pytest_benchmark.timers import default_timer
    except ImportError as exc:
        raise ImportError(
            "timing needs pytest-benchmark (its clock and statistics): pip install 'bpcore[bench]'"
        ) from exc
    return default_timer, Stats


@dataclass
class Timing:
    """What `time_interleaved` measured for one row.

    ``times`` are seconds per call, one per round (a round's time over its ``iterations``
    calls); ``first_call`` is the first call's time, kept out of ``times`` (warm-up: caches,
    allocations, and on a compiled row the compilation); ``error`` is what the row raised, if
    it failed (then ``times`` holds the rounds before it).
    """

    name: str
    times: list[float] = field(default_factory=list)
    iterations: int = 1
    first_call: float = math.nan
    error: str | None = None


def stats_of(times: Sequence[float]) -> dict[str, float]:
    """pytest-benchmark's statistics of ``times``: median, quartiles, IQR, min, max, mean, stddev.

    Empty ``times`` give NaN for every figure.
    """
    _, Stats = _pytest_benchmark()
    names = ("median", "iqr", "q1", "q3", "min", "max", "mean", "stddev")
    if not times:
        return dict.fromkeys(names, math.nan)
    stats = Stats()
    for t in times:
        stats.update(t)
    return {name: float(getattr(stats, name)) for name in names}


def time_interleaved(
    rows: Sequence[tuple[str, Callable[[], Any], int]],
    rounds: int,
    *,
    progress: Callable[[], None] | None = None,
    settle: float = SETTLE_SECONDS,
) -> list[Timing]:
    """Time each ``(name, call, period)`` row ``rounds`` times, interleaved within each round.

    Each call must leave nothing running (it waits for its device: `bpcore.testing.synchronize`).
    A row's first call is timed apart (``first_call``), then it runs untimed to the end of its
    first ``period`` (a `bpcore.Trainer` step does extra work once per epoch: ``period`` is the
    steps of an epoch, 1 elsewhere), and one more period is timed to set how many calls a round
    makes of every row: the same number for all (so that each row's round spans the same
    stretch of the machine's load), enough for the fastest row's round to last
    `MIN_ROUND_SECONDS`, then rounded up to a whole number of each row's period. Round ``r``
    starts at row ``r mod len(rows)``, so that no row always runs first or right after the same
    neighbour; before each row's round the harness waits ``settle`` seconds
    (`SETTLE_SECONDS`) for other libraries' threads. A row that raises is marked with its error
    and left out of the later rounds; the others go on. ``progress`` is called after every
    timed round of every row.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    timer, _ = _pytest_benchmark()
    timings = [Timing(name) for name, _, _ in rows]
    if not rows:
        return timings
    fastest, slowest = math.inf, 0.0
    for timing, (_, call, period) in zip(timings, rows, strict=True):
        time.sleep(settle)
        try:
            start = timer()
            call()
            timing.first_call = timer() - start
            for _ in range(period - 1):
                call()
            start = timer()
            for _ in range(period):
                call()
            once = (timer() - start) / period
            fastest, slowest = min(fastest, once), max(slowest, once)
        except Exception as exc:  # the row failed: say how, time the others
            timing.error = f"{type(exc).__name__}: {exc}"
    wanted = math.ceil(MIN_ROUND_SECONDS / fastest) if 0 < fastest < math.inf else 1
    if slowest > 0:
        wanted = min(wanted, math.floor(MAX_ROUND_SECONDS / slowest))
    calls = max(1, min(MAX_ITERATIONS, wanted))
    for timing, (_, _, period) in zip(timings, rows, strict=True):
        # whole periods always: a Trainer row's rounds then all hold the same share of the
        # once-an-epoch work, also where one step is slower than a round should last
        timing.iterations = period * math.ceil(calls / period)
    for r in range(rounds):
        order = list(range(r % len(rows), len(rows))) + list(range(r % len(rows)))
        for i in order:
            timing, (_, call, _) = timings[i], rows[i]
            if timing.error is None:
                time.sleep(settle)
                try:
                    start = timer()
                    for _ in range(timing.iterations):
                        call()
                    timing.times.append((timer() - start) / timing.iterations)
                except Exception as exc:
                    timing.error = f"{type(exc).__name__}: {exc}"
            if progress is not None:
                progress()
    return timings
