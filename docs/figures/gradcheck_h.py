"""Draw docs/_static/gradcheck-h.png: a central difference's error against its step h.

python docs/figures/gradcheck_h.py

A network of the tutorial's size with tanh (smooth: no ReLU kink to straddle), three scaled
10x10 images, in float64 and in float32: for each h, the central difference of the loss along
one random unit direction through all parameters, against backprop's ``sum(grad * d)``, as a
relative error with no noise allowance (the check allows for rounding noise; this picture shows
where that noise comes from).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import bpcore

OUT = Path(__file__).resolve().parent.parent / "_static" / "gradcheck-h.png"
STEPS = np.logspace(-12, 0, 49)


def errors(dtype: str) -> np.ndarray:
    """The relative error of the directional derivative, for each step in `STEPS`."""
    net = bpcore.MultiLayerNet(
        100, [20], 10, activation="tanh", dtype=dtype, backend="numpy", seed=0
    )
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (3, 100)) / 255).astype(dtype)
    t = np.array([5, 0, 4])
    grads = net.gradient(x, t)
    start = {key: p.copy() for key, p in net.params.items()}
    # One random unit direction through all the parameters at once.
    direction = {key: rng.standard_normal(p.shape) for key, p in start.items()}
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in direction.values()))
    exact = sum(float(np.sum(grads[k].astype(np.float64) * d)) for k, d in direction.items()) / norm

    def loss_at(h: float) -> float:
        for key, p in start.items():
            net.params[key] = (p + h * direction[key] / norm).astype(dtype)
        return float(net.loss(x, t))

    numerical = np.array([(loss_at(h) - loss_at(-h)) / (2 * h) for h in STEPS])
    for key, p in start.items():
        net.params[key] = p
    return np.abs(numerical - exact) / abs(exact)


def main() -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for dtype, color in (("float64", "#1f77b4"), ("float32", "#d62728")):
        ax.loglog(
            STEPS, np.maximum(errors(dtype), 1e-12), marker="o", ms=3, color=color, label=dtype
        )
    ax.axvline(1e-5, color="#1f77b4", ls=":", lw=1)
    ax.text(1.2e-5, 3e-12, "bpcore's h\n(float64)", color="#1f77b4", fontsize=8)
    ax.axhline(1e-5, color="black", ls="--", lw=0.8)
    ax.text(1.5e-12, 3e-6, "tolerance (float64)", fontsize=8, va="top")
    ax.text(3e-11, 3e-2, "rounding error ~ eps / h", fontsize=9)
    ax.text(1.5e-3, 1e-9, "truncation\nerror ~ h²", fontsize=9)
    ax.set(
        xlabel="step h",
        ylabel="relative error of the central difference",
        title="Central difference against backprop: error by step size (100-20-10, tanh)",
    )
    ax.title.set_fontsize(10)
    ax.set_ylim(1e-12, 10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
