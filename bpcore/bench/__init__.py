"""``bpcore bench``: one training step of the book's networks on every backend, beside its peers.

`run_bench` times, for each model, batch size and dtype, the rows users run (the book's loop
through the public API, the Trainer's step, the compiled step where a backend compiles one) on
every backend and device, and the peers (the book's NumPy code, PyTorch eager, the
matrix-product floor), their rounds interleaved; it returns a `BenchReport` (a table, a
versioned JSON document, a chart, a comparison with a baseline). The modules:

* `bpcore.bench.workloads`: the rows, each a call that runs one step and waits for its device;
* `bpcore.bench.timing`: interleaved rounds on pytest-benchmark's clock and statistics (the
  ``benchmarks/`` suite, run by the nox ``bench`` sessions, times the same workloads);
* `bpcore.bench.report`: the report;
* `bpcore.bench.book_reference`: the book's layers in plain NumPy, the ``book numpy`` row.

Timing needs pytest-benchmark (``pip install 'bpcore[bench]'``).
"""

from __future__ import annotations

from .report import BENCH_SCHEMA, BENCH_SCHEMA_VERSION, BenchReport, BenchRow, load_baseline
from .runner import DEFAULT_MODELS, QUICK, run_bench
from .workloads import ModelSpec, Workload, parse_model

__all__ = [
    "BENCH_SCHEMA",
    "BENCH_SCHEMA_VERSION",
    "DEFAULT_MODELS",
    "QUICK",
    "BenchReport",
    "BenchRow",
    "ModelSpec",
    "Workload",
    "load_baseline",
    "parse_model",
    "run_bench",
]
