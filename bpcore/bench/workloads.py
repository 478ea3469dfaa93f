"""What ``bpcore bench`` and the ``benchmarks/`` suite time: one training step, as users run it.

Every row is a `Workload`: a call that runs one training step (SGD, or Adam: `BENCH_OPTIMIZERS`)
of one network on one batch and waits for its device, and a check that the steps did train. For
each backend and device:

* ``bpcore book loop``: the book's loop through the public API, ``grads = net.gradient(x, t)``
  then ``optimizer.update(net.params, grads)``, every check included;
* ``bpcore trainer``: `bpcore.Trainer`'s ``train_step()`` over ten batches of that size
  (shuffled gathers, and at each epoch's end the losses read back and one sample evaluated);
* ``bpcore compiled``: `bpcore.compile_step`'s step, where the backend compiles one (JAX);
* ``floor``: only the matrix products an MLP's step cannot avoid, in the backend's namespace.

And the peers, once per run: ``book numpy``, the book's own layer code in plain NumPy
(`bpcore.bench.book_reference`), and ``pytorch eager``, the same network in ``torch.nn`` with
``torch.optim.SGD`` (or ``Adam``), on the CPU and on the first CUDA device where PyTorch has
one.

Inputs are random (never zeros) from the seed; every bpcore network starts from the same
seeded weights on every backend, and the book's code from those same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, TorchBackend, to_numpy
from ..kernels import reference_kernels, using_reference_kernels
from ..optimizers import OPTIMIZERS, Optimizer
from ..steps import compile_step
from ..testing import synchronize

__all__ = [
    "BENCH_DTYPES",
    "BENCH_OPTIMIZERS",
    "LR",
    "MODEL_NAMES",
    "ModelSpec",
    "Workload",
    "bpcore_rows",
    "build",
    "compute_dtype",
    "network_dtype",
    "parse_model",
    "peer_rows",
]

#: The SGD learning rate of every row (the book's default).
LR = 0.01

#: The optimizers a run can step with, and the learning rate of each (the book's defaults).
BENCH_OPTIMIZERS: dict[str, float] = {"sgd": LR, "adam": 0.001}


def bench_optimizer(name: str) -> Optimizer:
    """A fresh bpcore optimizer of that `BENCH_OPTIMIZERS` name, at its learning rate."""
    return OPTIMIZERS[name](lr=BENCH_OPTIMIZERS[name])


#: The model names ``bpcore bench --models`` takes; ``mlp-H`` (``mlp-256-256``: several hidden
#: layers) is the MLP with those hidden sizes.
MODEL_NAMES = ("mlp", "mlp-H[-H...]", "convnet", "deepconvnet")

#: The batches of the ``bpcore trainer`` row's epoch (the batch, repeated).
TRAINER_BATCHES = 10

#: What a group computes in: a dtype, or a mixed precision (float32 parameters, half passes).
BENCH_DTYPES = ("float32", "float64", "mixed_float16", "mixed_bfloat16")


def network_dtype(dtype: str) -> dict[str, Any]:
    """The network keywords for a group's dtype: ``dtype=``, and ``precision=`` if mixed."""
    if dtype.startswith("mixed_"):
        return {"dtype": "float32", "precision": dtype}
    return {"dtype": dtype}


def compute_dtype(dtype: str) -> str:
    """The dtype a group's passes compute in (``float16`` for ``mixed_float16``)."""
    return dtype.removeprefix("mixed_")


_MLP = re.compile(r"mlp(?:-(\d+(?:-\d+)*))?")


@dataclass(frozen=True)
class ModelSpec:
    """One network to time: its name, and for an MLP its hidden sizes (784 in, 10 out)."""

    name: str
    hidden: tuple[int, ...] = ()

    @property
    def is_mlp(self) -> bool:
        """Whether it is a `bpcore.MultiLayerNet` (else one of the book's conv nets)."""
        return bool(self.hidden)

    @property
    def label(self) -> str:
        """What the tables call it: ``784-50-10``, ``SimpleConvNet``, ``DeepConvNet``."""
        if self.is_mlp:
            return "-".join(map(str, (784, *self.hidden, 10)))
        return "SimpleConvNet" if self.name == "convnet" else "DeepConvNet"

    def build(self, **kwargs: Any) -> Any:
        """The bpcore network (``backend=``, ``device=``, ``dtype=``, ``seed=`` as given)."""
        from ..networks import DeepConvNet, MultiLayerNet, SimpleConvNet

        if self.is_mlp:
            return MultiLayerNet(784, list(self.hidden), 10, weight_init_std="he", **kwargs)
        return (SimpleConvNet if self.name == "convnet" else DeepConvNet)(**kwargs)

    def host_batch(self, batch_size: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A random batch: images in [0, 1) (flat for an MLP; float32 for a mixed precision)
        and labels 0 to 9."""
        rng = np.random.default_rng(seed)
        shape = (batch_size, 784) if self.is_mlp else (batch_size, 1, 28, 28)
        host = network_dtype(dtype)["dtype"]
        return rng.random(shape).astype(host), rng.integers(0, 10, batch_size)


def parse_model(text: str) -> ModelSpec:
    """``mlp`` (784-50-10), ``mlp-1000``, ``mlp-256-256-256``, ``convnet`` or ``deepconvnet``.

    Raises
    ------
    ValueError
        For any other name, or a hidden size of 0.
    """
    name = text.strip().lower()
    if name in ("convnet", "deepconvnet"):
        return ModelSpec(name)
    match = _MLP.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown model {text!r}; expected one of {', '.join(MODEL_NAMES)}")
    hidden = tuple(int(h) for h in (match.group(1) or "50").split("-"))
    if min(hidden) < 1:
        raise ValueError(f"model {text!r} has a hidden layer of size 0")
    return ModelSpec(name, hidden)


@dataclass
class Workload:
    """One row: ``call`` runs one training step and waits for the device; ``check`` raises
    (RuntimeError) when the steps run so far did not train (the loss did not go down, or a
    result is not finite); ``period`` is how many calls make one cycle of the row's work (a
    Trainer's epoch: its end reads the losses back and evaluates), so that each timed round
    holds whole cycles."""

    name: str
    kind: str
    backend: str | None
    device: str | None
    call: Callable[[], Any]
    check: Callable[[], None]
    period: int = 1


def _wait(net: Any) -> None:
    """Wait for every parameter: on JAX and GPUs the updates of the last ones may still run."""
    for value in net.params.values():
        synchronize(value)


def _went_down(name: str, loss: Callable[[], float]) -> Callable[[], None]:
    first = loss()

    def check() -> None:
        now = loss()
        if not (math.isfinite(now) and now < first):
            raise RuntimeError(f"{name}: the loss went from {first} to {now}, not down")

    return check


def bpcore_rows(
    spec: ModelSpec,
    backend: Backend,
    batch_size: int,
    dtype: str,
    seed: int,
    optimizer: str = "sgd",
) -> list[Workload]:
    """The rows of one backend and device: book loop, trainer, compiled (where it compiles),
    and for an MLP the floor (not for a mixed precision); for a conv net on a backend whose
    library has its own convolution (`bpcore.kernels`), the book loop once more on the layers'
    reference code, beside it. None for a mixed precision whose dtype the backend lacks."""
    if not backend.has_dtype(compute_dtype(dtype)):
        return []
    kinds = ["book loop", "trainer", "compiled"] + ([] if "mixed" in dtype else ["floor"])
    rows = [
        build(kind, spec, batch_size, dtype, seed, backend, optimizer=optimizer) for kind in kinds
    ]
    if not spec.is_mlp and backend.native_conv2d is not None and not using_reference_kernels():
        loop = build("book loop", spec, batch_size, dtype, seed, backend, optimizer=optimizer)
        rows.append(_on_reference_kernels(loop))
    return [r for r in rows if r is not None]


def _on_reference_kernels(row: Workload | None) -> Workload | None:
    """``row``, its steps run on the layers' Array API code (`reference_kernels`)."""
    if row is None:
        return None
    call = row.call

    def on_reference() -> None:
        with reference_kernels():
            call()

    return dataclasses.replace(row, name=f"{row.name} reference kernels", call=on_reference)


def build(
    kind: str,
    spec: ModelSpec,
    batch_size: int,
    dtype: str,
    seed: int,
    backend: Backend | None = None,
    device: str = "cpu",
    optimizer: str = "sgd",
) -> Workload | None:
    """One row: ``kind`` is ``book loop``, ``trainer``, ``compiled`` or ``floor`` (on
    ``backend``), ``book numpy`` or ``pytorch eager`` (on ``device``), stepping with
    ``optimizer`` (a `BENCH_OPTIMIZERS` name; the floor has none). None where the row does not
    exist: the compiled step on a backend that compiles none, the floor of a conv net, the
    book's code for an MLP of several hidden layers.
    """
    if optimizer not in BENCH_OPTIMIZERS:
        valid = ", ".join(BENCH_OPTIMIZERS)
        raise ValueError(f"optimizer must be one of {valid}, got {optimizer!r}")
    x_host, t_host = spec.host_batch(batch_size, dtype, seed)
    if kind == "book numpy":
        if "mixed" in dtype:
            return None
        return _book_row(spec, x_host, t_host, dtype, seed, optimizer)
    if kind == "pytorch eager":
        import torch

        half = compute_dtype(dtype) if "mixed" in dtype else None
        return _torch_row(torch, spec, x_host, t_host, seed, device, half, optimizer)
    if backend is None:
        raise ValueError(f"the {kind!r} row needs a backend")
    if kind == "floor":
        return _floor_row(spec, backend, x_host, dtype, seed) if spec.is_mlp else None
    where = f"{backend.name}:{backend.device_name}"
    net = spec.build(backend=backend, seed=seed, **network_dtype(dtype))
    x, t = backend.asarray(x_host), backend.asarray(t_host)
    went_down = _went_down(f"{kind} [{where}]", lambda: float(net.loss(x, t)))
    if kind == "trainer":
        call = _trainer_call(net, x_host, t_host, seed, optimizer)
        return Workload(f"bpcore trainer [{where}]", kind, backend.name, backend.device_name,
                        call, went_down, period=TRAINER_BATCHES)  # fmt: skip
    if kind == "compiled":
        step = compile_step(net, bench_optimizer(optimizer))
        if not step.compiled:
            return None

        def compiled() -> None:
            synchronize(step(x, t))

        return Workload(f"bpcore compiled [{where}]", kind, backend.name, backend.device_name,
                        compiled, went_down)  # fmt: skip
    if kind != "book loop":
        raise ValueError(f"unknown row kind {kind!r}")
    stepper = bench_optimizer(optimizer)

    def book_loop() -> None:
        grads = net.gradient(x, t)
        stepper.update(net.params, grads)
        _wait(net)

    return Workload(f"bpcore book loop [{where}]", kind, backend.name, backend.device_name,
                    book_loop, went_down)  # fmt: skip


def _trainer_call(
    net: Any, x_host: np.ndarray, t_host: np.ndarray, seed: int, optimizer: str
) -> Any:
    from ..training import Trainer

    trainer = Trainer(
        net,
        np.concatenate([x_host] * TRAINER_BATCHES),
        np.concatenate([t_host] * TRAINER_BATCHES),
        x_host,
        t_host,
        epochs=10**9,
        mini_batch_size=x_host.shape[0],
        optimizer=optimizer,
        optimizer_param={"lr": BENCH_OPTIMIZERS[optimizer]},
        evaluate_sample_num_per_epoch=1,
        verbose=False,
        seed=seed,
    )

    def call() -> None:
        trainer.train_step()
        _wait(net)

    return call


def _floor_row(
    spec: ModelSpec, backend: Backend, x_host: np.ndarray, dtype: str, seed: int
) -> Workload:
    """The matrix products a step cannot avoid: forward, every weight gradient, and every
    input gradient but the first layer's (which no step needs)."""
    where = f"{backend.name}:{backend.device_name}"
    sizes = (784, *spec.hidden, 10)
    rng = np.random.default_rng(seed + 1)
    weights = [
        backend.asarray((0.05 * rng.standard_normal((a, b))).astype(dtype))
        for a, b in itertools.pairwise(sizes)
    ]
    x = backend.asarray(x_host)
    dy = backend.asarray(rng.standard_normal((x_host.shape[0], sizes[-1])).astype(dtype))
    result: list[Any] = []

    def call() -> None:
        hs = [x]
        for W in weights:
            hs.append(hs[-1] @ W)
        d, grads = dy, []
        for i in range(len(weights) - 1, -1, -1):
            grads.append(hs[i].T @ d)
            if i > 0:
                d = d @ weights[i].T
        grads = list(backend.compute(*grads))  # Dask: run the products, all at once
        synchronize(grads[-1])
        result[:] = grads

    def check() -> None:
        first = to_numpy(result[-1]) if result else np.zeros(1)
        if not (np.all(np.isfinite(first)) and np.any(first != 0)):
            raise RuntimeError(f"floor [{where}]: the first weight gradient is zero or not finite")

    return Workload(f"floor [{where}]", "floor", backend.name, backend.device_name, call, check)


#: The backends whose libraries the peers use (PyTorch eager), for the environment report.
PEER_BACKENDS = frozenset({TorchBackend.name})


def peer_rows(
    spec: ModelSpec, batch_size: int, dtype: str, seed: int, optimizer: str = "sgd"
) -> list[Workload]:
    """The peers: the book's NumPy code (one hidden layer or a conv net), and PyTorch eager on
    the CPU and the first CUDA device where PyTorch is installed."""
    try:
        rows = [build("book numpy", spec, batch_size, dtype, seed, optimizer=optimizer)]
    except Exception as exc:
        rows = [_failed("book numpy", "book numpy", None, None, exc)]
    try:
        import torch
    except ImportError:
        return [r for r in rows if r is not None]
    devices = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    for device in devices:
        try:
            work = build(
                "pytorch eager", spec, batch_size, dtype, seed, device=device, optimizer=optimizer
            )
            rows.append(work)
        except Exception as exc:  # out of memory, say: a failed row, the others still timed
            name = f"pytorch eager [{device}]"
            rows.append(_failed(name, "pytorch eager", "pytorch", device, exc))
    return [r for r in rows if r is not None]


def _failed(
    name: str, kind: str, backend: str | None, device: str | None, exc: Exception
) -> Workload:
    """A row that could not be built: its call raises what building it raised."""

    def call() -> None:
        raise exc

    return Workload(name, kind, backend, device, call, lambda: None)


def _book_row(
    spec: ModelSpec, x: np.ndarray, t: np.ndarray, dtype: str, seed: int, optimizer: str
) -> Workload | None:
    from . import book_reference

    book: Any = book_reference  # the book's code is untyped, as the book writes it
    if spec.is_mlp and len(spec.hidden) != 1:
        return None  # the book's TwoLayerNet has one hidden layer
    # The book's code starts from the weights bpcore draws from the seed.
    params = {k: to_numpy(v).copy() for k, v in spec.build(dtype=dtype, seed=seed).params.items()}
    if spec.is_mlp:
        net = book.TwoLayerNet(params)
    elif spec.name == "convnet":
        net = book.ConvNet.simple(params)
    else:
        net = book.ConvNet.deep(params)
    lr = BENCH_OPTIMIZERS[optimizer]
    stepper = book.Adam(lr=lr) if optimizer == "adam" else book.SGD(lr=lr)

    def call() -> None:
        stepper.update(net.params, net.gradient(x, t))

    check = _went_down("book numpy", lambda: float(net.loss(x, t)))
    return Workload("book numpy", "book numpy", None, None, call, check)


def _torch_module(torch: Any, spec: ModelSpec, dtype: Any) -> Any:
    nn = torch.nn
    kw = {"dtype": dtype}
    if spec.is_mlp:
        layers: list[Any] = []
        sizes = (784, *spec.hidden, 10)
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out, **kw), nn.ReLU()]
        return nn.Sequential(*layers[:-1])
    if spec.name == "convnet":
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


def _torch_row(
    torch: Any,
    spec: ModelSpec,
    x_host: np.ndarray,
    t_host: np.ndarray,
    seed: int,
    device: str,
    half: str | None = None,
    optimizer: str = "sgd",
) -> Workload:
    """PyTorch eager, stepping with ``torch.optim.SGD`` or ``Adam`` (their defaults, at the
    book's learning rate); with ``half``, in mixed precision as PyTorch users write it: autocast
    to that dtype, and for float16 a ``GradScaler``."""
    torch.manual_seed(seed)
    model = _torch_module(torch, spec, getattr(torch, str(x_host.dtype))).to(device)
    kind_of = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    stepper = kind_of(model.parameters(), lr=BENCH_OPTIMIZERS[optimizer])
    x, t = torch.from_numpy(x_host).to(device), torch.from_numpy(t_host).to(device)
    cross_entropy = torch.nn.functional.cross_entropy
    kind = device.split(":")[0]
    autocast = (
        torch.autocast(kind, dtype=getattr(torch, half)) if half else contextlib.nullcontext()
    )
    scaler = torch.amp.GradScaler(kind) if half == "float16" else None

    def wait() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    def call() -> None:
        stepper.zero_grad()
        with autocast:
            loss = cross_entropy(model(x), t)
        if scaler is None:
            loss.backward()
            stepper.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(stepper)
            scaler.update()
        wait()

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            value = float(cross_entropy(model(x), t))
        model.train()
        return value

    return Workload(
        f"pytorch eager [{device}]",
        "pytorch eager",
        "pytorch",
        device,
        call,
        _went_down(f"pytorch eager [{device}]", loss),
    )
