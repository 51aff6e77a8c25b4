"""The Drawflow app document parsed into typed, validated values.

Parsing is lenient where the designer is (orphan nodes, extra keys) and strict where a run
would otherwise fail silently (a connection to a node that does not exist, a node without
``data``). Every finding is a :class:`~nflow.errors.Problem` naming the tab, node and field.
"""

from __future__ import annotations

__all__ = [
    "KNOWN_NODE_TYPES",
    "Node",
    "Playbook",
    "Starter",
    "load_playbook",
    "parse_playbook",
]

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from nflow.config import validate_app_limits
from nflow.errors import PlaybookError, Problem
from nflow.steps import KNOWN_NODE_TYPES, registered_steps

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})


@dataclass(frozen=True, slots=True)
class Node:
    """One box of the designer. ``outputs`` maps ``output_N`` to the first connected node id."""

    id: str
    tab: str
    type: str
    data: Mapping[str, Any]
    outputs: Mapping[str, str | None]
    order: int  # position in the document, for deterministic matching

    @property
    def name(self) -> str:
        value = self.data.get("name_box")
        return value if isinstance(value, str) else ""

    @property
    def label(self) -> str:
        """How errors refer to the node: its id and, when set, its designer name."""
        return f"{self.id} ({self.name})" if self.name else self.id


@dataclass(frozen=True, slots=True)
class Starter:
    """A starter node ready for matching."""

    node: Node
    method: str
    pattern: str
    segments: tuple[str, ...]
    first: str  # id of the node connected to output_1

    @property
    def auth(self) -> bool:
        return flag(self.node.data.get("nflow_auth"))


@dataclass(frozen=True, slots=True)
class Playbook:
    """A whole app: every tab's nodes, its starters in document order, and its problems."""

    name: str
    nodes: Mapping[str, Node]
    starters: tuple[Starter, ...]
    tabs: tuple[str, ...]
    digest: str
    problems: tuple[Problem, ...] = field(default=())
    # The document's "nflow_limits": valid overrides only (bad entries are problems).
    limits: Mapping[str, int | float] = field(default_factory=lambda: MappingProxyType({}))
    # The parsed document itself: an app version is the hash of it and the sources it uses.
    document: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    # The app version (see nflow.appversion), set by the catalog once the sources are known.
    version: str = ""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def reachable(self, start: str) -> set[str]:
        """Ids of nodes reachable from ``start`` through connected outputs."""
        seen: set[str] = set()
        stack = [start]
        while stack:
            node_id = stack.pop()
            if node_id in seen or node_id not in self.nodes:
                continue
            seen.add(node_id)
            stack.extend(t for t in self.nodes[node_id].outputs.values() if t)
        return seen


def flag(value: object) -> bool:
    """The designer stores checkboxes as "true"/"false" strings; absent means off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no")
    return value is not None


def load_playbook(text: str | bytes, *, name: str = "app", source: str = "") -> Playbook:
    """Parse a JSON app document, raising :class:`PlaybookError` if it cannot be used at all."""
    where = source or name
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line, col = _json_position(text, exc.pos)
        error = PlaybookError(f"{where}: not valid JSON at line {line}, column {col}: {exc.msg}")
        # The message says it all once; the problem serves listings of problems.
        error.problems = [Problem("error", f"invalid JSON: {exc.msg}", line=line)]
        raise error from None
    return parse_playbook(doc, name=name, source=source)


def parse_playbook(doc: object, *, name: str = "app", source: str = "") -> Playbook:
    where = source or name
    if not isinstance(doc, dict) or not isinstance(doc.get("drawflow"), dict):
        keys = ", ".join(sorted(doc)) if isinstance(doc, dict) else type(doc).__name__
        raise PlaybookError(
            f"{where}: not an nFlow app document",
            [Problem("error", f'expected an object with a "drawflow" key, got {keys}')],
        )
    problems: list[Problem] = []
    nodes: dict[str, Node] = {}
    tabs: list[str] = []
    order = 0
    for tab, tab_doc in doc["drawflow"].items():
        tabs.append(tab)
        if not isinstance(tab_doc, dict) or not isinstance(tab_doc.get("data", {}), dict):
            problems.append(Problem("error", 'tab must be an object with a "data" object', tab=tab))
            continue
        for node_id, raw in (tab_doc.get("data") or {}).items():
            order += 1
            node = _parse_node(tab, node_id, raw, order, problems)
            if node is not None:
                if node_id in nodes:
                    problems.append(
                        Problem("error", "node id used twice", tab=tab, node=node_id, field="id")
                    )
                nodes[node_id] = node
    starters = _starters(nodes, problems)
    _check_links(nodes, starters, problems)
    limits: dict[str, int | float] = {}
    if "nflow_limits" in doc:
        limits, issues = validate_app_limits(doc["nflow_limits"])
        for issue in issues:
            key = f"nflow_limits.{issue.key}" if issue.key else "nflow_limits"
            problems.append(Problem("error", issue.message, field=key))
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Playbook(
        name=name,
        nodes=MappingProxyType(nodes),
        starters=tuple(starters),
        tabs=tuple(tabs),
        digest=digest,
        problems=tuple(problems),
        limits=MappingProxyType(limits),
        document=doc,
    )


def _parse_node(
    tab: str, node_id: str, raw: object, order: int, problems: list[Problem]
) -> Node | None:
    if not isinstance(raw, dict):
        problems.append(Problem("error", "node must be a JSON object", tab=tab, node=node_id))
        return None
    data = raw.get("data")
    if not isinstance(data, dict):
        problems.append(
            Problem(
                "error",
                "node has no data object (expected the module parameters, with a type)",
                tab=tab,
                node=node_id,
                field="data",
            )
        )
        data = {}
    node_type = data.get("type")
    if not isinstance(node_type, str) or not node_type:
        if "data" in raw and isinstance(raw.get("data"), dict):
            problems.append(
                Problem(
                    "error",
                    f"data.type must be a non-empty string, got {node_type!r}",
                    tab=tab,
                    node=node_id,
                    field="type",
                )
            )
        node_type = ""
    elif node_type not in KNOWN_NODE_TYPES and node_type not in _custom_types():
        known = sorted(KNOWN_NODE_TYPES | set(_custom_types()))
        problems.append(
            Problem(
                "error",
                f"unknown node type {node_type!r} (known: {', '.join(known)})",
                tab=tab,
                node=node_id,
                field="type",
            )
        )
    outputs: dict[str, str | None] = {}
    raw_outputs = raw.get("outputs") or {}
    if not isinstance(raw_outputs, dict):
        problems.append(
            Problem("error", "outputs must be an object", tab=tab, node=node_id, field="outputs")
        )
        raw_outputs = {}
    for out_name, out in raw_outputs.items():
        target: str | None = None
        conns = out.get("connections") if isinstance(out, dict) else None
        if isinstance(conns, list) and conns:
            first = conns[0]
            if isinstance(first, dict) and isinstance(first.get("node"), str) and first["node"]:
                target = first["node"]
            else:
                problems.append(
                    Problem(
                        "error",
                        "connection has no target node",
                        tab=tab,
                        node=node_id,
                        field=f"outputs.{out_name}",
                    )
                )
        outputs[out_name] = target
    return Node(
        id=node_id,
        tab=tab,
        type=node_type,
        data=MappingProxyType(dict(data)),
        outputs=MappingProxyType(outputs),
        order=order,
    )


def _starters(nodes: Mapping[str, Node], problems: list[Problem]) -> list[Starter]:
    starters: list[Starter] = []
    for node in sorted(nodes.values(), key=lambda n: n.order):
        if node.type != "starter":
            continue
        first = node.outputs.get("output_1")
        pattern = node.data.get("urlpattern")
        method = node.data.get("method")
        if not first:
            problems.append(
                Problem(
                    "warning",
                    "starter has no connected output_1; it is never served",
                    tab=node.tab,
                    node=node.id,
                    field="outputs.output_1",
                )
            )
            continue
        bad = False
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            problems.append(
                Problem(
                    "error",
                    f"starter needs a urlpattern starting with '/', got {pattern!r}",
                    tab=node.tab,
                    node=node.id,
                    field="urlpattern",
                )
            )
            bad = True
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            problems.append(
                Problem(
                    "error",
                    f"starter needs a method ({', '.join(sorted(HTTP_METHODS))}), got {method!r}",
                    tab=node.tab,
                    node=node.id,
                    field="method",
                )
            )
            bad = True
        if bad:
            continue
        assert isinstance(pattern, str) and isinstance(method, str)
        starters.append(
            Starter(
                node=node,
                method=method.upper(),
                pattern=pattern,
                segments=tuple(pattern.split("/")),
                first=first,
            )
        )
    return starters


def _check_links(
    nodes: Mapping[str, Node], starters: list[Starter], problems: list[Problem]
) -> None:
    for node in nodes.values():
        for out_name, target in node.outputs.items():
            if target and target not in nodes:
                problems.append(
                    Problem(
                        "error",
                        f"connects to node {target!r}, which does not exist",
                        tab=node.tab,
                        node=node.id,
                        field=f"outputs.{out_name}",
                    )
                )
    reachable: set[str] = set()
    for starter in starters:
        stack = [starter.node.id]
        while stack:
            node_id = stack.pop()
            if node_id in reachable or node_id not in nodes:
                continue
            reachable.add(node_id)
            stack.extend(t for t in nodes[node_id].outputs.values() if t)
    for node in nodes.values():
        if node.id not in reachable and node.type != "starter":
            problems.append(
                Problem(
                    "warning",
                    "orphan node: no starter reaches it (it runs only if a request resumes at it)",
                    tab=node.tab,
                    node=node.id,
                )
            )


def _json_position(text: str | bytes, pos: int) -> tuple[int, int]:
    raw = text.encode() if isinstance(text, str) else text
    before = raw[:pos]
    line = before.count(b"\n") + 1
    col = pos - (before.rfind(b"\n") + 1) + 1
    return line, col


def _custom_types() -> Mapping[str, object]:
    return registered_steps()
