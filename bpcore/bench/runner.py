"""`run_bench`: build each group's rows, time them interleaved, check them, report.

A group is one model at one batch size in one dtype. Its rows (every backend's and the peers')
are built together, timed together in interleaved rounds (`bpcore.bench.timing`), then each
row's check runs: a row whose loss did not go down, or that raised, is marked failed with the
reason, and the others stand.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

from ..backends import BACKEND_CLASSES, Backend, available_backends, resolve_backend
from .report import BenchReport, BenchRow
from .timing import SETTLE_SECONDS, stats_of, time_interleaved
from .workloads import (
    BENCH_DTYPES,
    BENCH_OPTIMIZERS,
    PEER_BACKENDS,
    ModelSpec,
    Workload,
    bpcore_rows,
    parse_model,
    peer_rows,
)

__all__ = ["DEFAULT_MODELS", "QUICK", "run_bench"]

#: What `run_bench` and ``bpcore bench`` time by default: the book's MLP, a wider one, and the
#: book's two conv nets.
DEFAULT_MODELS = ("mlp", "mlp-1000", "convnet", "deepconvnet")

#: What ``bpcore bench --quick`` runs: the book's MLP and SimpleConvNet at batch 100, 5 rounds
#: (about a minute on two CPU cores with the five CPU backends).
QUICK: dict[str, Any] = {"models": ["mlp", "convnet"], "batch_sizes": [100], "rounds": 5}


def _installed() -> list[Backend]:
    """Every installed backend on the devices its tests cover: the CPU, and the first GPU
    (array-api-strict's simulated devices are left out: they are NumPy's CPU again)."""
    found = []
    for name, devices in available_backends().items():
        devices = BACKEND_CLASSES[name].test_devices(devices) if devices else []
        found += [resolve_backend(name, device) for device in devices]
    return found


def run_bench(
    models: Sequence[str | ModelSpec] = DEFAULT_MODELS,
    backends: Sequence[Any] | None = None,
    *,
    batch_sizes: Sequence[int] = (100,),
    dtype: str = "float32",
    optimizer: str = "sgd",
    rounds: int = 10,
    seed: int = 0,
    peers: bool = True,
    progress: bool = False,
    environment: dict[str, Any] | None = None,
) -> BenchReport:
    """Time one training step of each model on each backend, beside the peers.

    Parameters
    ----------
    models : sequence of str or ModelSpec
        ``mlp`` (784-50-10), ``mlp-1000`` (any hidden sizes: ``mlp-256-256``), ``convnet``
        (SimpleConvNet), ``deepconvnet`` (DeepConvNet).
    backends : sequence of Backend, name or (name, device), optional
        By default every installed backend, on the CPU and the first GPU it has.
    batch_sizes : sequence of int
        Several make a sweep: where one device overtakes another.
    dtype : {"float32", "float64", "mixed_float16", "mixed_bfloat16"}
        What the steps compute in; a mixed precision's group has the backends whose device has
        its half dtype, and PyTorch eager with autocast (and a ``GradScaler`` for float16).
    optimizer : {"sgd", "adam"}
        What every row steps with, at the book's learning rate (0.01, 0.001): bpcore's, the
        book's code's, ``torch.optim``'s.
    rounds : int
        Timed rounds per row, interleaved across the group's rows.
    seed : int
        Seeds the weights (the same on every backend) and the batch.
    peers : bool
        Also time the book's NumPy code and PyTorch eager (where installed).
    progress : bool
        Show a progress bar on stderr.
    environment : dict, optional
        The environment report to record; by default `bpcore.environment_info`'s.

    Returns
    -------
    BenchReport
        Its ``failed`` is true when a row raised or did not train.
    """
    from ..environment import environment_info

    if dtype not in BENCH_DTYPES:
        valid = ", ".join(BENCH_DTYPES)
        raise ValueError(f"dtype must be one of {valid}, got {dtype!r}")
    if optimizer not in BENCH_OPTIMIZERS:
        valid = ", ".join(BENCH_OPTIMIZERS)
        raise ValueError(f"optimizer must be one of {valid}, got {optimizer!r}")
    if rounds < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("rounds and batch sizes must be at least 1")
    specs = [m if isinstance(m, ModelSpec) else parse_model(m) for m in models]
    if not specs:
        raise ValueError("no model to time")
    resolved = _installed() if backends is None else [_resolve(b) for b in backends]
    if dtype == "float64":
        for backend in resolved:
            backend.enable_float64()
    report = BenchReport(
        settings={
            "models": [s.name for s in specs],
            "backends": [f"{b.name}:{b.device_name}" for b in resolved],
            "batch_sizes": [int(b) for b in batch_sizes],
            "dtype": dtype,
            "optimizer": optimizer,
            "rounds": int(rounds),
            "seed": int(seed),
            "peers": bool(peers),
        },
        # Only the libraries this run uses (the PyTorch peer's included): on a GPU machine,
        # reporting JAX would start it, and it would reserve most of the GPU's memory.
        environment=environment
        if environment is not None
        else environment_info(
            {b.name for b in resolved} | (PEER_BACKENDS if peers else frozenset())
        ),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    for spec in specs:
        for batch_size in batch_sizes:
            report.rows += _group(
                spec, resolved, int(batch_size), dtype, optimizer, rounds, seed, peers, progress
            )
    return report


def _resolve(backend: Any) -> Backend:
    if isinstance(backend, tuple):
        return resolve_backend(*backend)
    return resolve_backend(backend)


def _group(
    spec: ModelSpec,
    backends: list[Backend],
    batch_size: int,
    dtype: str,
    optimizer: str,
    rounds: int,
    seed: int,
    peers: bool,
    progress: bool,
) -> list[BenchRow]:
    def row(work: Workload | None, name: str, error: str | None, timing: Any = None) -> BenchRow:
        return BenchRow(
            model=spec.name,
            label=spec.label,
            batch_size=batch_size,
            dtype=dtype,
            name=work.name if work else name,
            kind=work.kind if work else "book loop",
            backend=work.backend if work else name.split("[")[-1].split(":")[0],
            device=work.device if work else None,
            times_s=list(timing.times) if timing else [],
            iterations=timing.iterations if timing else 0,
            first_call_s=timing.first_call if timing else math.nan,
            stats=stats_of(timing.times if timing and error is None else []),
            error=error,
        )

    works: list[Workload] = []
    failed: list[BenchRow] = []
    for backend in backends:
        where = f"{backend.name}:{backend.device_name}"
        try:
            works += bpcore_rows(spec, backend, batch_size, dtype, seed, optimizer)
        except Exception as exc:  # a backend that cannot build this network: say so, go on
            failed.append(row(None, f"bpcore [{where}]", f"{type(exc).__name__}: {exc}"))
    if peers:
        works += peer_rows(spec, batch_size, dtype, seed, optimizer)
    bar = _bar(progress, rounds * len(works), f"{spec.name} b{batch_size}")
    try:
        # Rows of one backend share its thread pool: nothing to let settle between them (the
        # peers count apart: None is the book's code).
        libraries = {w.backend for w in works}
        timings = time_interleaved(
            [(w.name, w.call, w.period) for w in works],
            rounds,
            progress=bar.update if bar else None,
            settle=SETTLE_SECONDS if len(libraries) > 1 else 0.0,
        )
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for work, timing in zip(works, timings, strict=True):
        error = timing.error
        if error is None:
            try:
                work.check()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        rows.append(row(work, work.name, error, timing))
    fastest = min((r.median for r in rows if r.error is None), default=math.nan)
    for r in rows:
        r.ratio_to_fastest = r.median / fastest if r.error is None else math.nan
    return rows + failed


def _bar(shown: bool, total: int, desc: str) -> Any:
    if not shown:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="call", leave=False, dynamic_ncols=True)
