"""nox sessions for bpcore: ``nox -l`` lists them.

Every session also runs in an environment that already has the packages and no package index
(the CUDA machines): ``nox --no-venv -s "tests(cupy)"`` skips the installs. Without nox, the same
tests run as ``BPCORE_BACKENDS=cupy,torch python -m pytest``.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = [
    "lint",
    "typecheck",
    "tests(numpy)",
    "tests(array_api_strict)",
    "tests(torch)",
    "tests(jax)",
    "tests(dask)",
    "docs",
]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask", "cupy"]
# The CPU build that lies on this project's machines. Never leave torch unpinned here: pip would
# fetch a CUDA build of several GB.
TORCH = "torch==2.13.0"
EXTRAS = {
    "numpy": [],
    "array_api_strict": ["-e", ".[strict]"],
    "torch": [TORCH, "-e", ".[torch]"],
    "jax": ["-e", ".[jax]"],
    "dask": ["-e", ".[dask]"],
    "cupy": ["-e", ".[cuda12]"],
}
GRADCHECK_TESTS = [
    "tests/test_layers.py",
    "tests/test_gradcheck.py",
    "tests/test_torch_oracle.py",
    "tests/test_book_regressions.py",
]


def _install(session: nox.Session, *args: str) -> None:
    """Install into the session's venv; with --no-venv the packages must already be there."""
    if session.venv_backend == "none":
        return
    session.install(*args)


def _install_for(session: nox.Session, backend: str) -> None:
    if backend == "torch":
        _install(session, TORCH)  # first, so that nothing below can pull another torch
    _install(session, "-e", ".", *nox.project.dependency_groups(PYPROJECT, "test"))
    if EXTRAS[backend]:
        _install(session, *EXTRAS[backend])


@nox.session
@nox.parametrize("backend", BACKENDS, ids=BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one backend (BPCORE_BACKENDS narrows the fixture to it)."""
    _install_for(session, backend)
    session.run(
        "python",
        "-m",
        "pytest",
        "-n",
        "auto",
        "--dist",
        "loadgroup",  # the tests that start a Dask cluster, on one worker
        *(session.posargs or ["tests"]),
        env={"BPCORE_BACKENDS": backend},
    )


@nox.session
@nox.parametrize("backend", BACKENDS, ids=BACKENDS)
def gradcheck(session: nox.Session, backend: str) -> None:
    """Run the gradient checks (layers, networks, PyTorch oracle, book cell) on one backend."""
    _install_for(session, backend)
    session.run("python", "-m", "bpcore", "gradcheck", "--backend", backend)
    session.run(
        "python",
        "-m",
        "pytest",
        "-n",
        "auto",
        *(session.posargs or GRADCHECK_TESTS),
        env={"BPCORE_BACKENDS": backend},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    _install(session, "ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the bpcore package with mypy."""
    _install(session, "-e", ".", "mypy>=1.10", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into docs/_build/html; any warning is an error."""
    _install(session, "-e", ".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run(
        "python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
@nox.parametrize("backend", BACKENDS, ids=BACKENDS)
def bench(session: nox.Session, backend: str) -> None:
    """Benchmark one backend beside the peers: the pytest-benchmark suite, then ``bpcore bench``.

    Writes ``benchmarks/results/new/<backend>.json`` and ``bench-<backend>.json`` (ignored by
    git): a run never writes over a committed result (``benchmarks/report.py`` says how one is
    published).
    """
    _install_for(session, backend)
    if backend != "torch":
        _install(session, TORCH)  # the PyTorch-eager peer row
    out = Path("benchmarks/results/new")
    out.mkdir(parents=True, exist_ok=True)
    session.run(
        "python",
        "-m",
        "pytest",
        "benchmarks",
        "--benchmark-enable",
        f"--benchmark-json={out / f'{backend}.json'}",
        *session.posargs,
        env={"BPCORE_BACKENDS": backend},
    )
    with (out / f"bench-{backend}.json").open("w") as document:
        # the table and the progress bar on the terminal, the document in the file
        session.run(
            "python",
            "-m",
            "bpcore",
            "bench",
            "--backends",
            backend,
            "--json",
            stdout=document,
            stderr=None,
        )


@nox.session
def bench_report(session: nox.Session) -> None:
    """Rewrite the docs' and the README's figures, and the charts, from the committed results."""
    _install(session, "-e", ".", "matplotlib>=3.8")
    session.run("python", "benchmarks/report.py", "--charts")
