"""The module structure a newcomer relies on: no import cycles, and every module in a layer.

Every import counts, at module level, inside functions and under ``TYPE_CHECKING``: a cycle
of any of them means neither module can be read, tested or moved without the other.
``lint-imports`` (the contract in pyproject.toml) checks the direction between layers; these
tests check what it does not: that no cycle hides inside a layer or a package, and that no
module is left out of the contract, where nothing would check its imports.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("nflow", exclude_type_checking_imports=False, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
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
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_import_cycle_among_nflow_modules() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    details = []
    for component in cycles:
        members = set(component)
        for importer in component:
            for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    details.append(f"{importer}:{detail['line_number']} imports {imported}")
    assert not cycles, "import cycles:\n" + "\n".join(details)


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.z")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_every_module_is_in_a_layer_of_the_contract() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["root_package"] == "nflow"
    # Imports under TYPE_CHECKING must count: a type-only import upward is still a dependency.
    assert config.get("exclude_type_checking_imports", False) is False
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    top_level = {
        ".".join(module.split(".")[:2]) for module in _graph().modules if module != "nflow"
    }
    assert sorted(top_level - layered) == []
    assert sorted(layered - top_level) == []
