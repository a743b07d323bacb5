"""The package's layout rules, checked on the source: no import cycles, imports point down, no
private names across modules, optional extras imported where used, no overlong functions."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "jnet"

#: Layers, lowest first: a module may import its own layer (without cycles) or a lower one.
LAYERS = [
    ("jnet._options", "jnet._version", "jnet.io", "jnet.registry", "jnet.resize"),
    ("jnet.data", "jnet.models", "jnet.heads", "jnet.losses", "jnet.metrics"),
    ("jnet.compiled",),
    ("jnet.model",),
    ("jnet.training",),
    ("jnet.deploy",),
    ("jnet.study",),
    ("jnet.cli",),
]
#: The package's public face and ``python -m jnet`` may import anything.
ENTRY_POINTS = ("jnet", "jnet.__main__")
#: Optional extras (pyproject's extras): imported inside the function that needs them.
OPTIONAL = ("onnx", "onnxruntime", "matplotlib", "nibabel", "PIL")
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str) -> list[tuple[str, str, ast.AST]]:
    """``(imported jnet module, imported name or '', node)`` for every import in module ``name``."""
    found = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node) for a in node.names if a.name.split(".")[0] == "jnet"]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, node)
            if module.split(".")[0] != "jnet":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((sub, "", node) if sub in MODULES else (module, alias.name, node))
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target != name} for name in MODULES}


def _layer(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in layer):
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_layout.py: add it to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_every_module_is_found_and_importable() -> None:
    assert {"jnet.cli", "jnet.training.trainer", "jnet.deploy.export", "jnet.study.sweep"} <= set(MODULES)
    for name in MODULES:
        assert importlib.util.find_spec(name) is not None, name


def test_no_import_cycle_between_jnet_modules() -> None:
    graph = _graph()
    unknown = {target for targets in graph.values() for target in targets} - set(MODULES)
    assert not unknown, f"imports of modules that do not exist: {sorted(unknown)}"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down() -> None:
    upward = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if name not in ENTRY_POINTS
        for target in targets
        if target not in ENTRY_POINTS and _layer(target) > _layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [
        f"{name}: from {module} import {imported}"
        for name in MODULES
        for module, imported, _ in _imports(name)
        if imported.startswith("_") and not imported.startswith("__") and module != name
    ]
    assert not private, "\n".join(private)


def _function_imports(tree: ast.AST) -> list[tuple[str, str]]:
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(fn.name, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    found.append((fn.name, node.module or ""))
    return found


def test_only_optional_extras_are_imported_inside_functions() -> None:
    hidden = [
        f"{name}.{fn}: import {module}"
        for name, path in MODULES.items()
        for fn, module in _function_imports(ast.parse(path.read_text()))
        if module.split(".")[0] not in OPTIONAL
    ]
    assert not hidden, "imports inside functions (move them to the top of the module):\n" + "\n".join(hidden)


def test_no_function_is_overlong() -> None:
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize(
    ("module", "node_text", "expected"),
    [
        ("jnet.data.cache", "from jnet.data import sources", "jnet.data.sources"),
        ("jnet.data.cache", "from . import sources", "jnet.data.sources"),
        ("jnet.training", "from .config import TrainConfig", "jnet.training.config"),
    ],
)
def test_imports_resolve_to_modules(module: str, node_text: str, expected: str) -> None:
    node = ast.parse(node_text).body[0]
    assert isinstance(node, ast.ImportFrom)
    resolved = _resolve(module, node)
    sub = f"{resolved}.{node.names[0].name}"
    assert (sub if sub in MODULES else resolved) == expected
