"""``bpcore bench``: short smoke runs on every backend, the report's contract, the timing harness.

The benchmarks themselves run in ``bpcore bench`` and the nox ``bench`` sessions; here each run
is a few rounds, enough to see that every row runs, waits, trains and reports, and that the
document validates against its schema.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import time
from pathlib import Path

import jsonschema
import pytest

import bpcore.optimizers
from bpcore.bench import BenchReport, BenchRow, load_baseline, parse_model, run_bench
from bpcore.bench.timing import stats_of, time_interleaved
from bpcore.cli import main

SCHEMA = json.loads((Path(__file__).parents[1] / "docs/schemas/bench.schema.json").read_text())


def test_the_quick_preset_runs_on_every_backend(backend, capsys):
    # The --quick preset (the MLP and SimpleConvNet at batch 100) with two rounds; the peers
    # once, with NumPy (they do not depend on the backend).
    peers = [] if backend.name == "numpy" else ["--no-peers"]
    argv = ["bench", "--quick", "--rounds", "2", "--backends", f"{backend.name}:{backend.device}"]
    assert main([*argv, *peers, "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    jsonschema.validate(document, SCHEMA)
    assert not document["failed"]
    rows = document["rows"]
    assert {r["model"] for r in rows} == {"mlp", "convnet"}
    kinds = {r["kind"] for r in rows if r["backend"] == backend.name}
    assert {"book loop", "trainer"} <= kinds
    assert ("compiled" in kinds) == (backend.name == "jax")  # the backend that compiles a step
    assert "floor" in {r["kind"] for r in rows if r["model"] == "mlp"}
    if peers == []:
        assert {"book numpy", "pytorch eager"} <= {r["kind"] for r in rows}
    for row in rows:
        assert row["rounds"] == 2 and row["iterations"] >= 1
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["first_call_s"] > 0 and row["ratio_to_fastest"] >= 1
    assert math.isclose(min(r["ratio_to_fastest"] for r in rows if r["model"] == "mlp"), 1.0)
    # The human table went to stderr (stdout is the document), one block per group.
    assert "mlp (784-50-10), batch 100, float32, 2 rounds" in captured.err
    assert document["environment"]["backends"][backend.name]["version"]


@pytest.fixture(scope="module")
def sweep():
    """A real run: the book's MLP on NumPy at two batch sizes, three rounds."""
    return run_bench(["mlp"], ["numpy"], batch_sizes=[10, 100], rounds=3)


def test_a_sweep_reports_each_batch_size_and_per_sample_times(sweep):
    jsonschema.validate(sweep.to_json(), SCHEMA)
    assert sweep.groups() == [("mlp", 10, "float32"), ("mlp", 100, "float32")]
    for row in sweep.to_json()["rows"]:
        assert row["per_sample_s"] == pytest.approx(row["median_s"] / row["batch_size"])
        assert row["compile_s"] is None  # NumPy compiles nothing
    names = {r.name for r in sweep.rows}
    assert {"bpcore book loop [numpy:cpu]", "book numpy", "floor [numpy:cpu]"} <= names


def test_plot_writes_a_chart_for_a_sweep_and_for_one_size(sweep, tmp_path):
    sweep.plot(tmp_path / "sweep.png")
    one = BenchReport(sweep.settings, {}, [r for r in sweep.rows if r.batch_size == 100])
    one.plot(tmp_path / "one.png")
    for name in ("sweep.png", "one.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_document_reads_back_into_the_same_report(sweep):
    # benchmarks/report.py tabulates and plots committed documents through from_json.
    document = sweep.to_json()
    again = BenchReport.from_json(json.loads(json.dumps(document)))
    assert again.to_json() == document
    assert again.format() == sweep.format()


def _row(name: str, q1: float, median: float, q3: float) -> BenchRow:
    stats = {"median": median, "q1": q1, "q3": q3, "iqr": q3 - q1}
    stats.update(min=q1, max=q3, mean=median, stddev=0.0)
    return BenchRow("mlp", "784-50-10", 100, "float32", name, "book loop", "numpy", "cpu",
                    [q1, median, q3], 1, median, stats)  # fmt: skip


def test_a_baseline_marks_rows_only_when_the_quartiles_part():
    old = BenchReport({"rounds": 3}, {}, [_row("a", 1.0, 1.1, 1.2), _row("b", 1.0, 1.1, 1.2)])
    old.rows.append(_row("c", 1.0, 1.1, 1.2))
    new = BenchReport({"rounds": 3}, {}, [_row("a", 1.3, 1.4, 1.5), _row("b", 1.1, 1.2, 1.3)])
    new.rows += [_row("c", 0.5, 0.6, 0.7), _row("new row", 1.0, 1.0, 1.0)]
    new.mark_baseline(json.loads(old.dumps()))
    a, b, c, fresh = new.rows
    assert a.baseline["slower"] and a.baseline["ratio"] == pytest.approx(1.4 / 1.1)
    assert not b.baseline["slower"] and not b.baseline["faster"]  # within the noise
    assert c.baseline["faster"] and not c.baseline["slower"]
    assert fresh.baseline is None
    table = new.format()
    assert "1.27x baseline slower" in table and "0.55x baseline faster" in table


def test_the_command_marks_a_slower_run_against_its_baseline(tmp_path, capsys):
    argv = ["bench", "--models", "mlp", "--backends", "numpy", "--rounds", "3", "--no-peers"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    for row in document["rows"]:  # a baseline 1000 times as fast as this run
        for key in ("median_s", "q1_s", "q3_s"):
            row[key] /= 1000
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(document))
    assert main([*argv, "--baseline", str(baseline), "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"]
    assert rows and all(r["baseline"]["slower"] for r in rows)
    assert "baseline slower" in captured.err


def test_a_row_that_does_not_train_fails_the_run(monkeypatch, capsys):
    monkeypatch.setattr(bpcore.optimizers.SGD, "update", lambda self, params, grads: None)
    argv = ["bench", "--models", "mlp", "--backends", "numpy", "--rounds", "1", "--no-peers"]
    assert main([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    jsonschema.validate(document, SCHEMA)
    failed = {r["name"]: r["error"] for r in document["rows"] if r["error"]}
    assert "not down" in failed["bpcore book loop [numpy:cpu]"]
    assert "bpcore trainer [numpy:cpu]" in failed
    assert "floor [numpy:cpu]" not in failed  # the floor does not train: it stands
    assert "FAILED" in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "resnet"],
        ["--models", "mlp-0"],
        ["--batch-sizes", "0"],
        ["--batch-sizes", ","],
        ["--backends", "nosuch"],
        ["--rounds", "0"],
        ["--dtype", "float16"],
        ["--optimizer", "rmsprop"],
        ["--plot", "/no/such/folder/chart.png"],
    ],
)
def test_bad_options_are_usage_errors(argv, capsys):
    assert main(["bench", *argv]) == 2
    assert "error" in capsys.readouterr().err


def test_a_baseline_that_is_not_a_bench_document_is_a_usage_error(tmp_path, capsys):
    other = tmp_path / "compare.json"
    other.write_text(json.dumps({"schema": "bpcore-compare", "version": 1}))
    assert main(["bench", "--baseline", str(other)]) == 2
    assert "not a bpcore bench --json document" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_baseline(tmp_path / "broken.json")
    # A bench document whose rows lack their quartiles: refused before any timing.
    document = json.loads(BenchReport({"rounds": 3}, {}, [_row("a", 1.0, 1.1, 1.2)]).dumps())
    del document["rows"][0]["q3_s"]
    (tmp_path / "old.json").write_text(json.dumps(document))
    assert main(["bench", "--baseline", str(tmp_path / "old.json")]) == 2
    assert "row 0 lacks q3_s" in capsys.readouterr().err


def test_adam_steps_every_row_with_adam(monkeypatch, capsys):
    # --optimizer adam: bpcore's rows (book loop and Trainer), the book's code and PyTorch eager
    # all step with Adam, and no SGD step runs anywhere.
    torch = pytest.importorskip("torch")
    import bpcore.bench.book_reference as book

    steps: collections.Counter[str] = collections.Counter()

    def count(cls, method, who):
        original = getattr(cls, method)

        def counted(self, *args, **kwargs):
            steps[who] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, counted)

    def refuse(*args, **kwargs):
        raise AssertionError("an SGD step in an Adam run")

    count(bpcore.optimizers.Adam, "update", "bpcore")
    count(book.Adam, "update", "book")
    count(torch.optim.Adam, "step", "pytorch")
    for cls, method in ((bpcore.optimizers.SGD, "update"), (book.SGD, "update")):
        monkeypatch.setattr(cls, method, refuse)
    monkeypatch.setattr(torch.optim.SGD, "step", refuse)
    argv = ["bench", "--models", "mlp", "--backends", "numpy", "--rounds", "1"]
    assert main([*argv, "--optimizer", "Adam", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    jsonschema.validate(document, SCHEMA)
    assert document["settings"]["optimizer"] == "adam" and not document["failed"]
    assert {"bpcore book loop [numpy:cpu]", "bpcore trainer [numpy:cpu]", "book numpy",
            "pytorch eager [cpu]"} <= {r["name"] for r in document["rows"]}  # fmt: skip
    assert min(steps["bpcore"], steps["book"], steps["pytorch"]) >= 1
    assert "mlp (784-50-10), batch 100, float32, adam, 1 rounds" in captured.err


def test_a_baseline_of_another_optimizer_is_refused(tmp_path, capsys):
    sgd = BenchReport({"rounds": 3}, {}, [_row("a", 1.0, 1.1, 1.2)])  # before --optimizer: SGD
    (tmp_path / "old.json").write_text(sgd.dumps())
    argv = ["bench", "--models", "mlp", "--backends", "numpy", "--optimizer", "adam"]
    assert main([*argv, "--baseline", str(tmp_path / "old.json")]) == 2
    assert "stepped with sgd, this run with adam" in capsys.readouterr().err
    adam = BenchReport({"rounds": 3, "optimizer": "adam"}, {}, [_row("a", 1.0, 1.1, 1.2)])
    with pytest.raises(ValueError, match="do not compare"):
        adam.mark_baseline(json.loads(sgd.dumps()))


def test_too_few_rounds_call_nothing_slower():
    old = BenchReport({"rounds": 2}, {}, [_row("a", 1.0, 1.0, 1.0)])
    new = BenchReport({"rounds": 5}, {}, [_row("a", 2.0, 2.0, 2.0)])
    new.mark_baseline(json.loads(old.dumps()))
    (row,) = new.rows
    assert row.baseline["ratio"] == 2.0 and not row.baseline["slower"]


def test_a_peer_that_cannot_be_built_fails_its_row_only(monkeypatch, capsys):
    import bpcore.bench.workloads as workloads

    pytest.importorskip("torch")  # the PyTorch eager peer
    right = workloads.build

    def build(kind, *args, **kwargs):
        if kind == "pytorch eager":
            raise MemoryError("out of memory")
        return right(kind, *args, **kwargs)

    monkeypatch.setattr(workloads, "build", build)
    assert main(["bench", "--models", "mlp", "--backends", "numpy", "--rounds", "1", "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["pytorch eager [cpu]"]["error"] == "MemoryError: out of memory"
    assert rows["book numpy"]["error"] is None and rows["book numpy"]["median_s"] > 0
    assert rows["bpcore book loop [numpy:cpu]"]["error"] is None


def test_models_parse_as_documented():
    assert parse_model("mlp").hidden == (50,)
    assert parse_model("MLP-256-256").label == "784-256-256-10"
    assert parse_model("deepconvnet").label == "DeepConvNet"
    with pytest.raises(ValueError, match="unknown model"):
        parse_model("mlp-")


def test_rounds_interleave_and_a_failing_row_leaves_the_others_timed():
    calls = []
    state = {"b": 0}

    def b():
        state["b"] += 1
        calls.append("b")
        if state["b"] > 4:
            raise RuntimeError("broke")

    rows = [("a", lambda: calls.append("a"), 1), ("b", b, 1), ("t", lambda: calls.append("t"), 3)]
    timings = time_interleaved(rows, rounds=3)
    a, broken, t = timings
    assert broken.error == "RuntimeError: broke" and a.error is None and t.error is None
    assert len(a.times) == len(t.times) == 3 and len(broken.times) == 0
    # Every row makes the same calls per round; over a period, a whole number of periods.
    n, m = a.iterations, t.iterations
    assert m % 3 == 0 and n <= m < n + 3
    # First calls, warm-ups to a period's end and a timed period: a 1+1, b 1+1, t 1+2+3. Then
    # round 1 runs a, b, t; round 2 starts at b (failed: skipped), t, a; round 3 at t, a, b.
    runs = [(name, len(list(group))) for name, group in itertools.groupby(calls[10:])]
    assert runs == [("a", n), ("b", 3), ("t", 2 * m), ("a", n), ("t", m), ("a", n)]


def test_a_slow_row_still_times_whole_periods(monkeypatch):
    # A Trainer row does its once-an-epoch work every `period` calls: every round must hold
    # whole periods, also when one call lasts longer than a round should.
    import bpcore.bench.timing as timing

    monkeypatch.setattr(timing, "MAX_ROUND_SECONDS", 1e-4)  # any call is "slow"
    counts = {"slow": 0, "epoch": 0}

    def call(name):
        def run():
            time.sleep(0.001)  # longer than a round may last
            counts[name] += 1

        return run

    rows = [("slow", call("slow"), 1), ("epoch", call("epoch"), 4)]

    fast, epoch = time_interleaved(rows, rounds=2, settle=0.0)
    assert fast.iterations == 1 and epoch.iterations == 4
    assert counts["epoch"] == 1 + 3 + 4 + 2 * 4  # first call, rest of a period, a timed period


def test_stats_are_pytest_benchmarks():
    stats = stats_of([3.0, 1.0, 2.0, 4.0])
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["max"] == 4.0
    # pytest-benchmark's quartiles (the medians of each half), which the baseline compares
    assert (stats["q1"], stats["q3"], stats["iqr"]) == (1.5, 3.5, 2.0)
    assert all(math.isnan(v) for v in stats_of([]).values())


def test_a_library_kernel_is_timed_beside_the_reference_code(capsys):
    pytest.importorskip("torch")  # the backend with a convolution of its own
    argv = ["bench", "--models", "convnet", "--backends", "torch", "--rounds", "1", "--no-peers"]
    assert main([*argv, "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert "bpcore book loop [torch:cpu]" in names
    assert "bpcore book loop [torch:cpu] reference kernels" in names


def test_a_mixed_precision_group_times_the_backends_that_have_its_dtype(capsys):
    """``--dtype mixed_bfloat16``: torch and PyTorch eager under autocast; NumPy has no
    bfloat16, so no row (and no failure) for it; the document validates."""
    pytest.importorskip("torch")
    argv = ["bench", "--models", "mlp", "--backends", "numpy,torch", "--rounds", "1"]
    assert main([*argv, "--dtype", "mixed_bfloat16", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, SCHEMA)
    rows = {r["name"]: r for r in document["rows"]}
    assert {
        "bpcore book loop [torch:cpu]",
        "bpcore trainer [torch:cpu]",
        "pytorch eager [cpu]",
    } <= set(rows)
    assert not any("numpy" in name for name in rows)  # neither bpcore's nor the book's
    assert all(r["dtype"] == "mixed_bfloat16" and r["error"] is None for r in rows.values())
