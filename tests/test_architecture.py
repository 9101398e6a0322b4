"""The shape of the package: imports point one way (no cycles), statistics stay pure, only the
command line starts the suite, modules stay readable in one sitting, imports sit at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deepm3"
MAX_LINES = 400
# Heavy optional dependencies that may be imported where they are used, and the module that
# needs them (the HTTP server: FastAPI and uvicorn).
LAZY_ALLOWED = {"onnx", "onnxruntime", "onnxscript", "uvicorn", "fastapi", "optuna"}
LAZY_MODULES = {"deepm3.recommend.server"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import of a deepm3 module in ``path``."""
    tree = ast.parse(path.read_text())
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    root = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*root, base] if base else root)
                found.append((base, inside))
                found.extend((f"{base}.{alias.name}", inside) for alias in child.names)
            visit(child, inside)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    """module -> deepm3 modules it imports (anywhere in the file, functions included)."""
    graph = {}
    for name, path in MODULES.items():
        targets = {target for target, _ in _imports(path) if target in MODULES}
        graph[name] = targets - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_a_cycle_is_found():
    """The control: the detector sees a cycle of three and ignores a chain."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_statistics_import_nothing_else_of_the_package():
    for name, targets in _graph().items():
        if name.startswith("deepm3.stats"):
            outside = {t for t in targets if not t.startswith("deepm3.stats")}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_only_the_commands_import_the_suite_stages_and_nothing_imports_the_cli():
    graph = _graph()
    assert {n for n, targets in graph.items() if "deepm3.suite.stages" in targets} == {
        "deepm3.commands"
    }
    importers = {n for n, targets in graph.items() if "deepm3.cli" in targets}
    assert importers == {"deepm3.__main__"}  # python -m deepm3


def test_modules_stay_readable_in_one_sitting():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: lines for n, lines in long.items() if lines > MAX_LINES} == {}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_sit_at_the_top(name):
    late = sorted(
        {
            target
            for target, inside in _imports(MODULES[name])
            if inside and target.split(".")[0] not in LAZY_ALLOWED and target not in LAZY_MODULES
        }
    )
    assert late == [], f"{name} imports {late} inside functions"


# The suite reads top-down: each module imports only modules listed before it.
SUITE_ORDER = [
    "budgets",
    "design",
    "layout",
    "pool",
    "training",
    "spaces",
    "search_storage",
    "search",
    "search_progress",
    "measure",
    "verdicts",
    "goals",
    "claims",
    "report",
    "stages",
]


def test_the_suite_pipeline_imports_only_earlier_stages():
    def place(module: str) -> int:
        return SUITE_ORDER.index(module.removeprefix("deepm3.suite.").split(".")[0])

    backwards = []
    for name, targets in _graph().items():
        if not name.startswith("deepm3.suite.") or name == "deepm3.suite":
            continue
        for target in targets:
            if target.startswith("deepm3.suite.") and place(target) > place(name):
                backwards.append(f"{name} -> {target}")
    assert backwards == []


# The package reads bottom-up: each part imports only parts listed before it.
LAYERS = [
    "deepm3",  # the package itself: its version
    "errors",
    "settings",
    "portable",
    "setting_changes",
    "config_yaml",
    "config",
    "data",
    "defaults",
    "ode",
    "models",
    "eval",
    "train",
    "stats",
    "reporting",
    "suite",
    "recommend",
    "commands",
    "cli",
    "__main__",
]


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "deepm3")


def test_the_package_imports_only_earlier_layers():
    backwards = sorted(
        f"{name} -> {target}"
        for name, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(name)
    )
    assert backwards == []
