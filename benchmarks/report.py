"""Publish the committed benchmark results: every figure of the docs and the README comes from here.

    python benchmarks/report.py            # rewrite the generated blocks from benchmarks/results
    python benchmarks/report.py --charts   # ... and draw the charts in docs/bench (matplotlib)
    python benchmarks/report.py --check    # exit 1 if a figure or chart is not its file's (Pillow)

A generated block sits between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in a
Markdown page; `BLOCKS` says which page holds each block and which result file it is made from.
Nothing between the markers is written by hand, and no figure is published outside a block, so
the pages cannot disagree with the files or with each other (``tests/test_published_figures.py``
runs ``--check``). New measurements go to new files (``benchmarks/results/new/``, ignored by
git); a result file is committed, and named in `SOURCES`, when it replaces the one before it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from bpcore.bench.report import format_seconds, optimizer_of

ROOT = Path(__file__).resolve().parents[1]

#: The committed result files, by the name the blocks use.
SOURCES = {
    # bpcore bench, defaults: the four networks at batch 100 on the five CPU backends, peers.
    "bench": "benchmarks/results/cpu-2core-bench.json",
    # bpcore bench --models convnet,deepconvnet --optimizer adam: the conv nets' Adam step
    "bench-adam": "benchmarks/results/cpu-2core-conv-adam.json",
    # bpcore bench --models mlp,convnet --batch-sizes 1,10,100,1000 --rounds 5
    "sweep": "benchmarks/results/cpu-2core-sweep.json",
    # pytest-benchmark: benchmarks/test_training_job.py's epochs alternated with PyTorch's
    "epochs": "benchmarks/results/cpu-2core-speed.json",
    # pytest-benchmark: benchmarks/test_memory.py's SimpleConvNet step
    "memory": "benchmarks/results/cpu-2core-conv.json",
    # python benchmarks/precision.py: mixed-precision training and ch08's four dtypes
    "precision": "benchmarks/results/cpu-2core-precision.json",
    # bpcore bench --models mlp,convnet --dtype mixed_float16 --backends numpy,torch,jax --rounds 5
    "bench-mixed-float16": "benchmarks/results/cpu-2core-bench-mixed-float16.json",
    # bpcore bench --models mlp,convnet --dtype mixed_bfloat16 --backends torch,jax --rounds 5
    "bench-mixed-bfloat16": "benchmarks/results/cpu-2core-bench-mixed-bfloat16.json",
}

_BLOCK = re.compile(
    r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S
)


def _load(root: Path, source: str) -> dict:
    return json.loads((root / SOURCES[source]).read_text())


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _bench_machine(doc: dict, path: str, figures: str) -> str:
    env = doc["environment"]
    versions = ", ".join(
        f"{name} {found['version']}"
        for name, found in env["backends"].items()
        if "version" in found
    )
    settings = doc["settings"]
    optimizer = {"sgd": "SGD", "adam": "Adam"}[optimizer_of(settings)]
    return (
        f"Measured with `bpcore bench` on {doc['created'][:10]} (`{path}`): "
        f"{env.get('cpu_model', '?')}, {env['cpus']} CPUs, Python {env['python']}; {versions}; "
        f"{settings['dtype']}, {optimizer}, {settings['rounds']} rounds per row interleaved; "
        f"{figures}."
    )


def _peer(rows: list[dict], kind: str) -> dict | None:
    found = [r for r in rows if r["kind"] == kind and r["median_s"] is not None]
    found.sort(key=lambda r: r["device"] != "cpu")  # PyTorch eager on the CPU first
    return found[0] if found else None


def steps(doc: dict, path: str) -> str:
    """One table per network: every row of a ``bpcore bench`` run, fastest first, with its
    ratio to PyTorch eager and to the book's NumPy code of the same run."""
    lines = [
        _bench_machine(doc, path, "medians, the interquartile range, the first call apart"),
        "",
    ]
    groups = list(dict.fromkeys((r["model"], r["batch_size"]) for r in doc["rows"]))
    for model, batch in groups:
        rows = [r for r in doc["rows"] if (r["model"], r["batch_size"]) == (model, batch)]
        torch_row, book_row = _peer(rows, "pytorch eager"), _peer(rows, "book numpy")
        lines += [
            f"**{rows[0]['label']}** (`--models {model}`), batch {batch}:",
            "",
            "| row | median | IQR | / PyTorch eager | / book's NumPy | first call |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        ok = sorted((r for r in rows if r["median_s"] is not None), key=lambda r: r["median_s"])
        for r in ok:
            over = [
                _ratio(r["median_s"] / peer["median_s"]) if peer else "-"
                for peer in (torch_row, book_row)
            ]
            median, iqr, first = (
                format_seconds(r[f"{k}_s"]) for k in ("median", "iqr", "first_call")
            )
            lines.append(f"| {r['name']} | {median} | {iqr} | {over[0]} | {over[1]} | {first} |")
        lines += [f"| {r['name']} | failed: {r['error']} | | | | |" for r in rows if r["error"]]
        lines.append("")
    return "\n".join(lines)


def sweep(doc: dict, path: str) -> str:
    """Microseconds per sample against the batch size, one table per network."""
    sizes = doc["settings"]["batch_sizes"]
    lines = [_bench_machine(doc, path, "medians"), ""]
    for model in doc["settings"]["models"]:
        rows = [r for r in doc["rows"] if r["model"] == model]
        lines += [
            f"**{rows[0]['label']}**, µs per sample (a step's median over its batch size):",
            "",
            "| row | " + " | ".join(f"batch {b}" for b in sizes) + " |",
            "| --- |" + " ---: |" * len(sizes),
        ]
        for name in dict.fromkeys(r["name"] for r in rows if r["kind"] != "floor"):
            cells = []
            for b in sizes:
                found = [r for r in rows if r["name"] == name and r["batch_size"] == b]
                value = found[0]["per_sample_s"] if found else None
                cells.append("-" if value is None else f"{value * 1e6:.3g}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _pytest_machine(doc: dict, path: str) -> str:
    machine = doc["machine_info"]
    day = doc["datetime"][:10]
    return (
        f"pytest-benchmark run of {day} (`{path}`): "
        f"{machine['cpu'].get('brand_raw', '?')}, {machine['cpu'].get('count', '?')} CPUs, "
        f"Python {machine['python_version']}"
    )


def _alternated(doc: dict) -> list[dict]:
    return [b for b in doc["benchmarks"] if b["name"].startswith("test_epochs_alternated[")]


def epochs(doc: dict, path: str) -> str:
    """The Fashion-MNIST epoch, each bpcore epoch right after a PyTorch eager epoch."""
    lines = [
        _pytest_machine(doc, path) + "; each bpcore epoch timed right after a PyTorch "
        "eager epoch of the same job, medians:",
        "",
        "| backend | rounds | bpcore epoch | PyTorch eager epoch | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for b in _alternated(doc):
        backend = b["name"].split("[")[1].rstrip("]")
        info = b["extra_info"]
        ours, theirs = (
            format_seconds(b["stats"]["median"]),
            format_seconds(info["pytorch_eager_median_s"]),
        )
        lines.append(
            f"| {backend} | {b['stats']['rounds']} | {ours} | {theirs} | "
            f"**{_ratio(info['ratio_to_pytorch'])}** |"
        )
    return "\n".join(lines) + "\n"


def epoch_readme(doc: dict, path: str) -> str:
    """The README's sentence: the NumPy backend's epoch against PyTorch eager's."""
    numpy = next(b for b in _alternated(doc) if b["name"].endswith("[numpy]"))
    return (
        f"On this project's {doc['machine_info']['cpu'].get('count', '?')}-core CPU machine an "
        f"epoch of that job on NumPy took **{_ratio(numpy['extra_info']['ratio_to_pytorch'])}** "
        "times as long as the same epoch in PyTorch eager, the two alternated "
        f"{numpy['stats']['rounds']} rounds (`{path}`, {doc['datetime'][:10]}; "
        "method, every backend and how to reproduce: [docs/benchmarks.md](docs/benchmarks.md)).\n"
    )


def memory(doc: dict, path: str) -> str:
    """The SimpleConvNet step's peak memory against its floor, each way of stepping."""
    steps = [b for b in doc["benchmarks"] if b["name"].startswith("test_conv_step_peak_memory")]
    info = steps[0]["extra_info"]
    ways = {
        "gradient": "through `net.gradient`, which skips the first layer's input gradient",
        "book classes": "as the book's classes step, the first layer's input gradient included",
    }
    parts = [
        f"{ways.get(b['extra_info'].get('path', 'gradient'))}: "
        f"{b['extra_info']['peak_bytes'] / 1e6:.1f} MB, **{b['extra_info']['ratio']:.2f}** times"
        for b in steps
    ]
    return (
        f"{_pytest_machine(doc, path)}: the peak of a `{info['size']}` step in {info['dtype']} "
        f"(SGD, on NumPy) against a floor of {info['floor_bytes'] / 1e6:.1f} MB (of which the "
        f"im2col matrix is {info['im2col_bytes'] / 1e6:.1f} MB); " + "; ".join(parts) + ".\n"
    )


def _precision_machine(doc: dict, path: str) -> str:
    env = doc["environment"]
    return (
        f"`python benchmarks/precision.py` (`{path}`): {env.get('cpu_model', '?')}, "
        f"{env.get('cpus', '?')} CPUs, "
        f"Python {env['python'].split()[0]}, Fashion-MNIST"
    )


def precision_training(doc: dict, path: str) -> str:
    """Mixed-precision training beside float32 on the same backend: test accuracy and time."""
    opt = doc["optimizer"]
    lines = [
        f"{_precision_machine(doc, path)}; Trainer, Adam (lr {opt['lr']}), batch "
        f"{opt['batch_size']}; each row the mean test accuracy of its runs from seeds 0, 1, ... "
        "(weights and shuffles; the same seeds in each precision); the difference is the mean "
        "minus float32's on the same backend; the spread, the float32 runs' range over the seeds:",
        "",
        "| model | backend | precision | epochs | seeds | test accuracy | difference | spread "
        "| training time |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = doc["training"]
    float32 = {(r["model"], r["backend"]): r for r in rows if r["precision"] == "float32"}
    for row in rows:
        base = float32[row["model"], row["backend"]]
        difference = row["test_acc"] - base["test_acc"]
        accs = [r["test_acc"] for r in row["runs"]]
        spread = f"{max(accs) - min(accs):.4f}" if row is base and len(accs) > 1 else ""
        lines.append(
            f"| {row['model']} | {row['backend']} | {row['precision']} | {row['epochs']} | "
            f"{row['seeds']} | {row['test_acc']:.4f} | "
            f"{'-' if row is base else f'{difference:+.4f}'} | {spread} | {row['seconds']:.1f} s |"
        )
    return "\n".join(lines) + "\n"


def precision_ch08(doc: dict, path: str) -> str:
    """The trained DeepConvNet's test accuracy with its weights and inputs in each dtype."""
    deep = doc["deepconvnet"]
    by_backend: dict[str, dict[str, dict]] = {}
    for row in doc["inference"]:
        by_backend.setdefault(row["backend"], {})[row["dtype"]] = row
    dtypes = ["float64", "float32", "float16", "bfloat16"]
    lines = [
        f"{_precision_machine(doc, path)}. A DeepConvNet trained {deep['epochs']} epochs in "
        f"float32 on {deep['backend']} ({deep['seconds']:.0f} s), then cast to each dtype "
        "(weights and inputs), test accuracy over the 10,000 test images:",
        "",
        "| backend | " + " | ".join(dtypes) + " |",
        "| --- |" + " ---: |" * len(dtypes),
    ]
    for backend, rows in by_backend.items():
        cells = [f"{rows[d]['test_acc']:.4f}" if d in rows else "-" for d in dtypes]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: Each block: the page that shows it, the result file (a key of `SOURCES`) it is made from,
#: and the function that writes it from that file's document and path.
BLOCKS: dict[str, tuple[str, str, Callable[[dict, str], str]]] = {
    "steps": ("docs/benchmarks.md", "bench", steps),
    "steps-adam": ("docs/benchmarks.md", "bench-adam", steps),
    "epochs": ("docs/benchmarks.md", "epochs", epochs),
    "memory": ("docs/benchmarks.md", "memory", memory),
    "epoch-readme": ("README.md", "epochs", epoch_readme),
    "sweep": ("docs/comparing.md", "sweep", sweep),
    "precision-training": ("docs/precision.md", "precision", precision_training),
    "precision-ch08": ("docs/precision.md", "precision", precision_ch08),
    "steps-mixed-float16": ("docs/precision.md", "bench-mixed-float16", steps),
    "steps-mixed-bfloat16": ("docs/precision.md", "bench-mixed-bfloat16", steps),
}

#: The charts ``--charts`` draws, from the bench documents (`bpcore.bench.BenchReport.plot`).
CHARTS = {"bench": "docs/bench/steps.png", "sweep": "docs/bench/sweep.png"}


def render(root: Path) -> dict[str, str]:
    """Every page with its blocks as the result files give them: {page: new text}.

    Raises ValueError when a page lacks the markers of one of its blocks.
    """
    pages: dict[str, str] = {}
    for name, (page, source, write) in BLOCKS.items():
        text = pages.get(page, (root / page).read_text())
        found = [m for m in _BLOCK.finditer(text) if m.group("name") == name]
        if len(found) != 1:
            raise ValueError(
                f"{page}: expected one <!-- figures:{name} --> block, found {len(found)}"
            )
        m = found[0]
        body = write(_load(root, source), SOURCES[source])
        pages[page] = text[: m.start("body")] + body + text[m.end("body") :]
    return pages


def check(root: Path = ROOT) -> list[str]:
    """What differs between the pages and charts and their result files: one line per block or
    chart, empty when every published figure is its file's."""
    problems = []
    try:
        pages = render(root)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        return [f"cannot render the figures: {type(exc).__name__}: {exc}"]
    for source, chart in CHARTS.items():
        path = root / chart
        stamp = _png_text(path).get("Source") if path.is_file() else None
        if stamp != _stamp(root, source):
            problems.append(f"{chart} is not drawn from {SOURCES[source]} as it is now")
    for page, text in pages.items():
        old = (root / page).read_text()
        if old == text:
            continue
        new_blocks = {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}
        for m in _BLOCK.finditer(old):
            if new_blocks.get(m.group("name")) != m.group("body"):
                problems.append(
                    f"{page}: block {m.group('name')!r} is not what "
                    f"{SOURCES[BLOCKS[m.group('name')][1]]} gives"
                )
    return problems


def _stamp(root: Path, source: str) -> str:
    """What a chart stores of its result file: the path and the SHA-256 of its bytes."""
    digest = hashlib.sha256((root / SOURCES[source]).read_bytes()).hexdigest()
    return f"{SOURCES[source]} sha256:{digest}"


def _png_text(path: Path) -> dict[str, str]:
    """The text entries of a PNG file, where matplotlib writes ``metadata`` (read by Pillow,
    which matplotlib depends on)."""
    from PIL import Image

    with Image.open(path) as image:
        return dict(getattr(image, "text", {}))


def charts(root: Path) -> None:
    """Draw `CHARTS` from the bench documents (needs matplotlib), each stamped with its source."""
    from bpcore.bench import BenchReport

    for source, out in CHARTS.items():
        (root / out).parent.mkdir(parents=True, exist_ok=True)
        document = BenchReport.from_json(_load(root, source))
        document.plot(root / out, metadata={"Source": _stamp(root, source)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 on a difference"
    )
    parser.add_argument("--charts", action="store_true", help="also draw docs/bench/*.png")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(ROOT)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for page, text in render(ROOT).items():
        (ROOT / page).write_text(text)
    if args.charts:
        charts(ROOT)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(f"figures written from {', '.join(SOURCES.values())} at {stamp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
