"""The README's example runs on every backend, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.integration  # the book's full-size gradient check, which test_book_regressions
@pytest.mark.slow  # runs on every backend
def test_readme_example_runs(backend, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert 'backend="numpy"' in code
    code = code.replace('backend="numpy"', f'backend="{backend.name}", device="{backend.device}"')
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    for key in ("W1", "b1", "W2", "b2"):
        assert re.search(rf"^{key} \d", out, flags=re.M), out
    assert "GradientCheck(" in out


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"# 2\. install and run the tests.*\n(.+)\n```", README)
    assert len(commands) == 1
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[0] in ci


def test_the_python_the_readme_asks_for_is_the_one_the_package_requires():
    import tomllib

    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    (version,) = re.findall(r"with Python (\d+\.\d+) or newer", README)
    assert required == f">={version}"
    getting_started = (ROOT / "docs" / "getting-started.md").read_text()
    assert f"Python {version} or newer" in getting_started
