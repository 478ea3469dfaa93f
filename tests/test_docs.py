"""Every code block in docs/ runs.

* ``python`` blocks run in order, one namespace per page: the docs write ``backend="numpy"`` and
  the test puts the backend under test in its place, as ``test_readme`` does for the README (a
  page that names no backend runs once). These are integration runs (``integration`` marker):
  once on the CPU and on each GPU, since every layer, network and bad input is tested on every
  backend elsewhere.
* ``pycon`` blocks are doctests (their output is checked), on NumPy, whose output they show.
* ``console`` blocks are commands, run once, or on the backend they name (``--backend cupy`` on
  the integration backends). The Fashion-MNIST job also checks its target (test accuracy of
  0.875 or more): it is the suite's one 10-epoch training. ``bpcore ...`` runs as
  ``python -m bpcore ...`` in a scratch folder (``bpcore bench`` on NumPy for one round); pytest
  commands are collected (running them is the benchmark itself), the report command must find
  the published figures up to date; install and test commands are checked against what CI runs
  (``.ci/run`` follows the README's quickstart in a fresh venv and runs its test command);
  ``nox -s NAME`` must name a session of ``noxfile.py``.
* Any other block is an error: a block this file does not know how to run would go untested.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bpcore.testing import backend_cases, parse_backend_names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
# MyST directives written as fences: not code.
DIRECTIVES = {"{toctree}", "{eval-rst}"}
RUNNABLE = {"python", "pycon", "console"}


def _blocks(page: Path, lang: str | None = None) -> list[tuple[str, str, int]]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 2  # the block's first line of code
        if lang is None or m["lang"] == lang:
            found.append((m["lang"], m["body"], line))
    return found


def _pages_with(lang: str) -> list[Path]:
    return [p for p in PAGES if _blocks(p, lang)]


def _id(page: Path) -> str:
    return str(page.relative_to(DOCS))


def _on_backend(code: str, backend) -> str:
    """The examples' networks on ``backend``. A checkpoint loaded with ``backend="numpy"`` stays
    on NumPy: loading elsewhere than it was saved is that line's point."""
    on = f'backend="{backend.name}", device="{backend.device}"'
    return "\n".join(
        row if "bpcore.load(" in row else row.replace('backend="numpy"', on)
        for row in code.splitlines()
    )


def test_the_docs_have_pages_and_every_block_is_runnable():
    assert {_id(p) for p in PAGES} >= {
        "index.md",
        "getting-started.md",
        "porting.md",
        "tutorial/index.md",
        "tutorial/backprop.md",
        "tutorial/gradient-check.md",
        "tutorial/training.md",
        "tutorial/regularization.md",
        "tutorial/convolution.md",
        "backends.md",
        "api.md",
        "benchmarks.md",
        "comparing.md",
        "contributing.md",
    }
    for page in PAGES:
        for lang, _, line in _blocks(page):
            assert lang in RUNNABLE | DIRECTIVES, (
                f"{_id(page)}:{line}: a {lang or 'plain'!r} code block; the docs tests run only "
                f"{sorted(RUNNABLE)} blocks"
            )


def test_the_readme_links_the_pages():
    readme = (ROOT / "README.md").read_text()
    for page in ("getting-started", "tutorial/index", "backends", "api", "benchmarks", "comparing"):
        assert f"docs/{page}.md" in readme, page


def test_python_examples_run_as_copied_without_a_gpu():
    # A reader copies an example as written: it must not need a GPU. The examples write
    # backend="numpy" and say what to change (the pages about JAX and Dask name theirs).
    for page in [*PAGES, ROOT / "README.md"]:
        for _, code, line in _blocks(page, "python"):
            code = "\n".join(row.split("#")[0] for row in code.splitlines())  # comments say it
            assert 'backend="cupy"' not in code and 'device="cuda' not in code, f"{page}:{line}"


def _names_a_backend(page: Path) -> bool:
    return any('backend="numpy"' in code for _, code, _ in _blocks(page, "python"))


# A block that reads the book's own files names a clone of its repository by this folder; the
# tests link it to BPCORE_BOOK_DIR, and skip (after the page's other blocks) without one.
BOOK_FOLDER = "deep-learning-from-scratch"


def _run_python_blocks(page: Path, backend, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that save files write here
    book = os.environ.get("BPCORE_BOOK_DIR")
    if book:
        (tmp_path / BOOK_FOLDER).symlink_to(Path(book).resolve(), target_is_directory=True)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for _, code, line in _blocks(page, "python"):
        if not book and (f'"{BOOK_FOLDER}"' in code or "book /" in code):
            pytest.skip(f"{_id(page)}:{line} reads the book's files; BPCORE_BOOK_DIR names none")
        if backend is not None:
            code = _on_backend(code, backend)
        source = "\n" * (line - 1) + code  # tracebacks point at the page's lines
        exec(compile(source, str(page), "exec"), namespace)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in _pages_with("python") if _names_a_backend(p)], ids=_id)
def test_python_blocks_run_on_every_backend(page, backend, tmp_path, monkeypatch, capsys):
    _run_python_blocks(page, backend, tmp_path, monkeypatch)
    capsys.readouterr()


def _starts_a_cluster(page: Path) -> bool:
    return any("import dask" in code for _, code, _ in _blocks(page, "python"))


@pytest.mark.parametrize(
    "page",
    [
        # A page that starts a Dask cluster runs in the pytest-xdist worker of test_dask's
        # cluster tests: two clusters at once compete for the scheduler's HTTP port.
        pytest.param(p, marks=pytest.mark.xdist_group("dask-cluster"))
        if _starts_a_cluster(p)
        else p
        for p in _pages_with("python")
        if not _names_a_backend(p)
    ],
    ids=_id,
)
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys, request):
    if _starts_a_cluster(page):
        names = request.config.getoption("--backend")
        cases = backend_cases(parse_backend_names(",".join(names)) if names else None)
        if "dask" not in {case.name for case in cases}:
            pytest.skip("a page of Dask examples, and this run has no dask backend")
    _run_python_blocks(page, None, tmp_path, monkeypatch)
    capsys.readouterr()


@pytest.mark.parametrize("page", _pages_with("pycon"), ids=_id)
def test_pycon_blocks_are_doctests(page):
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    namespace: dict[str, object] = {}
    for _, code, line in _blocks(page, "pycon"):
        test = parser.get_doctest(code, namespace, _id(page), str(page), line - 1)
        runner.run(test, clear_globs=False)
        namespace = test.globs  # the next block goes on where this one stopped
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} doctest example(s) of {_id(page)} failed"


def _commands(page: Path) -> list[tuple[str, int]]:
    found = []
    for _, code, line in _blocks(page, "console"):
        for offset, text in enumerate(code.splitlines()):
            assert text.startswith("$ ") or not text.strip(), (
                f"{_id(page)}:{line + offset}: console blocks hold commands only, each after '$ '"
            )
            if text.startswith("$ "):
                command = re.sub(r"\s+#.*$", "", text[2:]).strip()
                found.append((command, line + offset))
    return found


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"# 2\. install and run the tests.*\n(.+)\n```", readme)
    return command


def _check_install(command: str, where: str) -> None:
    """An install line must ask for what exists: the extras of pyproject, the pinned torch."""
    pyproject = (ROOT / "pyproject.toml").read_text()  # no tomllib before Python 3.11
    section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, flags=re.M))
    assert {"cuda12", "torch", "strict"} <= extras
    noxfile = (ROOT / "noxfile.py").read_text()
    (torch_pin,) = re.findall(r'^TORCH = "(.+)"', noxfile, flags=re.M)
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "pip", "install"], where
    for word in words[4:]:
        if word.startswith("torch"):
            assert word == torch_pin, f"{where}: torch must be pinned as {torch_pin}"
            continue
        m = re.fullmatch(r"\.(?:\[(.+)\])?", word)
        assert m, f"{where}: installs {word!r}, not this project"
        for extra in (m[1] or "").split(","):
            assert not extra or extra in extras, f"{where}: no extra {extra!r} in pyproject"
    ci = (ROOT / ".ci" / "run").read_text()
    if command == "python -m pip install .":  # the quickstart, which CI follows in a fresh venv
        assert "python -m pip install . && bpcore train" in ci


def _python(args: list[str], cwd: Path, where: str, env: dict[str, str] | None = None):
    """Run this Python with ``args``; fail with its output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = (result.stdout + result.stderr)[-2000:]
    assert result.returncode == 0, f"{where} failed:\n{output}"
    return result


def _run_bpcore(command: str, backend, cwd: Path, where: str) -> subprocess.CompletedProcess:
    args = shlex.split(command)[1:]
    if "--backend" in args:
        args[args.index("--backend") + 1] = backend.name
        if "--device" in args:
            args[args.index("--device") + 1] = backend.device
        else:
            args += ["--device", backend.device]
    # The checkout's bpcore, installed or not (pytest puts it on sys.path, not on PYTHONPATH).
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path}
    return _python(["-m", "bpcore", *args], cwd, f"{where}: {command!r}", env)


# Collects each pytest command of a page in turn, in one process: the backends' imports, most
# of a collection's time, are then paid once per page. Prints each exit status after a marker.
_COLLECTOR = """
import json, os, sys
import pytest
base = dict(os.environ)
for env, args in json.loads(sys.argv[1]):
    os.environ.clear()
    os.environ.update(base, **env)
    code = pytest.main(args)
    print(f"<<exit {int(code)}>>", flush=True)
"""


def _collect(commands: list[tuple[str, str]]) -> None:
    """Pytest commands: their environment, paths and options must be valid (collection only)."""
    runs = []
    for command, where in commands:
        words = shlex.split(command)
        env = {}
        while "=" in words[0]:
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        assert words[:3] == ["python", "-m", "pytest"], where
        args = [w for w in words[3:] if not w.startswith("--benchmark-json=")]
        if "-n" in args:  # collecting needs no pytest-xdist workers (each would collect again)
            args += ["-n", "0"]
        args += ["--collect-only", "-q", "-p", "no:cacheprovider"]
        runs.append((env, args))
    # A pytest of its own, not one of this run's pytest-xdist workers (whose variables would
    # make pytest-benchmark disable itself, with a warning that is an error here).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    where = ", ".join(where for _, where in commands)
    result = _python(["-c", _COLLECTOR, json.dumps(runs)], ROOT, where, env)
    outputs = result.stdout.split("<<exit ")
    errors = result.stderr[-2000:]  # pytest writes usage errors there
    assert len(outputs) == len(runs) + 1, f"{where}:\n{result.stdout[-2000:]}\n{errors}"
    for (_, where), output, status in zip(commands, outputs, outputs[1:], strict=False):
        assert status.startswith("0>>"), f"{where} failed:\n{output[-2000:]}\n{errors}"
        assert re.search(r"\d+ tests? collected", output), f"{where}:\n{output[-2000:]}"


def _run_report(args: list[str], where: str) -> None:
    """The report command: it must exist, and the committed pages must be what it writes
    (``--check`` writes nothing; tests/test_published_figures.py tests the check itself)."""
    assert set(args) <= {"--check", "--charts"}, f"{where}: report.py has no options {args}"
    _python(["benchmarks/report.py", "--check"], ROOT, where)


# A documented `bpcore bench` runs as written, narrowed to NumPy, one round and no peers: its
# speed is not what a docs test checks, and tests/test_bench.py runs its rows on every backend.
BENCH_SMOKE = ["--backends", "numpy", "--rounds", "1", "--no-peers"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("console"), ids=_id)
def test_console_commands_run(page, backend, tmp_path):
    nox_sessions = set(re.findall(r"^def (\w+)\(session", (ROOT / "noxfile.py").read_text(), re.M))
    pytest_commands = []
    for command, line in _commands(page):
        where = f"{_id(page)}:{line}"
        words = shlex.split(command)
        named = words[words.index("--backend") + 1] if "--backend" in words else "numpy"
        if named not in ("cupy", backend.name):
            continue  # a command runs on the backend it names; cupy's on every backend
        if words[0] == "bpcore" and "fashion-mnist" in words:
            pass  # test_fashion_mnist_job runs it, beside this test
        elif words[:2] == ["bpcore", "bench"]:
            _run_bpcore(shlex.join([*words, *BENCH_SMOKE]), backend, tmp_path, where)
        elif words[0] == "bpcore":
            _run_bpcore(command, backend, tmp_path, where)
        elif command == _readme_test_command():
            pass  # CI runs exactly this (tests/test_readme.py checks it)
        elif command in (ROOT / ".ci" / "run").read_text().splitlines():
            pass  # a check CI runs after the tests (ruff, mypy, Sphinx), verbatim
        elif words[:4] == ["python", "-m", "pip", "install"]:
            _check_install(command, where)
        elif "pytest" in words[:4] and "-m" in words[:4]:
            pytest_commands.append((command, where))  # collected: running them is the benchmark
        elif words[0] == "pytest-benchmark":
            assert words[1] == "compare" and (ROOT / "benchmarks" / "results").is_dir(), where
        elif words[:2] == ["python", "benchmarks/report.py"]:
            _run_report(words[2:], where)
        elif words[:2] == ["nox", "-s"]:
            for name in words[2:]:
                assert name.split("(")[0] in nox_sessions, f"{where}: no nox session {name!r}"
        else:
            pytest.fail(f"{where}: the docs tests do not know how to run {command!r}")
    if pytest_commands:
        _collect(pytest_commands)


def _fashion_mnist_commands() -> list[tuple[str, str]]:
    return [
        (command, f"{_id(page)}:{line}")
        for page in _pages_with("console")
        for command, line in _commands(page)
        if command.startswith("bpcore ") and "fashion-mnist" in shlex.split(command)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "where"), _fashion_mnist_commands())
def test_fashion_mnist_job(command, where, tmp_path, fashion_mnist_dir):
    """The tutorial's Fashion-MNIST job, which must reach its target: TwoLayerNet(784, 256, 10,
    "he") in effect, Adam 1e-3, batch 100, 10 epochs, 0.875 or more test accuracy. The suite's
    one 10-epoch training, on NumPy."""
    result = _run_bpcore(f"{command} --json", None, tmp_path, where)
    assert json.loads(result.stdout.splitlines()[-1])["test_acc"] >= 0.875, where


@pytest.mark.parametrize("script", sorted((DOCS / "figures").glob("*.py")), ids=lambda p: p.name)
def test_figure_scripts_draw_the_committed_pictures(script, tmp_path, monkeypatch):
    """Each docs/figures script still runs on today's bpcore, and its picture is in the docs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"figure_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = module.OUT
    assert committed.is_file(), f"{script.name} draws {committed}, which is not committed"
    referenced = "\n".join(p.read_text() for p in PAGES)
    assert f"_static/{committed.name}" in referenced, f"no page shows {committed.name}"
    monkeypatch.setattr(module, "OUT", tmp_path / committed.name)
    module.main()
    assert (tmp_path / committed.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
