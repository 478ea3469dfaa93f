"""The Fashion-MNIST job, one epoch: bpcore's Trainer on each backend next to PyTorch eager.

TwoLayerNet(784, 256, 10, weight_init_std="he"), Adam lr 1e-3, mini-batches of 100, 600 steps
over 60,000 images, float32. The data are on the device before the clock starts, for both. Run::

    python -m pytest benchmarks/test_training_job.py --benchmark-enable

and compare the medians of the group: the peer row is ``test_epoch_pytorch_eager``.
``test_epochs_alternated`` runs a bpcore epoch and a PyTorch epoch in turn, so that the
machine's drift over minutes hits both, and keeps the ratio of their medians in its
``extra_info`` (``ratio_to_pytorch``): the target is at most 1.0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from bpcore import Trainer, TwoLayerNet
from bpcore.testing import synchronize

GROUP = "epoch Fashion-MNIST 784-256-10 Adam b100 float32"
SHAPE = (60_000, 784)


@pytest.fixture(scope="module")
def fashion_train():
    """The real training set when Debian's package is there, else random data of its shape:
    the time of a step does not depend on the values (they are not zeros, and finite)."""
    if Path("/usr/share/datasets/fashion-mnist").is_dir() or os.environ.get("BPCORE_REQUIRE_DATA"):
        from bpcore.datasets import load_fashion_mnist

        (x, t), _ = load_fashion_mnist(download=False)
        return x, t.astype(np.int64)
    rng = np.random.default_rng(0)
    return rng.random(SHAPE, dtype=np.float32), rng.integers(0, 10, SHAPE[0])


def _bpcore_trainer(backend, x, t):
    """A fresh one-epoch Trainer of the job, evaluating one sample (the steps are timed)."""
    small = slice(0, 100)
    net = TwoLayerNet(784, 256, 10, weight_init_std="he", seed=0, **backend.net_kwargs())
    return Trainer(
        net,
        x,
        t,
        x[small],
        t[small],
        epochs=1,
        mini_batch_size=100,
        optimizer="Adam",
        optimizer_param={"lr": 1e-3},
        verbose=False,
        seed=0,
        evaluate_sample_num_per_epoch=1,  # the epoch's steps, not an evaluation pass
    )


def _bpcore_epoch(trainer):
    trainer.train()
    synchronize(trainer.network.params["W1"])
    return trainer


def _torch_model(torch):
    """The job's network in PyTorch, and its Adam."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _torch_epoch(torch, model, optimizer, x, t):
    """One epoch of 600 steps in PyTorch eager; the losses, as NumPy."""
    losses = []
    perm = torch.from_numpy(np.random.default_rng([0, 0]).permutation(SHAPE[0]))
    for step in range(600):
        idx = perm[step * 100 : (step + 1) * 100]
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx]), t[idx])
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).numpy()


def test_epochs_alternated(benchmark, backend, fashion_train):
    torch = pytest.importorskip("torch")
    benchmark.group = GROUP + " alternated"
    benchmark.extra_info["row"] = f"bpcore[{backend.id}] alternated with pytorch_eager"
    x, t = fashion_train
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)
    torch_seconds = []

    def setup():  # the PyTorch epoch, timed here, right before each bpcore epoch
        model, optimizer = _torch_model(torch)
        started = time.perf_counter()
        losses = _torch_epoch(torch, model, optimizer, tx, tt)
        torch_seconds.append(time.perf_counter() - started)
        assert losses[-50:].mean() < losses[:50].mean()
        return (_bpcore_trainer(backend, x, t),), {}

    trainer = benchmark.pedantic(_bpcore_epoch, setup=setup, rounds=5, iterations=1)
    assert len(trainer.train_loss_list) == 600
    torch_median = float(np.median(torch_seconds))
    benchmark.extra_info["pytorch_eager_median_s"] = torch_median
    if benchmark.stats is not None:  # None with --benchmark-disable: one untimed round
        benchmark.extra_info["ratio_to_pytorch"] = benchmark.stats.stats.median / torch_median


def test_epoch_bpcore(benchmark, backend, fashion_train):
    benchmark.group = GROUP
    x, t = fashion_train

    def setup():
        return (_bpcore_trainer(backend, x, t),), {}

    trainer = benchmark.pedantic(_bpcore_epoch, setup=setup, rounds=3, iterations=1)
    assert len(trainer.train_loss_list) == 600
    assert np.mean(trainer.train_loss_list[-50:]) < np.mean(trainer.train_loss_list[:50])


def test_epoch_pytorch_eager(benchmark, fashion_train):
    torch = pytest.importorskip("torch")
    benchmark.group = GROUP
    x, t = torch.from_numpy(fashion_train[0]), torch.from_numpy(fashion_train[1])

    def setup():
        return _torch_model(torch), {}

    def epoch(model, optimizer):
        return _torch_epoch(torch, model, optimizer, x, t)

    losses = benchmark.pedantic(epoch, setup=setup, rounds=3, iterations=1)
    assert losses[-50:].mean() < losses[:50].mean()
