"""A training step (gradient + SGD update) at four sizes, next to its peers and its floor.

The rows are `bpcore bench`'s (`bpcore.bench.workloads`, the one definition of what is timed),
here timed by pytest-benchmark for the nox ``bench`` sessions. Rows in each group
``step <size> <dtype>``:

* ``bpcore book loop [<backend>:<device>]``: the book's loop through the public API, ``grads =
  net.gradient(x, t)`` then ``optimizer.update(net.params, grads)``, checks included;
* ``bpcore compiled [...]``: the same step from ``bpcore.compile_step`` (JAX only);
* ``bpcore trainer [...]``: ``Trainer.train_step()`` over ten batches of that size;
* ``book numpy``: the book's layer code in plain NumPy (``bpcore/bench/book_reference.py``);
* ``pytorch eager [cpu]``: ``Linear``-``ReLU``-...-``Linear``, ``cross_entropy``, SGD;
* ``floor [...]``: only the matrix products a step cannot avoid, in the backend's namespace.

Each timed call waits for the device; inputs are random, never zeros; every row checks after
its rounds that its loss went down. ``benchmarks/report.py`` publishes the saved JSON.
"""

from __future__ import annotations

import pytest

from bpcore.bench.workloads import build, parse_model

SIZES = {
    "784-50-10 b100": ("mlp", 100),
    "784-1000-10 b256": ("mlp-1000", 256),
    "784-4096-10 b1024": ("mlp-4096", 1024),
    "784-256-256-256-10 b256": ("mlp-256-256-256", 256),
}


@pytest.fixture(params=list(SIZES), ids=lambda s: s.replace(" ", "-"))
def size(request):
    return request.param


def time_row(benchmark, kind, size, dtype, backend=None, *, group="step", rounds=None):
    """Build one row of `bpcore.bench.workloads`, time it, check it."""
    model, batch = SIZES.get(size, size)
    backend_info = backend.resolve() if backend is not None else None
    work = build(kind, parse_model(model), batch, dtype, 0, backend_info)
    if work is None:
        pytest.skip(f"no {kind} row here (no compiled step, or not the book's network)")
    label = size if size in SIZES else f"{parse_model(model).label} b{batch}"
    benchmark.group = f"{group} {label} {dtype}"
    benchmark.extra_info.update({"size": label, "dtype": dtype, "row": work.name})
    for _ in range(work.period):  # warm-up (and compilation) outside the timed rounds
        work.call()
    if rounds is None:
        benchmark(work.call)
    else:
        benchmark.pedantic(work.call, rounds=rounds, iterations=1, warmup_rounds=0)
    work.check()


def test_bpcore(benchmark, backend, dtype, size):
    time_row(benchmark, "book loop", size, dtype, backend)


def test_bpcore_compiled(benchmark, backend, dtype, size):
    time_row(benchmark, "compiled", size, dtype, backend)


def test_bpcore_trainer(benchmark, backend, dtype, size):
    time_row(benchmark, "trainer", size, dtype, backend)


def test_book_numpy(benchmark, dtype, size):
    time_row(benchmark, "book numpy", size, dtype)


def test_pytorch_eager(benchmark, dtype, size):
    pytest.importorskip("torch")
    time_row(benchmark, "pytorch eager", size, dtype)


def test_floor(benchmark, backend, dtype, size):
    time_row(benchmark, "floor", size, dtype, backend)
