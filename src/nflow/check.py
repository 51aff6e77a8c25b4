"""``nflow check``: every problem of an app, found without running it."""

from __future__ import annotations

__all__ = [
    "check_playbook",
    "custom_step_problems",
    "durable_problems",
    "module_problems",
    "wasm_problems",
]

from collections.abc import Mapping

from nflow.config import SecurityConfig
from nflow.errors import Problem
from nflow.playbook import Node, Playbook


def module_problems(playbook: Playbook, modules: Mapping[str, str | None]) -> list[Problem]:
    """``script`` names that are not in ``modules``: errors where a starter reaches the node.

    One rule for ``nflow check``, ``nflow import`` and what ``nflow serve`` reports, so
    the three agree with the 500 such a node answers at run time. Orphan nodes never run
    on their own: a missing module there is a warning like the orphan itself.
    """
    reachable: set[str] = set()
    for starter in playbook.starters:
        reachable |= playbook.reachable(starter.node.id)
    problems = []
    for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
        if node.type == "wasm":
            problems.extend(_wasm_module_missing(node, modules, node.id in reachable))
            continue
        if node.type != "js":
            continue
        code = node.data.get("code")
        script = node.data.get("script")
        if isinstance(code, str) and code.strip():
            continue  # the node's own code wins over its module
        if isinstance(script, str) and script and script not in modules:
            problems.append(
                Problem(
                    "error" if node.id in reachable else "warning",
                    f"module {script!r} is not in the modules table",
                    tab=node.tab,
                    node=node.id,
                    field="script",
                )
            )
    return problems


def check_playbook(
    playbook: Playbook,
    *,
    modules: Mapping[str, str | None],
    security: SecurityConfig | None = None,
) -> list[Problem]:
    """Structural problems of the document plus missing modules and JS syntax errors.

    Only nodes a starter can reach are held to the module rule: orphan nodes never run on
    their own, so a missing module there is a warning like the orphan itself.
    """
    from nflow.sandbox import JsError, new_runtime

    problems = list(playbook.problems) + module_problems(playbook, modules)
    reachable: set[str] = set()
    for starter in playbook.starters:
        reachable |= playbook.reachable(starter.node.id)
    runtime = new_runtime()
    checked: dict[str, JsError | None] = {}
    try:
        for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
            if node.type != "js":
                continue
            severity = "error" if node.id in reachable else "warning"
            code = node.data.get("code")
            script = node.data.get("script")
            field = "code"
            source: str | None = None
            if isinstance(code, str) and code.strip():
                source = code
            elif isinstance(script, str) and script:
                field = "script"
                if script not in modules:
                    continue  # reported by module_problems
                source = modules[script]
            elif script is not None and not isinstance(script, str):
                problems.append(
                    Problem(
                        "error",
                        "script must be a string",
                        tab=node.tab,
                        node=node.id,
                        field="script",
                    )
                )
            if not source:
                continue
            if source not in checked:
                try:
                    runtime.check_syntax(source)
                    checked[source] = None
                except JsError as exc:
                    checked[source] = exc
            error = checked[source]
            if error is not None:
                label = f"module {script!r}: " if field == "script" else ""
                problems.append(
                    Problem(
                        severity,
                        f"{label}{error.name}: {error.message}",
                        tab=node.tab,
                        node=node.id,
                        field=field,
                        line=error.line,
                    )
                )
    finally:
        runtime.close()
    problems.extend(security_problems(playbook, modules=modules, security=security))
    problems.extend(custom_step_problems(playbook))
    problems.extend(wasm_problems(playbook, modules))
    problems.extend(durable_problems(playbook))
    return problems


# Node data read by durable runs: the smallest value each may take.
_DURABLE_NUMBERS = {"max_attempts": 1, "retry_backoff_ms": 0}


def durable_problems(playbook: Playbook) -> list[Problem]:
    """Durable-run settings in node data that are not what they must be: ``async`` on a
    starter (true or false), ``max_attempts`` and ``retry_backoff_ms`` (whole numbers)."""
    problems: list[Problem] = []
    for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
        data = node.data
        if node.type == "starter" and data.get("async", False) not in (
            True,
            False,
            "true",
            "false",
        ):
            problems.append(
                Problem(
                    "error",
                    f"async must be true or false, got {data['async']!r}",
                    tab=node.tab,
                    node=node.id,
                    field="async",
                )
            )
        for name, low in _DURABLE_NUMBERS.items():
            if name not in data:
                continue
            value = data[name]
            whole = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(value, str) and value.strip().isdigit():
                whole, value = True, int(value)
            if not whole or value < low:
                problems.append(
                    Problem(
                        "error",
                        f"{name} must be a whole number of at least {low}, got {data[name]!r}",
                        tab=node.tab,
                        node=node.id,
                        field=name,
                    )
                )
    return problems


def _wasm_module_missing(
    node: Node, modules: Mapping[str, str | None], reachable: bool
) -> list[Problem]:
    """A wasm node's ``module`` that is not in the modules table (module_problems' rule)."""
    from nflow.wasm import WasmModuleError, WasmModuleMissing, node_source

    try:
        node_source(node.data, modules)
    except WasmModuleMissing:
        return [
            Problem(
                "error" if reachable else "warning",
                f"module {node.data.get('module')!r} is not in the modules table",
                tab=node.tab,
                node=node.id,
                field="module",
            )
        ]
    except WasmModuleError:
        pass  # the node's other problems are check_playbook's (wasm_problems)
    return []


def wasm_problems(playbook: Playbook, modules: Mapping[str, str | None]) -> list[Problem]:
    """wasm nodes whose module is absent, does not decode or compile, or is no WASI command.

    Each module is compiled as a run would compile it (and stays in the process's cache).
    A module missing from the modules table is left to :func:`module_problems`.
    """
    from nflow.wasm import (
        WasmModuleError,
        WasmModuleMissing,
        WasmUnavailable,
        compile_module,
        module_bytes,
    )
    from nflow.wasm import node_source as wasm_source

    reachable: set[str] = set()
    for starter in playbook.starters:
        reachable |= playbook.reachable(starter.node.id)
    problems: list[Problem] = []
    for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
        if node.type != "wasm":
            continue
        severity = "error" if node.id in reachable else "warning"
        try:
            field, text = wasm_source(node.data, modules)
            compile_module(module_bytes(field, text), field=field)
        except WasmModuleMissing:
            continue  # reported by module_problems
        except WasmModuleError as exc:
            problems.append(
                Problem(severity, exc.message, tab=node.tab, node=node.id, field=exc.field)
            )
        except WasmUnavailable as exc:
            problems.append(Problem(severity, exc.message, tab=node.tab, node=node.id))
    return problems


def custom_step_problems(playbook: Playbook) -> list[Problem]:
    """Node data of custom Python steps that can never validate into the step's input model.

    Node data wins over the payload at run time, so a wrongly typed field there fails every
    run. Missing fields are not reported: the payload may bring them.
    """
    from pydantic import ValidationError

    from nflow.steps import registered_steps

    steps = registered_steps()
    problems: list[Problem] = []
    for node in sorted(playbook.nodes.values(), key=lambda n: n.order):
        definition = steps.get(node.type)
        if definition is None or definition.input is None:
            continue
        params = {k: v for k, v in node.data.items() if k not in ("type", "name_box") and v != ""}
        try:
            definition.input.model_validate(params)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                if error["type"] == "missing" or not loc or loc[0] not in params:
                    continue
                problems.append(
                    Problem(
                        "error",
                        f"step {node.type!r}: {error['msg']}, got {error.get('input')!r}",
                        tab=node.tab,
                        node=node.id,
                        field=".".join(str(p) for p in loc),
                    )
                )
    return problems


def security_problems(
    playbook: Playbook,
    *,
    modules: Mapping[str, str | None],
    security: SecurityConfig | None = None,
) -> list[Problem]:
    """Static analysis findings (``[security]``): errors when they would block the app."""
    from nflow.security._findings import AnalyzerRules, known_findings, playbook_sources

    rules = AnalyzerRules.from_config(security or SecurityConfig())
    if not rules.enabled:
        return []
    sources = list(playbook_sources(playbook, modules))
    # A worker of `nflow serve` has the verdicts of the start-up check: no parser needed.
    found = known_findings(sources, rules)
    if found is None:
        from nflow.security import check_app

        found = check_app(sources, rules)
    return [
        nf.to_problem(block=rules.block_on_high, tab=playbook.nodes[nf.node].tab) for nf in found
    ]
