"""Precision experiments: mixed-precision training, and the book's ch08 in four dtypes.

    python benchmarks/precision.py [--out PATH] [--quick]

1. **Mixed-precision training** on Fashion-MNIST (Debian's ``dataset-fashion-mnist``, or any
   folder ``bpcore.datasets`` finds): the MLP (784-100-100-10) and SimpleConvNet trained with
   the Trainer (Adam, lr 0.001, batch 100) in float32, ``mixed_float16`` and ``mixed_bfloat16``
   on each backend that has the dtype, from the same seeds (weights and shuffles), and the mean
   test accuracy of each beside float32's on the same backend. One run's accuracy moves by a few
   thousandths with the seed (and with the backend: float32 sums in another order part the
   trajectories as much), so each row is the mean over several seeds, and the float32 rows give
   the seeds' spread.
2. **The book's ch08 experiment** (``half_float_network.py``): a trained DeepConvNet's test
   accuracy with its weights and inputs in float64, float32, float16 and bfloat16. The book
   loads its MNIST weights (``deep_convnet_params.pkl``); MNIST cannot be downloaded on the
   machine these results come from, so the DeepConvNet is trained here, in float32, on
   Fashion-MNIST, and then cast to each dtype, as the book casts its weights to float16.

Writes one JSON document (default ``benchmarks/results/new/precision.json``), which
``benchmarks/report.py`` publishes in docs/precision.md once it is committed as
``benchmarks/results/cpu-2core-precision.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import bpcore
from bpcore.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]

#: (model, backend, epochs, seeds). NumPy's float16 has no BLAS: an MLP epoch in mixed float16
#: takes a minute on two cores and a SimpleConvNet epoch a quarter of an hour, so NumPy's rows
#: have one seed. (Dask has no float16 in array-api-compat's namespace; array-api-strict none.)
TRAINING = [
    ("mlp", "numpy", 5, 1),
    ("mlp", "torch", 5, 3),
    ("mlp", "jax", 5, 3),
    ("convnet", "numpy", 2, 1),
    ("convnet", "torch", 2, 3),
    ("convnet", "jax", 2, 3),
]
PRECISIONS = [None, "mixed_float16", "mixed_bfloat16"]
INFERENCE_DTYPES = ["float64", "float32", "float16", "bfloat16"]


def _build(model: str, backend: str, precision: str | None, seed: int) -> Any:
    kwargs = {"backend": backend, "precision": precision, "seed": seed}
    if model == "mlp":
        return bpcore.MultiLayerNet(784, [100, 100], 10, **kwargs)
    if model == "convnet":
        return bpcore.SimpleConvNet(**kwargs)
    return bpcore.DeepConvNet(**kwargs)


def _train(
    model: str, backend: str, precision: str | None, epochs: int, data: Any, seeds: int = 1
) -> tuple[dict, Any]:
    """Train from each seed; the row holds each run's figures and their means."""
    (x, t), (x_test, t_test) = data
    runs = []
    for seed in range(seeds):
        net = _build(model, backend, precision, seed)
        trainer = bpcore.Trainer(
            net, x, t, x_test, t_test, epochs=epochs, mini_batch_size=100, optimizer="adam",
            optimizer_param={"lr": 0.001}, verbose=False, seed=seed,
        )  # fmt: skip
        trainer.train()
        scaler = getattr(net, "loss_scaler", None)
        runs.append(
            {
                "seed": seed,
                "test_acc": trainer.test_acc_list[-1],
                "train_loss": float(np.mean(trainer.train_loss_list[-trainer.iter_per_epoch :])),
                "seconds": round(trainer.seconds, 2),
                "final_loss_scale": None if scaler is None else float(scaler.scale),
            }
        )
    return {
        "model": model,
        "backend": backend,
        "precision": precision or "float32",
        "epochs": epochs,
        "seeds": seeds,
        "test_acc": float(np.mean([r["test_acc"] for r in runs])),
        "seconds": float(np.mean([r["seconds"] for r in runs])),
        "runs": runs,
    }, net


def _evaluate(net: Any, dtype: str, x_test: np.ndarray, t_test: np.ndarray) -> dict | None:
    if not net.backend_info.has_dtype(dtype):
        return None
    copy = net.to(dtype=dtype, precision=None)
    b = copy.backend_info
    start = time.perf_counter()
    accuracy = copy.accuracy(b.asarray(x_test), b.asarray(t_test), batch_size=500)
    return {
        "backend": copy.backend,
        "dtype": dtype,
        "test_acc": accuracy,
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/new/precision.json"))
    parser.add_argument("--quick", action="store_true", help="one epoch each, 2000 samples")
    parser.add_argument("--deep-epochs", type=int, default=3)
    parser.add_argument(
        "--rows",
        help="only these training rows, as MODEL:BACKEND,... (and no ch08 part); with --add-to, "
        "into that document (its rows of the same model, backend and precision replaced)",
    )
    parser.add_argument("--add-to", metavar="PATH", help="a document of an earlier run")
    args = parser.parse_args(argv)
    limit = 2000 if args.quick else None
    wanted = None if args.rows is None else set(args.rows.split(","))

    flat = load_dataset("fashion-mnist", flatten=True, progress=False)
    images = load_dataset("fashion-mnist", flatten=False, progress=False)
    if limit:
        flat = tuple((x[:limit], t[:limit]) for x, t in flat)
        images = tuple((x[:limit], t[:limit]) for x, t in images)
    training = []
    for model, backend, epochs, seeds in TRAINING:
        if wanted is not None and f"{model}:{backend}" not in wanted:
            continue
        for precision in PRECISIONS:
            if precision and not bpcore.backends.resolve_backend(backend).has_dtype(
                precision.removeprefix("mixed_")
            ):
                continue
            row, _ = _train(model, backend, precision, 1 if limit else epochs,
                            flat if model == "mlp" else images, 1 if limit else seeds)  # fmt: skip
            print(json.dumps(row), file=sys.stderr, flush=True)
            training.append(row)

    if wanted is not None:
        return _write_rows(training, args.add_to, Path(args.out))
    # ch08: DeepConvNet trained in float32, evaluated with its weights cast to each dtype.
    deep_row, deep = _train("deepconvnet", "torch", None, 1 if limit else args.deep_epochs, images)
    print(json.dumps(deep_row), file=sys.stderr, flush=True)
    x_test, t_test = images[1]
    inference = []
    for backend in ("torch", "jax"):
        on = deep.to(backend=backend)
        for dtype in INFERENCE_DTYPES:
            row = _evaluate(on, dtype, x_test, t_test)
            if row is not None:
                print(json.dumps(row), file=sys.stderr, flush=True)
                inference.append(row)

    backends = sorted({r["backend"] for r in training} | {r["backend"] for r in inference})
    document = {
        "kind": "bpcore precision experiments",
        "dataset": "fashion-mnist",
        "quick": bool(limit),
        "optimizer": {"name": "adam", "lr": 0.001, "batch_size": 100},
        "training": training,
        "deepconvnet": deep_row,
        "inference": inference,
        "environment": bpcore.environment_info(backends=backends),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _write_rows(training: list[dict], add_to: str | None, out: Path) -> int:
    """Write ``training``'s rows alone, or into the document at ``add_to`` (replacing its rows
    of the same model, backend and precision, in `TRAINING`'s order)."""
    document: dict[str, Any] = {"training": []}
    if add_to is not None:
        document = json.loads(Path(add_to).read_text())
    key = lambda r: (r["model"], r["backend"], r["precision"])  # noqa: E731
    rows = {key(r): r for r in document["training"]} | {key(r): r for r in training}
    order = [(m, b) for m, b, _, _ in TRAINING]
    document["training"] = sorted(
        rows.values(),
        key=lambda r: (order.index((r["model"], r["backend"])), key(r)[2] != "float32"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
