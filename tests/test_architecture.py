"""The layering holds: walks every import in the package (function-local ones too) and checks the rules
docs/architecture.md states, so they stay true as the code grows."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dagster_twins"
DOMAINS = ("ingestion", "transform", "twins", "churn", "simulation", "quality", "serving")
PLATFORM = ("warehouse", "settings", "contract", "partitions", "layers", "metadata", "run_config")
# assemble and run the layers
COMPOSITION = ("definitions", "location", "pipeline", "launch", "cli", "automation", "jobs")
PUBLIC = ("store",)  # the module of a layer other layers may import (its tables, by the layer's own rules)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at top level?) for every import of the package's own modules in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from dagster_twins.twins import store` imports the module dagster_twins.twins.store
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("dagster_twins") and _exists(name):
                found.append((name, id(node) in top))
    return found


def _exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _room(module: str) -> str:
    """The folder a module lives in (dagster_twins.churn.store -> churn), or a root module's own name
    (dagster_twins.cli -> cli): root modules are rooms of their own, so cli -> pipeline -> definitions is a chain."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dagster_twins"


GRAPH: dict[str, list[tuple[str, bool]]] = {
    _module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))
}


def _violations(rule) -> list[str]:
    return sorted(f"{src} -> {dst}" for src, targets in GRAPH.items() for dst, top in targets
                  if _room(src) != _room(dst) and rule(_room(src), dst, top))


def test_the_walk_sees_the_package():
    assert len(GRAPH) > 60 and all(_room(m) in (*DOMAINS, *PLATFORM, *COMPOSITION, "tools", "demo", "dagster_twins")
                                   for m in GRAPH), sorted({_room(m) for m in GRAPH})
    assert ("dagster_twins.churn.store", True) in GRAPH["dagster_twins.simulation.assets"]


def test_the_platform_imports_no_layer():
    assert _violations(lambda src, dst, _top: src in PLATFORM and _room(dst) not in PLATFORM) == []


def test_a_layer_imports_only_the_platform_and_other_layers_stores():
    def breaks(src, dst, _top):
        if src not in DOMAINS:
            return False
        if _room(dst) in PLATFORM:
            return False
        return not (_room(dst) in DOMAINS and dst.rsplit(".", 1)[-1] in PUBLIC)

    assert _violations(breaks) == []


def test_tools_and_the_demo_stay_outside_the_runtime_path():
    # The CLI may start a tool or the demo generator, but only from inside the command that needs it.
    def breaks(src, dst, top):
        if _room(dst) not in ("tools", "demo") or src in ("tools",):
            return False
        return not (src == "cli" and not top)

    assert _violations(breaks) == []


def test_no_loop_between_folders():
    edges = defaultdict(set)
    for src, targets in GRAPH.items():
        for dst, _ in targets:
            if _room(src) != _room(dst):
                edges[_room(src)].add(_room(dst))
    loops = []

    def visit(node, path):
        for nxt in edges[node]:
            if nxt in path:
                loops.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in list(edges):
        visit(start, [start])
    assert loops == []


@pytest.mark.parametrize("rule", [test_the_platform_imports_no_layer,
                                  test_a_layer_imports_only_the_platform_and_other_layers_stores])
def test_the_rules_catch_a_breach(rule, monkeypatch):
    """The rules are not vacuous: one planted arrow of each kind fails them."""
    breach = {"test_the_platform_imports_no_layer": ("dagster_twins.warehouse.tables", "dagster_twins.twins.state"),
              "test_a_layer_imports_only_the_platform_and_other_layers_stores": (
                  "dagster_twins.simulation.assets", "dagster_twins.churn.models")}[rule.__name__]
    monkeypatch.setitem(GRAPH, breach[0], [*GRAPH[breach[0]], (breach[1], True)])
    with pytest.raises(AssertionError):
        rule()
