"""The shape of pipezone/core: no import cycle, and dependencies that run one way (ARCHITECTURE.md).

The graph holds every import of a pipezone module, function-level ones included (a lazy import that
closes a circle is still a circle); only `if TYPE_CHECKING:` blocks are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Layers, bottom first: a package imports only from layers below its own (and from itself).
LAYERS: dict[str, int] = {
    "failpoints": 0,
    "spec": 0,
    "demo": 0,
    "spark": 1,
    "state": 1,
    "lake": 2,
    "sources": 2,
    "destinations": 3,
    "quality": 3,
    "steps": 4,
    "runs": 5,
    "airflow": 6,
    "cli": 7,
}


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the `pipezone` package."""
    modules = {}
    for path in sorted((root / "pipezone").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The pipezone modules an import statement loads (the nearest known module for `from x import name`)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the pipezone modules it imports anywhere (TYPE_CHECKING blocks excluded)."""
    files = module_files(root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        deps: set[str] = set()
        pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                pending.extend(node.orelse)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps |= _imported(module, path.name == "__init__.py", node, known)
            pending.extend(ast.iter_child_nodes(node))
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> str | None:
    """The pipezone.core package (or top module) a module belongs to; None above pipezone.core."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "core" else None


def test_the_graph_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pipezone"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pipezone import b\n    return b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipezone import c\n")
    (pkg / "c.py").write_text("from pipezone.a import f\n")
    graph = import_graph(tmp_path)
    assert graph["pipezone.a"] == {"pipezone.b"}
    assert graph["pipezone.b"] == set()
    assert find_cycle(graph) is None
    (pkg / "b.py").write_text("import pipezone.c\n")
    assert find_cycle(import_graph(tmp_path)) == ["pipezone.a", "pipezone.b", "pipezone.c", "pipezone.a"]


def test_pipezone_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_package_of_core_has_a_layer() -> None:
    packages = {layer_of(module) for module in module_files()} - {None}
    assert packages == set(LAYERS), "give each pipezone/core package a layer in LAYERS (and ARCHITECTURE.md)"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_dependencies_run_one_way(package: str) -> None:
    """A package imports only packages of a lower layer: specs at the bottom, CLI and Airflow on top."""
    wrong = []
    for module, deps in import_graph().items():
        if layer_of(module) != package:
            continue
        for dep in sorted(deps):
            target = layer_of(dep)
            if target is not None and target != package and LAYERS[target] >= LAYERS[package]:
                wrong.append(f"{module} imports {dep} (layer {LAYERS[target]} >= {LAYERS[package]})")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_500_lines() -> None:
    long = {m: n for m, p in module_files().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these by concern: {long}"
