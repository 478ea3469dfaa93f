"""What ``bpcore bench`` reports: rows with their statistics, as a table, a JSON document, a chart.

A `BenchReport` holds one run: its settings, the environment it ran in (`bpcore info`'s report)
and a `BenchRow` per row and group (model, batch size, dtype). ``to_json`` is the versioned
document of ``docs/schemas/bench.schema.json``; `BenchReport.mark_baseline` compares the rows
with those of an earlier document.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_SCHEMA",
    "BENCH_SCHEMA_VERSION",
    "BenchReport",
    "BenchRow",
    "format_seconds",
    "load_baseline",
    "optimizer_of",
]

#: The ``schema`` field of `BenchReport.to_json`'s document, and its version.
BENCH_SCHEMA = "bpcore-bench"
BENCH_SCHEMA_VERSION = 1


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


#: The fewest rounds a run (and its baseline) must have for `BenchReport.mark_baseline` to call
#: a row slower or faster: below it, the quartiles are the extremes of one or two rounds.
MIN_BASELINE_ROUNDS = 3


@dataclass
class BenchRow:
    """One row of one group: its timings' statistics, in seconds per training step.

    ``first_call_s`` is the first call, kept out of the statistics; on a compiled row it is
    the compilation (with one step) and is also given as ``compile_s``. ``ratio_to_fastest`` is
    the row's median over the group's fastest median. ``baseline`` is set by
    `BenchReport.mark_baseline`. ``error`` says why a row failed (then its figures are NaN).
    """

    model: str
    label: str
    batch_size: int
    dtype: str
    name: str
    kind: str
    backend: str | None
    device: str | None
    times_s: list[float]
    iterations: int
    first_call_s: float
    stats: dict[str, float]
    error: str | None = None
    ratio_to_fastest: float = math.nan
    baseline: dict[str, Any] | None = None

    @property
    def median(self) -> float:
        """The median seconds per step (NaN for a failed row)."""
        return self.stats["median"]

    @property
    def group(self) -> tuple[str, int, str]:
        """(model, batch size, dtype): the rows timed together, interleaved."""
        return (self.model, self.batch_size, self.dtype)

    def as_dict(self) -> dict[str, Any]:
        """The JSON row: statistics as ``<name>_s`` fields, NaN as null."""
        row = asdict(self)
        stats = row.pop("stats")
        row.update({f"{k}_s": _finite(v) for k, v in stats.items()})
        row["rounds"] = len(self.times_s)
        row["first_call_s"] = _finite(self.first_call_s)
        row["compile_s"] = row["first_call_s"] if self.kind == "compiled" else None
        row["per_sample_s"] = _finite(self.median / self.batch_size)
        row["ratio_to_fastest"] = _finite(self.ratio_to_fastest)
        return row


def optimizer_of(settings: dict[str, Any]) -> str:
    """What a run's steps used (``settings["optimizer"]``): ``sgd`` for documents from before
    runs could step with Adam."""
    return str(settings.get("optimizer", "sgd"))


@dataclass
class BenchReport:
    """One ``bpcore bench`` run: settings, environment and rows, in the order they were timed."""

    settings: dict[str, Any]
    environment: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)
    created: str = ""

    @property
    def failed(self) -> bool:
        """Whether a row failed (raised, or did not train): ``bpcore bench`` exits with 1."""
        return any(r.error is not None for r in self.rows)

    def groups(self) -> list[tuple[str, int, str]]:
        """The groups, in the order they ran."""
        return list(dict.fromkeys(r.group for r in self.rows))

    def mark_baseline(self, old: dict[str, Any]) -> None:
        """Compare each row with the row of the same name and group in ``old`` (a document of
        `to_json`): ``slower`` when this run's first quartile is above the old third quartile,
        the interquartile ranges apart, so that noise within either run is not called slower.
        With fewer than `MIN_BASELINE_ROUNDS` rounds in either run there are no quartiles to
        speak of: the ratio is given, and nothing is called slower or faster."""
        mine, theirs = optimizer_of(self.settings), optimizer_of(old["settings"])
        if mine != theirs:
            raise ValueError(
                f"the baseline's steps were {theirs}'s and this run's {mine}'s: their times do "
                "not compare"
            )
        enough = min(self.settings.get("rounds", 0), old["settings"].get("rounds", 0))
        enough = enough >= MIN_BASELINE_ROUNDS
        before = {
            (r["model"], r["batch_size"], r["dtype"], r["name"]): r
            for r in old["rows"]
            if r.get("median_s") is not None
        }
        for row in self.rows:
            was = before.get((*row.group, row.name))
            if was is None or row.error is not None:
                continue
            row.baseline = {
                "median_s": was["median_s"],
                "ratio": row.median / was["median_s"],
                "slower": enough and row.stats["q1"] > was["q3_s"],
                "faster": enough and row.stats["q3"] < was["q1_s"],
            }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BenchReport:
        """The report of a `to_json` document (from ``bpcore bench --json``), to tabulate or
        plot again; null figures come back as NaN."""
        stat_names = ("median", "iqr", "q1", "q3", "min", "max", "mean", "stddev")
        rows = []
        for r in document["rows"]:
            stats = {k: math.nan if r[f"{k}_s"] is None else r[f"{k}_s"] for k in stat_names}
            row = BenchRow(
                **{k: r[k] for k in ("model", "label", "batch_size", "dtype", "name", "kind")},
                backend=r["backend"],
                device=r["device"],
                times_s=list(r["times_s"]),
                iterations=r["iterations"],
                first_call_s=math.nan if r["first_call_s"] is None else r["first_call_s"],
                stats=stats,
                error=r["error"],
                ratio_to_fastest=math.nan
                if r["ratio_to_fastest"] is None
                else r["ratio_to_fastest"],
                baseline=r["baseline"],
            )
            rows.append(row)
        return cls(document["settings"], document["environment"], rows, document["created"])

    def to_json(self) -> dict[str, Any]:
        """The document of ``docs/schemas/bench.schema.json``."""
        return {
            "schema": BENCH_SCHEMA,
            "version": BENCH_SCHEMA_VERSION,
            "created": self.created,
            "settings": self.settings,
            "environment": self.environment,
            "failed": self.failed,
            "rows": [r.as_dict() for r in self.rows],
        }

    def dumps(self) -> str:
        """`to_json` as JSON text (strict: no NaN)."""
        return json.dumps(self.to_json(), indent=1, allow_nan=False)

    def format(self) -> str:
        """The terminal table: one block per group, the rows fastest first."""
        lines = []
        for group in self.groups():
            rows = sorted(
                (r for r in self.rows if r.group == group),
                key=lambda r: (r.error is not None, r.median if math.isfinite(r.median) else 0),
            )
            first = rows[0]
            # The optimizer is named where it is not the default (SGD) that tables assume.
            optimizer = optimizer_of(self.settings)
            stepped = "" if optimizer == "sgd" else f"{optimizer}, "
            lines.append(
                f"{first.model} ({first.label}), batch {first.batch_size}, {first.dtype}, "
                f"{stepped}{self.settings.get('rounds')} rounds"
            )
            width = max(len(r.name) for r in rows)
            lines.append(
                f"  {'row':<{width}}  {'median':>10}  {'IQR':>9}  {'x fastest':>9}  "
                f"{'per sample':>10}  {'first call':>10}"
            )
            for r in rows:
                if r.error is not None:
                    lines.append(f"  {r.name:<{width}}  FAILED: {r.error}")
                    continue
                mark = ""
                if r.baseline is not None:
                    verdict = "slower" if r.baseline["slower"] else ""
                    verdict = "faster" if r.baseline["faster"] else verdict
                    mark = f"  {r.baseline['ratio']:.2f}x baseline {verdict}".rstrip()
                median, iqr = format_seconds(r.median), format_seconds(r.stats["iqr"])
                per_sample = format_seconds(r.median / r.batch_size)
                first_call = format_seconds(r.first_call_s)
                lines.append(
                    f"  {r.name:<{width}}  {median:>10}  {iqr:>9}  {r.ratio_to_fastest:>9.2f}  "
                    f"{per_sample:>10}  {first_call:>10}{mark}"
                )
            lines.append("")
        return "\n".join(lines).rstrip()

    def plot(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write a chart: with several batch sizes, each row's time per sample against the
        batch size (where the lines cross, one device overtakes another); else each row's
        median with its quartiles, one panel per model. ``metadata``: text to store in the
        PNG (``benchmarks/report.py`` stores which result file the chart was drawn from)."""
        try:
            import matplotlib
        except ImportError as exc:
            raise ImportError("--plot needs matplotlib: pip install 'bpcore[plot]'") from exc
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker

        models = list(dict.fromkeys(r.model for r in self.rows))
        sweep = len({r.batch_size for r in self.rows}) > 1
        columns = min(len(models), 2)  # two panels a row: wide enough for the rows' names
        fig, axes = plt.subplots(
            -(-len(models) // columns), columns, figsize=(7 * columns, 5 * -(-len(models) // 2)),
            squeeze=False,
        )  # fmt: skip
        for ax in axes.flat[len(models) :]:
            ax.set_visible(False)
        # One colour per backend (the peers in greys), one line style per kind of row, so that
        # a chart of many rows still tells them apart.
        backends = [r.backend for r in self.rows if r.kind not in _PEER_COLOURS]
        colours = dict(zip(dict.fromkeys(backends), [f"C{i}" for i in range(10)], strict=False))

        def colour(row: BenchRow) -> Any:
            return _PEER_COLOURS.get(row.kind) or colours.get(row.backend, "k")

        for ax, model in zip(axes.flat, models, strict=False):
            rows = [r for r in self.rows if r.model == model and r.error is None]
            if sweep:
                for name in dict.fromkeys(r.name for r in rows):
                    mine = sorted((r for r in rows if r.name == name), key=lambda r: r.batch_size)
                    ax.plot(
                        [r.batch_size for r in mine],
                        [r.median / r.batch_size * 1e6 for r in mine],
                        marker="o",
                        label=name,
                        color=colour(mine[0]),
                        linestyle=_LINE_STYLES.get(mine[0].kind, "-"),
                    )
                ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="µs per sample")
                ax.legend(fontsize=7, ncols=2)
            else:
                rows.sort(key=lambda r: r.median)
                medians = [r.median * 1e3 for r in rows]
                spread = [
                    [(r.median - r.stats["q1"]) * 1e3 for r in rows],
                    [(r.stats["q3"] - r.median) * 1e3 for r in rows],
                ]
                ax.barh(
                    [r.name for r in rows],
                    medians,
                    xerr=spread,
                    color=[colour(r) for r in rows],
                )
                ax.invert_yaxis()
                # log: a Dask row can take a hundred times the fastest one
                ax.set(xscale="log", xlabel="ms per step (median, quartiles; log scale)")
                ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())  # they overlap
                ax.tick_params(axis="y", labelsize=7)
            ax.set_title(
                f"{model} ({rows[0].label if rows else ''}), {rows[0].dtype if rows else ''}"
            )
        fig.tight_layout()
        fig.savefig(path, dpi=120, metadata=metadata)
        plt.close(fig)


#: The chart's line style per kind of row, and the peers' colours.
_LINE_STYLES = {"book loop": "-", "trainer": "--", "compiled": "-.", "floor": ":"}
_PEER_COLOURS = {"book numpy": "0.45", "pytorch eager": "black"}


def format_seconds(seconds: float | None) -> str:
    """A time as the tables print it: three significant figures in s, ms or µs; ``-`` for
    none (a failed row, a null figure of a document)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return "-"  # pragma: no cover (the loop always returns)


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read an earlier ``bpcore bench --json`` document for `BenchReport.mark_baseline`.

    Raises
    ------
    ValueError
        When the file is not JSON, or not a ``bpcore bench`` document of this version.
    OSError
        When it cannot be read.
    """
    text = Path(path).read_text()
    try:
        old = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"baseline {path} is not JSON: {exc}") from exc
    if not isinstance(old, dict) or old.get("schema") != BENCH_SCHEMA:
        raise ValueError(f"baseline {path} is not a bpcore bench --json document")
    if old.get("version") != BENCH_SCHEMA_VERSION:
        raise ValueError(
            f"baseline {path} is version {old.get('version')} of the bench document; this "
            f"bpcore reads version {BENCH_SCHEMA_VERSION}"
        )
    # What mark_baseline reads, checked now rather than after minutes of timing.
    rows, settings = old.get("rows"), old.get("settings")
    if not isinstance(rows, list) or not isinstance(settings, dict):
        raise ValueError(f"baseline {path} has no rows or no settings")
    keys = ("model", "batch_size", "dtype", "name", "median_s", "q1_s", "q3_s")
    for i, row in enumerate(rows):
        missing = [k for k in keys if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"baseline {path}: row {i} lacks {', '.join(missing)}")
        if row["median_s"] is not None and not all(
            isinstance(row[k], int | float) and row[k] > 0 for k in ("median_s", "q1_s", "q3_s")
        ):
            raise ValueError(f"baseline {path}: row {i} ({row['name']}) has no positive times")
    return old
