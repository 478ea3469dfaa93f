"""A training step of the book's convolutional networks at batch 100, beside its peers.

The rows are `bpcore bench`'s (`bpcore.bench.workloads`), timed here by pytest-benchmark. Rows
in each group ``conv step <model> b100 float32``:

* ``bpcore book loop [<backend>:<device>]``: the book's loop through the public API, ``grads =
  net.gradient(x, t)`` then ``optimizer.update(net.params, grads)``, inputs on the device;
* ``bpcore compiled [...]``: ``bpcore.compile_step``'s step (JAX only);
* ``book numpy``: the book's own im2col code in plain NumPy (``bpcore/bench/book_reference.py``);
* ``pytorch eager [cpu]``: ``nn.Conv2d``, ``ReLU``, ``MaxPool2d``, ``Linear`` (and ``Dropout``),
  ``cross_entropy``, ``torch.optim.SGD``.

Each step is timed a few rounds (a DeepConvNet step takes a good part of a second on two
cores); the timed call waits for the device and every row checks that its loss went down.
"""

from __future__ import annotations

import pytest
from test_step import time_row

MODELS = {"SimpleConvNet": "convnet", "DeepConvNet": "deepconvnet"}
BATCH = 100
ROUNDS = {"SimpleConvNet": 15, "DeepConvNet": 3}
DTYPE = "float32"  # the targets are for float32; float64 would double the run


@pytest.fixture(params=list(MODELS))
def model(request):
    return request.param


def _time(benchmark, kind, model, backend=None):
    size = (MODELS[model], BATCH)
    time_row(benchmark, kind, size, DTYPE, backend, group="conv step", rounds=ROUNDS[model])


def test_bpcore(benchmark, backend, model):
    _time(benchmark, "book loop", model, backend)


def test_bpcore_compiled(benchmark, backend, model):
    _time(benchmark, "compiled", model, backend)


def test_book_numpy(benchmark, model):
    _time(benchmark, "book numpy", model)


def test_pytorch_eager(benchmark, model):
    pytest.importorskip("torch")
    _time(benchmark, "pytorch eager", model)
