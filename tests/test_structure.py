"""The package's architecture, read from its source: what the backends guide and STYLE promise.

* only ``bpcore/backends`` knows libraries by name;
* no module reads another module's private (underscore) names;
* no import cycle between bpcore's modules, imports inside functions included;
* no class over 450 lines, no module over 800;
* each job in one place: only ``bpcore.checkpoints`` reads and writes checkpoint files, only
  ``bpcore.book`` tells a bpcore network from the book's own, only ``Network.using_state``
  swaps a network's state, only ``bpcore.layers`` reads the layers' optional attributes, and
  the command line takes its networks from one registry;
* the layers build on nothing of the entry points' validation (``bpcore._checks``).
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


# -- the boundaries the package's layout draws ---------------------------------------------------

#: The longest a class and a module may grow before they mix jobs (see docs/contributing.md).
MAX_CLASS_LINES = 450
MAX_MODULE_LINES = 800


@pytest.mark.parametrize("name", list(MODULES), ids=str)
def test_no_class_or_module_outgrows_its_job(name):
    text = MODULES[name].read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name} is over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"{name}.{node.name} is {lines} lines"


def _calls(name: str) -> list[tuple[int, str, list[ast.expr]]]:
    """(line, called name, arguments) of every call in module ``name``: ``f(...)`` and
    ``obj.f(...)`` both by ``f``."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            found.append((node.lineno, called, node.args))
    return found


@pytest.mark.parametrize("name", list(MODULES), ids=str)
def test_only_checkpoints_opens_checkpoint_files(name):
    # A checkpoint is an .npz archive: whoever calls numpy's load or savez reads or writes the
    # format, which lives in one module.
    if name == "bpcore.checkpoints":
        return
    used = [(line, f) for line, f, _ in _calls(name) if f in {"load", "savez", "savez_compressed"}]
    used = [(line, f) for line, f in used if f != "load" or "np.load" in _line(name, line)]
    assert not used, f"{name} reads or writes .npz files {used}: that is bpcore.checkpoints' job"


def _line(name: str, line: int) -> str:
    return MODULES[name].read_text().splitlines()[line - 1]


#: The optional attributes of the `bpcore.layers.Layer` protocol, read through its functions.
LAYER_ATTRIBUTES = {
    "param_names",
    "buffer_names",
    "takes_train_flg",
    "computes_input",
    "generator",
    "hold_mask",
    "backward_params",
}


@pytest.mark.parametrize("name", [n for n in MODULES if n != "bpcore.layers"], ids=str)
def test_layers_optional_attributes_are_read_through_the_protocol(name):
    guessed = [
        (line, f, args[1].value)
        for line, f, args in _calls(name)
        if f in {"getattr", "hasattr"}
        and len(args) > 1
        and isinstance(args[1], ast.Constant)
        and args[1].value in LAYER_ATTRIBUTES
    ]
    assert not guessed, f"{name} guesses at layer attributes {guessed}: use bpcore.layers' readers"


@pytest.mark.parametrize("name", [n for n in MODULES if n != "bpcore.book"], ids=str)
def test_one_place_tells_a_bpcore_network_from_the_books(name):
    told = [
        line
        for line, f, args in _calls(name)
        if (f == "isinstance" and len(args) > 1 and "Network" in ast.unparse(args[1]))
        or f == "BookNetwork"
    ]
    assert not told, f"{name}:{told} tells networks apart: that is bpcore.book.trainable's job"


@pytest.mark.parametrize(
    "name", ["bpcore.layers", "bpcore.im2col", "bpcore.labels", "bpcore.backends"], ids=str
)
def test_what_layers_use_is_not_entry_point_validation(name):
    # _checks holds the validation of the public entry points; the layers and what they build
    # on sit below it.
    assert "bpcore._checks" not in _edges(name, MODULES[name])


@pytest.mark.parametrize("name", list(MODULES), ids=str)
def test_state_is_swapped_in_one_place(name):
    # Binding parameters without their checks, and putting objects' attributes back, is
    # Network.using_state's job (with Params, which owns bind).
    if name in {"bpcore.networks.state", "bpcore.networks.params"}:
        return
    swaps = [(line, f) for line, f, _ in _calls(name) if f in {"bind", "clear"}]
    swaps = [(line, f) for line, f in swaps if f == "bind" or "vars(" in _line(name, line)]
    assert not swaps, f"{name} saves or swaps network state by hand at {swaps}: use using_state"


def test_the_command_line_has_one_model_registry():
    # The commands take their networks from bpcore.cli.models, never from a chain of
    # comparisons of their own.
    for name in (n for n in MODULES if n.startswith("bpcore.cli")):
        compared = [
            node.lineno
            for node in ast.walk(ast.parse(MODULES[name].read_text()))
            if isinstance(node, ast.Compare) and "args.model" in ast.unparse(node)
        ]
        assert not compared, f"{name}:{compared} compares args.model: use the registry"
