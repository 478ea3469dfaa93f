"""A training step (gradient + SGD update) at four sizes, next to its peers and its floor.

Rows in each group ``step <size> <dtype>``:

* ``bpcore[<backend>]``: the book's loop through the public API, ``grads =
  net.gradient(x, t)`` then ``optimizer.update(net.params, grads)``, checks included;
* ``bpcore compiled[<backend>]``: the same step from ``bpcore.compile_step`` (one ``jax.jit``
  program on JAX; JAX only, elsewhere it is the row above);
* ``bpcore trainer[<backend>]``: ``Trainer.train_step()`` over ten batches of that size
  (shuffled gathers, the read-back and an evaluation of one sample at each epoch's end);
* ``book_numpy``: the book's layer code in plain NumPy (``bpcore/bench/book_reference.py``), bugs fixed;
* ``pytorch_eager``: ``Linear``-``ReLU``-...-``Linear``, ``cross_entropy``, ``torch.optim.SGD``;
* ``floor[<backend>]``: only the matrix products a step cannot avoid (the forward ones, and in
  backward every weight gradient plus every input gradient but the first layer's), in the
  backend's own namespace.

Each timed callable waits for the device; inputs are random, never zeros; every benchmark checks
its result. ``benchmarks/report.py`` turns the saved JSON into the table and chart of the docs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bpcore import MultiLayerNet, Trainer, compile_step, to_numpy
from bpcore.optimizers import SGD
from bpcore.testing import synchronize

SIZES = {
    "784-50-10 b100": ([784, 50, 10], 100),
    "784-1000-10 b256": ([784, 1000, 10], 256),
    "784-4096-10 b1024": ([784, 4096, 10], 1024),
    "784-256-256-256-10 b256": ([784, 256, 256, 256, 10], 256),
}
LR = 0.01


@pytest.fixture(params=list(SIZES), ids=lambda s: s.replace(" ", "-"))
def size(request):
    return request.param


def _host_data(size, dtype):
    sizes, batch = SIZES[size]
    rng = np.random.default_rng(0)
    x = rng.random((batch, sizes[0])).astype(dtype)
    t = rng.integers(0, sizes[-1], batch)
    return sizes, x, t


def _group(benchmark, size, dtype):
    benchmark.group = f"step {size} {dtype}"
    benchmark.extra_info.update({"size": size, "dtype": dtype})


def _net(backend, dtype, size):
    sizes, x_host, t_host = _host_data(size, dtype)
    net = MultiLayerNet(
        sizes[0], sizes[1:-1], sizes[-1], seed=0, dtype=dtype, **backend.net_kwargs()
    )
    return net, backend.asarray(x_host), backend.asarray(t_host)


def test_bpcore(benchmark, backend, dtype, size):
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = f"bpcore[{backend.id}]"
    net, x, t = _net(backend, dtype, size)
    optimizer = SGD(lr=LR)
    first = float(net.loss(x, t))

    def step():
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
        synchronize(net.params["W1"])

    step()  # warm-up outside the timed rounds
    benchmark(step)
    assert float(net.loss(x, t)) < first


def test_bpcore_compiled(benchmark, backend, dtype, size):
    if backend.name != "jax":
        pytest.skip("compile_step runs the public step eagerly here: the bpcore row")
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = f"bpcore compiled[{backend.id}]"
    net, x, t = _net(backend, dtype, size)
    first = float(net.loss(x, t))
    step = compile_step(net, SGD(lr=LR))
    assert step.compiled

    def run():
        synchronize(step(x, t))

    run()  # compiles outside the timed rounds
    benchmark(run)
    assert float(net.loss(x, t)) < first


def test_bpcore_trainer(benchmark, backend, dtype, size):
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = f"bpcore trainer[{backend.id}]"
    sizes, x_host, t_host = _host_data(size, dtype)
    net = MultiLayerNet(
        sizes[0], sizes[1:-1], sizes[-1], seed=0, dtype=dtype, **backend.net_kwargs()
    )
    x_train, t_train = np.concatenate([x_host] * 10), np.concatenate([t_host] * 10)
    trainer = Trainer(
        net,
        x_train,
        t_train,
        x_host,
        t_host,
        epochs=10**6,
        mini_batch_size=x_host.shape[0],
        optimizer="SGD",
        optimizer_param={"lr": LR},
        evaluate_sample_num_per_epoch=1,
        verbose=False,
        seed=0,
    )

    def step():
        trainer.train_step()
        synchronize(net.params["W1"])

    step()
    benchmark(step)
    while len(trainer.train_loss_list) < 2 * trainer.iter_per_epoch:  # two epochs' losses
        trainer.train_step()
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]


def test_book_numpy(benchmark, dtype, size):
    from bpcore.bench.book_reference import SGD as BookSGD
    from bpcore.bench.book_reference import TwoLayerNet as BookNet

    sizes, x, t = _host_data(size, dtype)
    if len(sizes) != 3:
        pytest.skip("the book's TwoLayerNet has one hidden layer")
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = "book_numpy"
    rng = np.random.default_rng(0)
    params = {
        "W1": (np.sqrt(2 / sizes[0]) * rng.standard_normal(sizes[:2])).astype(dtype),
        "b1": np.zeros(sizes[1], dtype=dtype),
        "W2": (np.sqrt(2 / sizes[1]) * rng.standard_normal(sizes[1:])).astype(dtype),
        "b2": np.zeros(sizes[2], dtype=dtype),
    }
    net, optimizer = BookNet(params), BookSGD(lr=LR)
    first = net.loss(x, t)

    def step():
        optimizer.update(net.params, net.gradient(x, t))

    step()
    benchmark(step)
    assert net.loss(x, t) < first


def test_pytorch_eager(benchmark, dtype, size):
    torch = pytest.importorskip("torch")
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = "pytorch_eager"
    sizes, x_host, t_host = _host_data(size, dtype)
    torch.manual_seed(0)
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(int(n_in), int(n_out), dtype=getattr(torch, dtype)))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, t = torch.from_numpy(x_host), torch.from_numpy(t_host)
    first = float(torch.nn.functional.cross_entropy(model(x), t).detach())

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), t).backward()
        optimizer.step()

    step()
    benchmark(step)
    assert float(torch.nn.functional.cross_entropy(model(x), t).detach()) < first


def test_floor(benchmark, backend, dtype, size):
    _group(benchmark, size, dtype)
    benchmark.extra_info["row"] = f"floor[{backend.id}]"
    sizes, x_host, _ = _host_data(size, dtype)
    rng = np.random.default_rng(1)
    weights = [
        backend.asarray(0.05 * rng.standard_normal((a, b)), dtype)
        for a, b in itertools.pairwise(sizes)
    ]
    x = backend.asarray(x_host)
    dy = backend.asarray(rng.standard_normal((x_host.shape[0], sizes[-1])), dtype)

    def step():
        hs = [x]
        for W in weights:
            hs.append(hs[-1] @ W)
        d = dy
        grads = []
        for i in range(len(weights) - 1, -1, -1):
            grads.append(hs[i].T @ d)
            if i > 0:  # no input gradient for the first layer
                d = d @ weights[i].T
        grads = list(backend.resolve().compute(*grads))  # Dask: run the products, all at once
        synchronize(grads[-1])
        return grads

    step()
    grads = benchmark(step)
    assert tuple(grads[-1].shape) == (sizes[0], sizes[1])
    first = to_numpy(grads[-1])
    assert np.all(np.isfinite(first))
    assert np.any(first != 0)
