"""Draw docs/_static/two-layer-graph.png: TwoLayerNet as a computational graph, both directions.

python docs/figures/two_layer_graph.py

The book's figure 5-29, with bpcore's layer names: forward along the top (black), backward
along the bottom (red), each layer's parameters entering from above and their gradients leaving.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent.parent / "_static" / "two-layer-graph.png"

# (name, what forward computes, x position)
LAYERS = [
    ("Affine1", "x · W1 + b1", 2.4),
    ("Relu1", "max(0, a1)", 5.5),
    ("Affine2", "z1 · W2 + b2", 8.6),
    ("SoftmaxWithLoss", "y = softmax(a2)\nL = mean(−log y[t])", 11.9),
]
# Values flowing forward between the boxes, and the gradients flowing back.
FORWARD = ["x", "a1", "z1", "a2", "L"]
BACKWARD = [
    "dx =\ndout · W1ᵀ",
    "da1 =\ndout ⊙ (a1 > 0)",
    "dz1 =\ndout · W2ᵀ",
    "da2 =\n(y − t) / N",
    "dL = 1",
]
PARAMS = {
    "Affine1": ("W1, b1", "dW1 = xᵀ · dout\ndb1 = Σ dout"),
    "Affine2": ("W2, b2", "dW2 = z1ᵀ · dout\ndb2 = Σ dout"),
}
WIDTH, HEIGHT, FWD_Y, BWD_Y = 1.7, 1.1, 0.25, -0.25
RED = "#c0392b"


def _arrow(ax, start, end, color="black", style="-|>"):
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color, lw=1.4)
    )


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 4.4))
    edges = [0.0] + [x for _, _, x in LAYERS] + [14.4]
    for name, formula, x in LAYERS:
        ax.add_patch(
            FancyBboxPatch(
                (x - WIDTH / 2, -HEIGHT / 2),
                WIDTH,
                HEIGHT,
                boxstyle="round,pad=0.05",
                facecolor="#eef3fb",
                edgecolor="#1f4e8c",
            )
        )
        ax.text(x, 0.2, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x, -0.18, formula, ha="center", va="center", fontsize=8)
        if name in PARAMS:
            values, grads = PARAMS[name]
            _arrow(ax, (x - 0.3, 1.45), (x - 0.3, HEIGHT / 2 + 0.05))
            ax.text(x - 0.35, 1.55, values, ha="center", va="bottom", fontsize=9)
            _arrow(ax, (x + 0.3, HEIGHT / 2 + 0.05), (x + 0.3, 1.45), color=RED)
            ax.text(x + 0.35, 1.55, grads, ha="left", va="bottom", fontsize=8, color=RED)
    ax.text(11.9, -1.05, "t (labels)", ha="center", fontsize=9)
    _arrow(ax, (11.9, -0.85), (11.9, -HEIGHT / 2 - 0.05))
    for i, (value, grad) in enumerate(zip(FORWARD, BACKWARD, strict=True)):
        left = edges[i] + (WIDTH / 2 + 0.08 if i else 0.3)
        right = edges[i + 1] - (WIDTH / 2 + 0.08 if i < len(LAYERS) else 0.3)
        _arrow(ax, (left, FWD_Y), (right, FWD_Y))
        ax.text((left + right) / 2, FWD_Y + 0.08, value, ha="center", va="bottom", fontsize=10)
        _arrow(ax, (right, BWD_Y), (left, BWD_Y), color=RED)
        ax.text((left + right) / 2, BWD_Y - 0.1, grad, ha="center", va="top", fontsize=8, color=RED)
    ax.text(0.0, -1.0, "forward: predict and loss (black)", fontsize=9)
    ax.text(0.0, -1.25, "backward: gradient (red), from dL = 1", fontsize=9, color=RED)
    ax.set_xlim(-0.3, 14.7)
    ax.set_ylim(-1.4, 2.2)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
