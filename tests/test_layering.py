"""The layers of the code base: imports run down, never up, and never in a circle.

The core is read as layers (:data:`LAYERS`, lowest first): a module may import its own
layer and those below, so that a lower layer can be read, tested and reused without the
ones above it (the physics without the data, the data without the backends, everything
without the CLI or Ptychodus). The sources are parsed with :mod:`ast`, nothing is
imported: every ``import`` counts, at module level, inside a function or under
``TYPE_CHECKING``, since each is a dependency a reader has to follow.

A new module of ``ptychopinn_core`` must be placed in :data:`LAYERS` (its prefix may
already cover it). An import that has to go up is a design question: move the shared
piece down. :data:`KNOWN_UPWARD_IMPORTS` only holds, each with its reason, one whose
fix is under way elsewhere.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Top-level package -> its source folder.
PACKAGES = {
    "ptychopinn_core": ROOT / "ptychopinn_core",
    "ptychopinn_tf": ROOT / "ptychopinn_tf" / "ptychopinn_tf",
    "ptychopinn_torch": ROOT / "ptychopinn_torch" / "ptychopinn_torch",
    "ptychopinn_onnx": ROOT / "ptychopinn_onnx" / "ptychopinn_onnx",
}
CORE = "ptychopinn_core"

#: Layers of ``ptychopinn_core``: module-name prefix (relative to the package, dotted;
#: ``__init__`` is the package itself) -> layer, lowest first. The longest prefix that
#: matches a module decides its layer.
LAYERS: Mapping[str, int] = {
    # 0: vocabulary with no dependencies of its own
    "__init__": 0,
    "atomic": 0,
    "config": 0,
    "progress": 0,
    "hardware": 0,
    "data.errors": 0,
    "data.keys": 0,
    # 1: the reference physics (numpy)
    "physics": 1,
    # 2: what the physics is applied to: the scan and its files, simulated scans, the model's parameters
    "data": 2,
    "simulation": 2,
    "model": 2,
    # 3: what the core does with them: training batches, inference chunks, refinement, results
    "training": 3,
    "inference_chunks": 3,
    "refine": 3,
    "evaluation": 3,
    "reconstruction": 3,
    "figures": 3,
    # 4: backends: the contract, the hooks, the registry
    "backends": 4,
    # 5: running backends: the workflow, the demo, parity and the conformance kit
    "parity": 5,
    "testing": 5,
    "workflow": 5,
    "demo": 5,
    # 6: the user's entry points: the command line and the Ptychodus adapter
    "cli": 6,
    "ptychodus": 6,
}

#: Imports that go up a layer today, each with the reason and who removes it:
#: ``(importing module, imported module) -> why``. Empty: keep it so.
KNOWN_UPWARD_IMPORTS: Mapping[tuple[str, str], str] = {}

#: Never imported by the core, anywhere: it must install and run without them.
CORE_FORBIDDEN = (
    "tensorflow", "keras", "torch", "lightning", "pytorch_lightning", "onnx", "onnxruntime",
    "ptychopinn_tf", "ptychopinn_torch", "ptychopinn_onnx",
)


# -- reading the sources ------------------------------------------------------------------


def find_modules(packages: Mapping[str, Path]) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of ``packages``."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(dotted name, line)`` of everything ``path`` imports, anywhere in the file.

    ``from a import b`` yields ``a.b`` (a module or a name in ``a``); relative imports
    are resolved against ``module``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module of ``modules`` that ``name`` lies in (its longest dotted prefix), or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: Mapping[str, Path]) -> dict[str, dict[str, int]]:
    """Module -> {module it imports -> first line}, within ``modules``."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for name, line in imported_names(module, path):
            target = resolve(name, modules)
            if target is not None and target != module:
                edges.setdefault(target, line)
    return graph


# -- the rules -----------------------------------------------------------------------------


def layer_of(module: str, layers: Mapping[str, int] = LAYERS) -> int | None:
    """The layer of a ``ptychopinn_core`` module (longest matching prefix), or None."""
    relative = "__init__" if module == CORE else module.removeprefix(CORE + ".")
    matches = [prefix for prefix in layers if relative == prefix or relative.startswith(prefix + ".")]
    return layers[max(matches, key=len)] if matches else None


def upward_imports(graph: Mapping[str, Mapping[str, int]], layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Every core import of a higher layer, as ``'a (layer 2) imports b (layer 3), line 7'``."""
    found = []
    for module, edges in sorted(graph.items()):
        if not module.startswith(CORE) or layer_of(module, layers) is None:
            continue
        for target, line in sorted(edges.items()):
            if not target.startswith(CORE) or layer_of(target, layers) is None:
                continue
            if layer_of(target, layers) > layer_of(module, layers) and (module, target) not in KNOWN_UPWARD_IMPORTS:
                found.append(
                    f"{module} (layer {layer_of(module, layers)}) imports {target} "
                    f"(layer {layer_of(target, layers)}), line {line}"
                )
    return found


def import_cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, {}):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def _describe_cycle(component: list[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    """Each edge inside a cycle, with the line that makes it."""
    members = set(component)
    edges = [f"{a} -> {b} (line {line})" for a in component for b, line in sorted(graph[a].items()) if b in members]
    return "; ".join(edges)


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return find_modules(PACKAGES)


@pytest.fixture(scope="module")
def graph(modules) -> dict[str, dict[str, int]]:
    return import_graph(modules)


# -- the tests -----------------------------------------------------------------------------


def test_every_core_module_has_a_layer(modules):
    unplaced = [module for module in modules if module.startswith(CORE) and layer_of(module) is None]
    assert not unplaced, f"place these modules in LAYERS (tests/test_layering.py): {unplaced}"


def test_every_layer_prefix_names_a_module(modules):
    """A prefix that matches nothing is left over from a move or misspelt."""
    core = [module for module in modules if module.startswith(CORE)]
    unused = [prefix for prefix in LAYERS if not any(layer_of(module, {prefix: 0}) is not None for module in core)]
    assert not unused, f"LAYERS names no module for {unused}"


def test_the_core_imports_only_its_own_layer_and_those_below(graph):
    violations = upward_imports(graph)
    assert not violations, "imports up the layers:\n" + "\n".join(violations)


def test_known_upward_imports_are_still_needed(graph):
    """An allowed exception that no longer happens must be removed from the list."""
    stale = [pair for pair in KNOWN_UPWARD_IMPORTS if pair[1] not in graph.get(pair[0], {})]
    assert not stale, f"remove from KNOWN_UPWARD_IMPORTS: {stale}"


def test_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe_cycle(cycle, graph) for cycle in cycles)


def test_the_core_never_imports_a_framework_or_a_backend(modules):
    found = [
        f"{module} imports {name}, line {line}"
        for module, path in modules.items()
        if module.startswith(CORE)
        for name, line in imported_names(module, path)
        if name.split(".")[0] in CORE_FORBIDDEN
    ]
    assert not found, "the core must run without frameworks and backends:\n" + "\n".join(found)


# -- the checker itself catches what it is meant to ---------------------------------------


def _write(folder: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return find_modules({CORE: folder})


def test_checker_finds_imports_inside_functions_and_type_checking(tmp_path):
    modules = _write(tmp_path / CORE, {
        "__init__.py": "",
        "config.py": "def f():\n    from ptychopinn_core.cli import main\n",
        "physics/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import stitching\n",
        "physics/stitching.py": "from ..config import f\n",
        "cli/__init__.py": "",
        "cli/main.py": "import ptychopinn_core.physics.stitching\n",
    })
    graph = import_graph(modules)
    assert graph[f"{CORE}.physics"] == {f"{CORE}.physics.stitching": 3}
    assert graph[f"{CORE}.physics.stitching"] == {f"{CORE}.config": 1}
    assert upward_imports(graph, {"__init__": 0, "config": 0, "physics": 1, "cli": 6}) == [
        f"{CORE}.config (layer 0) imports {CORE}.cli.main (layer 6), line 2"
    ]
    assert import_cycles(graph) == [[f"{CORE}.cli.main", f"{CORE}.config", f"{CORE}.physics.stitching"]]
