"""The designer's palette and sources: modules, templates and pinned queries, as stored.

A module's ``form`` is the original designer's panel HTML: it is sent as a string for
completeness and must never be rendered as markup (it carries scripts and inline handlers).
"""

from __future__ import annotations

__all__ = [
    "ModuleInfo",
    "QueryInfo",
    "TemplateInfo",
    "module_list",
    "query_list",
    "template_get",
    "template_list",
]

from typing import Any

import msgspec
import orjson

from nflow._http import Response

from ._core import ApiCall, ApiError, ok


class ModuleInfo(msgspec.Struct):
    """A module: its manifest (``mod``, parsed; null when not JSON), the node ``type`` it
    makes, its panel HTML (``form``, never to be rendered) and its code."""

    name: str
    type: str
    manifest: dict[str, Any] | None
    form: str
    code: str | None


class TemplateName(msgspec.Struct):
    name: str


class TemplateInfo(msgspec.Struct):
    name: str
    content: str


class QueryInfo(msgspec.Struct):
    name: str
    sql: str


def _manifest(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def module_list(call: ApiCall) -> Response:
    runtime = call.runtime
    rows = await runtime.store_call(runtime.store.list_modules())
    out = []
    for row in rows:
        manifest = _manifest(row.mod)
        kind = manifest.get("type") if manifest else None
        out.append(
            ModuleInfo(
                name=row.name,
                type=kind if isinstance(kind, str) and kind else "js",
                manifest=manifest,
                form=row.form,
                code=row.code,
            )
        )
    return ok(out)


async def template_list(call: ApiCall) -> Response:
    runtime = call.runtime
    rows = await runtime.store_call(runtime.store.list_templates())
    return ok([TemplateName(t.name) for t in rows])


async def template_get(call: ApiCall) -> Response:
    runtime = call.runtime
    name = call.params["name"]
    found = await runtime.store_call(runtime.store.get_template(name))
    if found is None:
        raise ApiError(404, f"no template {name!r}")
    return ok(TemplateInfo(found.name, found.content))


async def query_list(call: ApiCall) -> Response:
    runtime = call.runtime
    rows = await runtime.store_call(runtime.store.list_queries())
    return ok([QueryInfo(name, sql) for name, sql in rows.items()])
