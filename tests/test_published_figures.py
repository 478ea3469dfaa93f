"""Every benchmark figure the docs and the README publish is what its committed result file says.

``benchmarks/report.py`` writes the figures between ``<!-- figures:NAME -->`` markers from the
files in ``benchmarks/results``; these tests hold the committed pages to it, and show that the
check fails when a page or a result file is changed by hand.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _report_module():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _report_module()


@pytest.fixture
def copy(tmp_path):
    """The result files and the pages that publish them, in a scratch root."""
    paths = {*report.SOURCES.values(), *(page for page, _, _ in report.BLOCKS.values())}
    paths |= set(report.CHARTS.values())
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    return tmp_path


def test_the_published_figures_are_the_result_files():
    assert report.check(ROOT) == []


def test_every_block_is_in_its_page_and_its_file_is_committed():
    for name, (page, _, _) in report.BLOCKS.items():
        text = (ROOT / page).read_text()
        assert text.count(f"<!-- figures:{name} -->") == 1, (page, name)
        body = text.split(f"<!-- figures:{name} -->")[1].split(f"<!-- /figures:{name} -->")[0]
        assert body.strip(), f"{page}: the {name} block is empty"
    for path in report.SOURCES.values():
        assert (ROOT / path).is_file(), path


def test_a_figure_changed_by_hand_is_caught(copy):
    page = copy / "docs/benchmarks.md"
    text = page.read_text()
    block = text.split("<!-- figures:steps -->")[1].split("<!-- /figures:steps -->")[0]
    figure = next(word for word in block.split() if word.replace(".", "").isdigit() and "." in word)
    changed = block.replace(figure, f"{figure}9", 1)
    page.write_text(text.replace(block, changed))
    problems = report.check(copy)
    assert len(problems) == 1 and "'steps'" in problems[0] and "benchmarks.md" in problems[0]


def test_a_result_changed_after_publishing_is_caught(copy):
    path = copy / report.SOURCES["epochs"]
    document = json.loads(path.read_text())
    for benchmark in document["benchmarks"]:
        benchmark["stats"]["median"] *= 1.5
        if "ratio_to_pytorch" in benchmark.get("extra_info", {}):
            benchmark["extra_info"]["ratio_to_pytorch"] *= 1.5
    path.write_text(json.dumps(document))
    problems = report.check(copy)
    assert any("'epochs'" in p for p in problems)
    assert any("README.md" in p and "'epoch-readme'" in p for p in problems)


def test_a_page_without_its_markers_is_a_problem(copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("<!-- /figures:epoch-readme -->", ""))
    (problem,) = report.check(copy)
    assert "README.md" in problem and "epoch-readme" in problem


def test_writing_the_figures_makes_the_check_pass(copy):
    sweep = copy / report.SOURCES["sweep"]
    document = json.loads(sweep.read_text())
    for row in document["rows"]:
        if row["per_sample_s"] is not None:
            row["per_sample_s"] *= 2
    sweep.write_text(json.dumps(document))
    problems = report.check(copy)
    assert any("'sweep'" in p for p in problems)
    assert any("docs/bench/sweep.png" in p for p in problems)  # drawn from the file before
    for page, text in report.render(copy).items():
        (copy / page).write_text(text)
    report.charts(copy)
    assert report.check(copy) == []


def test_a_chart_is_checked_against_its_file(copy):
    bench = copy / report.SOURCES["bench"]
    bench.write_text(bench.read_text() + "\n")  # the same figures, other bytes: redraw it
    (problem,) = report.check(copy)
    assert problem.startswith("docs/bench/steps.png is not drawn from")
    (copy / "docs/bench/steps.png").unlink()
    (problem,) = report.check(copy)
    assert "steps.png" in problem
