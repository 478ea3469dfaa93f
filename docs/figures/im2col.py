"""Draw docs/_static/im2col.png: what im2col does to one 4x4 image and a 3x3 filter.

python docs/figures/im2col.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bpcore import im2col

OUT = Path(__file__).resolve().parent.parent / "_static" / "im2col.png"


def main() -> None:
    image = np.arange(1, 17, dtype=float).reshape(1, 1, 4, 4)
    col = im2col(image, 3, 3)  # 4 windows (2x2 outputs), 9 values each
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2.3]}
    )
    left.imshow(np.ones((4, 4)), cmap="gray", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(image[0, 0]):
        left.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=12)
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        inset = 0.06 * (k + 1)
        left.add_patch(
            plt.Rectangle(
                (j - 0.5 + inset, i - 0.5 + inset),
                3 - 2 * inset,
                3 - 2 * inset,
                fill=False,
                lw=2,
                color=colors[k],
            )
        )
    left.set_title("a 4x4 image, four 3x3 windows")
    left.set_xticks([])
    left.set_yticks([])
    right.imshow(np.ones(col.shape), cmap="gray", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(col):
        right.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=11, color=colors[i])
    right.set_title("im2col(x, 3, 3): one row per window, shape (4, 9)")
    right.set_yticks(range(4), [f"window ({i}, {j})" for i in range(2) for j in range(2)])
    right.set_xticks(range(9), [f"({y},{x})" for y in range(3) for x in range(3)], fontsize=8)
    right.set_xlabel("filter offset (row, column)")
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
