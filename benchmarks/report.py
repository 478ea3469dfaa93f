"""Turn saved pytest-benchmark JSON into the Markdown table and PNG charts of the docs.

    python benchmarks/report.py benchmarks/results/*.json --out docs/bench

Each JSON file is one run, and every ratio is taken between rows of the same run (side by side,
same machine, same load): a row's median over the median of ``floor[<its backend>]`` (for the
peers, the floor of the library they use: NumPy for the book's code, PyTorch for PyTorch eager).
The CPU targets of the benchmark issue are checked for bpcore on NumPy in float32 (the book's
loop through the public API), and the Fashion-MNIST epochs alternated with PyTorch's; so are those
of the conv nets (at least twice as fast as the book's NumPy code, at most 1.5 times PyTorch
eager's time), against the peers of the same run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

TARGETS = {"784-50-10 b100": 1.8, "784-1000-10 b256": 1.25, "784-4096-10 b1024": 1.2}
PEER_FLOOR = {"book_numpy": "floor[numpy]", "pytorch_eager": "floor[torch-cpu]"}


def _rows(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    machine = {**data.get("machine_info", {}), "datetime": data.get("datetime", "")}
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "row" not in info:
            continue
        stats = bench["stats"]
        rows.append(
            {
                **info,
                "median": stats["median"],
                "q1": stats["q1"],
                "q3": stats["q3"],
                "group": bench["group"],
            }
        )
    return machine, rows


def _floor(rows: list[dict], size: str, dtype: str, row: str) -> float | None:
    name = PEER_FLOOR.get(row) or re.sub(r"^bpcore[^\[]*\[(.*)\]$", r"floor[\1]", row)
    for r in rows:
        if r["size"] == size and r["dtype"] == dtype and r["row"] == name:
            return float(r["median"])
    return None


def report(paths: list[Path], out: Path) -> str:
    """Write ``out/report.md``, ``out/ratio_to_floor.png`` and ``out/step_times.png``.

    Returns the Markdown. The step-time chart shows the latest run (by pytest-benchmark's
    ``datetime``) with step rows: absolute medians, with the interquartile range as error bars.
    """
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmark report", ""]
    chart: dict[str, dict[str, float]] = {}
    timed: tuple[str, str, list[dict]] = ("", "", [])
    for path in paths:
        machine, rows = _rows(path)
        if any(r["group"].startswith("step ") for r in rows) and machine["datetime"] >= timed[0]:
            name = f"{path.name}: {machine.get('cpu', {}).get('brand_raw', '?')}"
            timed = (machine["datetime"], name, rows)
        cpu = machine.get("cpu", {}).get("brand_raw", "?")
        lines += [
            f"## {path.name}",
            "",
            f"Machine: {cpu}, {machine.get('cpu', {}).get('count', '?')} CPUs, "
            f"Python {machine.get('python_version', '?')}.",
        ]
        steps = [r for r in rows if r["group"].startswith("step ")]
        if steps:
            lines += [
                "",
                "| size | dtype | row | median | ratio to floor | target |",
                "| --- | --- | --- | ---: | ---: | --- |",
            ]
        for r in sorted(
            steps,
            key=lambda r: (
                list(TARGETS).index(r["size"]) if r["size"] in TARGETS else 9,
                r["size"],
                r["dtype"],
                r["row"],
            ),
        ):
            floor = _floor(rows, r["size"], r["dtype"], r["row"])
            ratio = r["median"] / floor if floor and not r["row"].startswith("floor") else None
            target = ""
            if r["row"] == "bpcore[numpy]" and r["dtype"] == "float32":
                limit = TARGETS.get(r["size"])
                peers = [
                    p
                    for p in steps
                    if p["size"] == r["size"] and p["dtype"] == "float32" and p["row"] in PEER_FLOOR
                ]
                slower = [p["row"] for p in peers if r["median"] > p["median"]]
                verdicts = []
                if limit is not None and ratio is not None:
                    verdicts.append(f"<= {limit}: {'met' if ratio <= limit else 'MISSED'}")
                verdicts.append(
                    "slower than " + ", ".join(slower) if slower else "not slower than any peer"
                )
                target = "; ".join(verdicts)
            if ratio is not None and r["dtype"] == "float32":
                chart.setdefault(r["size"], {})[r["row"]] = ratio
            lines.append(
                f"| {r['size']} | {r['dtype']} | {r['row']} | {r['median'] * 1e3:.3f} ms | "
                f"{'' if ratio is None else f'{ratio:.2f}'} | {target} |"
            )
        lines += _conv_table(rows)
        alternated = [r for r in rows if "ratio_to_pytorch" in r]
        if alternated:
            lines += [
                "",
                "| Fashion-MNIST epoch, alternated with PyTorch eager's | median | PyTorch eager's "
                "| ratio | target <= 1.0 |",
                "| --- | ---: | ---: | ---: | --- |",
            ]
            lines += [
                f"| {r['row']} | {r['median']:.3f} s | {r['pytorch_eager_median_s']:.3f} s | "
                f"{r['ratio_to_pytorch']:.2f} | "
                f"{'met' if r['ratio_to_pytorch'] <= 1.0 else 'MISSED'} |"
                for r in alternated
            ]
        memory = [r for r in rows if "peak_bytes" in r]
        if memory:
            lines += [
                "",
                "| memory of a step | dtype | peak | floor | ratio |",
                "| --- | --- | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {r['size']} | {r['dtype']} | {r['peak_bytes'] / 1024:.0f} KiB | "
                f"{r['floor_bytes'] / 1024:.0f} KiB | {r['ratio']:.2f} |"
                for r in memory
            ]
        lines.append("")
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    _chart(chart, out / "ratio_to_floor.png")
    if timed[2]:
        _times_chart(timed[1], timed[2], out / "step_times.png")
    return text


def _conv_table(rows: list[dict]) -> list[str]:
    """The conv nets' steps: each row next to the book's NumPy code and PyTorch eager."""
    conv = [r for r in rows if r["group"].startswith("conv step ")]
    if not conv:
        return []
    lines = [
        "",
        "| conv net step | dtype | row | median | book_numpy / row | row / pytorch_eager "
        "| target |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(conv, key=lambda r: (r["size"], r["dtype"], r["row"])):
        peers = {p["row"]: p["median"] for p in conv if p["group"] == r["group"]}
        book, torch = peers.get("book_numpy"), peers.get("pytorch_eager")
        speedup = book / r["median"] if book else None
        versus = r["median"] / torch if torch else None
        target = ""
        if r["row"] == "bpcore[numpy]" and r["dtype"] == "float32":
            verdicts = []
            if speedup is not None:
                verdicts.append(f">= 2x book: {'met' if speedup >= 2 else 'MISSED'}")
            if versus is not None:
                verdicts.append(f"<= 1.5x torch: {'met' if versus <= 1.5 else 'MISSED'}")
            target = "; ".join(verdicts)
        lines.append(
            f"| {r['size']} | {r['dtype']} | {r['row']} | {r['median'] * 1e3:.1f} ms | "
            f"{'' if speedup is None else f'{speedup:.2f}'} | "
            f"{'' if versus is None else f'{versus:.2f}'} | {target} |"
        )
    return lines


def _chart(chart: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(chart)
    rows = sorted({row for per_size in chart.values() for row in per_size})
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        values = [chart[s].get(row, 0.0) for s in sizes]
        ax.bar([k + i * width for k in range(len(sizes))], values, width, label=row)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(sizes))], sizes)
    ax.set_ylabel("step time / matrix-product floor (float32)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _times_chart(title: str, rows: list[dict], path: Path) -> None:
    """Float32 step times per size, one panel each: median bars, interquartile error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in rows if r["group"].startswith("step ") and r["dtype"] == "float32"]
    sizes = sorted(
        {r["size"] for r in steps}, key=lambda s: list(TARGETS).index(s) if s in TARGETS else 9
    )
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.6), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        here = sorted((r for r in steps if r["size"] == size), key=lambda r: r["median"])
        ms = [r["median"] * 1e3 for r in here]
        spread = [
            [(r["median"] - r["q1"]) * 1e3 for r in here],
            [(r["q3"] - r["median"]) * 1e3 for r in here],
        ]
        colors = ["#1f77b4" if r["row"].startswith("bpcore") else "#7f7f7f" for r in here]
        ax.barh(range(len(here)), ms, xerr=spread, color=colors, capsize=3)
        ax.set_yticks(range(len(here)), [r["row"] for r in here], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ms per step (median; bars: quartiles)")
        ax.set_title(size, fontsize=10)
    fig.suptitle(f"Training step, float32 ({title})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON files")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args()
    print(report(args.json, args.out))


if __name__ == "__main__":
    main()
