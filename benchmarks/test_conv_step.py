"""A training step of the book's convolutional networks at batch 100, beside its peers.

Rows in each group ``conv step <model> b100 <dtype>``:

* ``bpcore[<backend>]``: the book's loop through the public API, ``grads = net.gradient(x, t)``
  then ``optimizer.update(net.params, grads)``, inputs as a user holds them (on the device);
* ``book_numpy``: the book's own im2col code in plain NumPy (``bpcore/bench/book_reference.py``), bugs fixed;
* ``pytorch_eager``: ``nn.Conv2d``, ``ReLU``, ``MaxPool2d``, ``Linear`` (and ``Dropout``),
  ``cross_entropy``, ``torch.optim.SGD``.

The CPU targets of the chapters 6 to 8 issue, for bpcore on NumPy in float32: at least twice as
fast as the book's code, at most 1.5 times PyTorch eager's time. Each step is timed a few rounds
(a DeepConvNet step takes about a second on two cores); the timed callable waits for the device
and every benchmark checks that its loss went down.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import DeepConvNet, SimpleConvNet, to_numpy
from bpcore.optimizers import SGD
from bpcore.testing import synchronize

MODELS = {"SimpleConvNet": SimpleConvNet, "DeepConvNet": DeepConvNet}
BATCH = 100
LR = 0.01
ROUNDS = {"SimpleConvNet": 15, "DeepConvNet": 3}
DTYPE = "float32"  # the targets are for float32; float64 would double the run


@pytest.fixture(params=list(MODELS))
def model(request):
    return request.param


def _group(benchmark, model, dtype):
    benchmark.group = f"conv step {model} b{BATCH} {dtype}"
    benchmark.extra_info.update({"size": f"{model} b{BATCH}", "dtype": dtype})


def _host_data(dtype):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28)).astype(dtype)
    t = rng.integers(0, 10, BATCH)
    return x, t


def _run(benchmark, model, step):
    step()  # warm-up outside the timed rounds
    benchmark.pedantic(step, rounds=ROUNDS[model], iterations=1, warmup_rounds=0)


def test_bpcore(benchmark, backend, model):
    dtype = DTYPE
    _group(benchmark, model, dtype)
    benchmark.extra_info["row"] = f"bpcore[{backend.id}]"
    x_host, t_host = _host_data(dtype)
    net = MODELS[model](seed=0, dtype=dtype, **backend.net_kwargs())
    x, t = backend.asarray(x_host), backend.asarray(t_host)
    optimizer = SGD(lr=LR)
    first = float(net.loss(x, t))

    def step():
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
        synchronize(net.params["W1"])

    _run(benchmark, model, step)
    assert float(net.loss(x, t)) < first


def _book_params(model, dtype):
    """The book's initial parameters, drawn as its constructors draw them."""
    net = MODELS[model](seed=0, dtype=dtype)
    return {k: to_numpy(v).copy() for k, v in net.params.items()}


def test_book_numpy(benchmark, model):
    from bpcore.bench.book_reference import SGD as BookSGD
    from bpcore.bench.book_reference import ConvNet

    dtype = DTYPE
    _group(benchmark, model, dtype)
    benchmark.extra_info["row"] = "book_numpy"
    x, t = _host_data(dtype)
    params = _book_params(model, dtype)
    net = ConvNet.simple(params) if model == "SimpleConvNet" else ConvNet.deep(params)
    optimizer = BookSGD(lr=LR)
    first = net.loss(x, t)

    def step():
        optimizer.update(net.params, net.gradient(x, t))

    _run(benchmark, model, step)
    assert net.loss(x, t) < first


def _torch_model(torch, model, dtype):
    nn = torch.nn
    kw = {"dtype": getattr(torch, dtype)}
    if model == "SimpleConvNet":
        return nn.Sequential(
            nn.Conv2d(1, 30, 5, **kw),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(30 * 12 * 12, 100, **kw),
            nn.ReLU(),
            nn.Linear(100, 10, **kw),
        )
    layers, channels = [], 1
    for i, (filters, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
        layers += [nn.Conv2d(channels, filters, 3, padding=pad, **kw), nn.ReLU()]
        channels = filters
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2, 2))
    layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 50, **kw), nn.ReLU(), nn.Dropout(0.5)]
    layers += [nn.Linear(50, 10, **kw), nn.Dropout(0.5)]
    return nn.Sequential(*layers)


def test_pytorch_eager(benchmark, model):
    torch = pytest.importorskip("torch")
    dtype = DTYPE
    _group(benchmark, model, dtype)
    benchmark.extra_info["row"] = "pytorch_eager"
    x_host, t_host = _host_data(dtype)
    torch.manual_seed(0)
    net = _torch_model(torch, model, dtype)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    x, t = torch.from_numpy(x_host), torch.from_numpy(t_host)
    net.eval()
    first = float(torch.nn.functional.cross_entropy(net(x), t).detach())
    net.train()

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), t).backward()
        optimizer.step()

    _run(benchmark, model, step)
    net.eval()
    assert float(torch.nn.functional.cross_entropy(net(x), t).detach()) < first
