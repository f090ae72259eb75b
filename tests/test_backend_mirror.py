"""The TensorFlow and PyTorch backend packages mirror each other (the Keras 3 idea).

Same module names; each module exports the same public names (``__all__``, in the same
order) with the same parameter names; public classes have the same public methods with
the same parameters. The two source trees are read with :mod:`ast`, so this runs
without importing either framework. Plugin modules and ``__init__`` must not import a
framework at module level: discovery imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "tensorflow": ROOT / "ptychopinn_tf" / "ptychopinn_tf",
    "pytorch": ROOT / "ptychopinn_torch" / "ptychopinn_torch",
}
#: Every backend package holds exactly these modules (brief: backend architecture).
EXPECTED_MODULES = ("__init__", "plugin", "layers", "network", "model", "training", "inference", "ops", "refine")
#: Top-level names of the frameworks: never imported at module level by light modules.
FRAMEWORKS = {"tensorflow", "torch", "lightning", "pytorch_lightning", "keras"}
#: Modules that discovery imports: they must stay framework-free at import.
LIGHT_MODULES = ("__init__", "plugin")


def _tree(backend: str, module: str) -> ast.Module:
    path = PACKAGES[backend] / f"{module}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _exported(tree: ast.Module) -> list[str]:
    """``__all__`` as written (a literal list or tuple of strings), else the public top-level names."""
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                return list(ast.literal_eval(node.value))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return [name for name in names if not name.startswith("_")]


def _definitions(tree: ast.Module) -> dict[str, ast.AST]:
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node
    return found


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameter names in signature order, with ``*``/``**`` marking variadics and ``*,`` keyword-only."""
    arguments = function.args
    names = [arg.arg for arg in arguments.posonlyargs + arguments.args]
    if arguments.vararg:
        names.append("*" + arguments.vararg.arg)
    elif arguments.kwonlyargs:
        names.append("*")
    names += [arg.arg for arg in arguments.kwonlyargs]
    if arguments.kwarg:
        names.append("**" + arguments.kwarg.arg)
    return names


def _is_setter(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(decorator, ast.Attribute) and decorator.attr in ("setter", "deleter")
               for decorator in function.decorator_list)


def _public_methods(cls: ast.ClassDef) -> dict[str, list[str]]:
    """``__init__`` and the public methods (properties as their getter) of a class."""
    methods = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_setter(node) and (
            not node.name.startswith("_") or node.name == "__init__"
        ):
            methods[node.name] = _parameters(node)
    return methods


def _signature(node: ast.AST) -> tuple:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return ("function", _parameters(node))
    if isinstance(node, ast.ClassDef):
        return ("class", _public_methods(node))
    return ("value",)


def _same_signature(first: tuple, second: tuple) -> bool:
    """Functions: same parameters. Classes: same ``__init__``, and the public methods
    both define take the same parameters (a framework may add its own helpers, e.g.
    TensorFlow's ``input_signature``; the shared API must agree)."""
    if first[0] != second[0]:
        return False
    if first[0] != "class":
        return first == second
    methods_a, methods_b = first[1], second[1]
    if methods_a.get("__init__") != methods_b.get("__init__"):
        return False
    return all(methods_a[name] == methods_b[name] for name in methods_a.keys() & methods_b.keys())


def _modules(backend: str) -> list[str]:
    return sorted(path.stem for path in PACKAGES[backend].glob("*.py"))


@pytest.mark.parametrize("backend", sorted(PACKAGES))
def test_package_has_the_expected_modules(backend: str) -> None:
    assert _modules(backend) == sorted(EXPECTED_MODULES)


def test_both_packages_have_the_same_modules() -> None:
    assert _modules("tensorflow") == _modules("pytorch")


@pytest.mark.parametrize("module", [m for m in EXPECTED_MODULES if m != "__init__"])
def test_modules_export_the_same_names(module: str) -> None:
    exported = {backend: _exported(_tree(backend, module)) for backend in PACKAGES}
    only_tf = sorted(set(exported["tensorflow"]) - set(exported["pytorch"]))
    only_torch = sorted(set(exported["pytorch"]) - set(exported["tensorflow"]))
    assert exported["tensorflow"] == exported["pytorch"], (
        f"{module}.py exports differ: only tensorflow {only_tf}, only pytorch {only_torch} (or the order differs)"
    )


@pytest.mark.parametrize("module", [m for m in EXPECTED_MODULES if m != "__init__"])
def test_exported_names_have_the_same_signatures(module: str) -> None:
    trees = {backend: _tree(backend, module) for backend in PACKAGES}
    names = _exported(trees["pytorch"])
    definitions = {backend: _definitions(tree) for backend, tree in trees.items()}
    for name in names:
        signatures = {}
        for backend in PACKAGES:
            assert name in definitions[backend], f"{module}.{name} is exported but not defined in {backend}"
            signatures[backend] = _signature(definitions[backend][name])
        assert _same_signature(signatures["tensorflow"], signatures["pytorch"]), f"{module}.{name}: {signatures}"


#: What every backend's PinnModel offers: the BackendModel protocol plus what training
#: and the parity checks use (brief: backend architecture).
MODEL_METHODS = ("__init__", "state", "get_weights", "set_weights", "predict", "forward", "loss", "loss_and_gradients")


@pytest.mark.parametrize("backend", sorted(PACKAGES))
def test_model_offers_the_shared_methods(backend: str) -> None:
    cls = _definitions(_tree(backend, "model"))["PinnModel"]
    assert isinstance(cls, ast.ClassDef)
    methods = _public_methods(cls)
    assert [name for name in MODEL_METHODS if name not in methods] == []
    assert methods["loss_and_gradients"] == ["self", "diffraction", "offsets_xy", "truth"]


@pytest.mark.parametrize("backend", sorted(PACKAGES))
@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_no_framework(backend: str, module: str) -> None:
    for node in _tree(backend, module).body:  # module level only; imports inside hooks are fine
        if isinstance(node, ast.Import):
            roots = {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").partition(".")[0]}
        else:
            continue
        assert not roots & FRAMEWORKS, f"{backend} {module}.py imports {sorted(roots & FRAMEWORKS)} at module level"


@pytest.mark.parametrize("backend", sorted(PACKAGES))
def test_init_holds_the_version_only(backend: str) -> None:
    tree = _tree(backend, "__init__")
    assigned = [target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)]
    assert assigned == ["__version__"]
    assert not any(isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) for node in tree.body)
