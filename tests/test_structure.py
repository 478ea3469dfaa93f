"""The package's architecture, read from its source: what the backends guide and STYLE promise.

* only ``bpcore/backends`` knows libraries by name;
* no module reads another module's private (underscore) names;
* no import cycle between bpcore's modules, imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bpcore.backends import BACKENDS

PACKAGE = Path(__file__).resolve().parent.parent / "bpcore"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported from it, line) for each bpcore import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bpcore"):
            found.append((str(node.module), [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bpcore"):
                    found.append((alias.name, [], node.lineno))
    return found


def _edges(name: str, path: Path) -> set[str]:
    """The bpcore modules that ``name`` imports (a name imported from a package that is one of
    its submodules counts as that submodule)."""
    edges = set()
    for target, names, _ in _imports(name, path):
        submodules = {f"{target}.{n}" for n in names} & MODULES.keys()
        edges |= submodules
        if len(submodules) < len(names) or not names:
            edges.add(target)
    edges.discard(name)
    return edges


@pytest.mark.parametrize(
    "name", [n for n in MODULES if not n.startswith("bpcore.backends")], ids=str
)
def test_only_the_backends_package_names_libraries(name):
    tree = ast.parse(MODULES[name].read_text())
    docstrings = _docstrings(tree)
    named = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in BACKENDS and id(node) not in docstrings
    ]
    assert not named, f"{name} tests library names {named}: that belongs in bpcore.backends"


@pytest.mark.parametrize("name", list(MODULES), ids=str)
def test_no_module_reads_another_modules_private_names(name):
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    modules = {}  # local names bound to bpcore modules
    for target, names, line in _imports(name, path):
        # A private module of the package (``from . import _checks``) is plumbing it may use;
        # a private name from inside another module is not.
        private = [
            n
            for n in names
            if n.startswith("_") and not n.startswith("__") and f"{target}.{n}" not in MODULES
        ]
        assert not private, f"{name}:{line} imports private names {private} from {target}"
        for n in names:
            if f"{target}.{n}" in MODULES:
                modules[n] = f"{target}.{n}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            raise AssertionError(
                f"{name}:{node.lineno} reads {node.value.id}.{node.attr}, a private name of "
                f"{modules[node.value.id]}"
            )


def test_no_import_cycles():
    graph = {name: _edges(name, path) for name, path in MODULES.items()}
    assert graph["bpcore.networks.base"] >= {"bpcore.checkpoints", "bpcore.layers"}  # sees imports

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            visit(nxt, [*path, nxt])

    for start in graph:
        visit(start, [start])


def test_citation_and_changelog_name_this_version():
    from bpcore import __version__

    root = Path(__file__).resolve().parent.parent
    citation = (root / "CITATION.cff").read_text(encoding="utf-8")
    assert f'\nversion: "{__version__}"\n' in citation
    assert "Saito" in citation  # the book it follows is credited
    assert f"({__version__})" in (root / "CHANGELOG.md").read_text(encoding="utf-8")
