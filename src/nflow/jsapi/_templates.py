"""Template functions: Go html/template pages, mustache, stored templates."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable

templates = HostTable()
log = logging.getLogger("nflow.templates")

_SAFE_NAME = re.compile(r"^[\w][\w .-]{0,199}$")


def _template_dir() -> Path:
    return Path(os.environ.get("NFLOW_TEMPLATE_PATH", "templates"))


@templates.function("get_template")
def get_template(ctx: RunContext, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise HostError("get_template(name) expects a template name")
    stored = ctx.templates
    if name in stored:
        return stored[name]
    # As the Go runtime: files in $NFLOW_TEMPLATE_PATH (default ./templates) come next. Only
    # plain names are looked up, so a script cannot walk out of that folder.
    if _SAFE_NAME.match(name) and ".." not in name:
        folder = _template_dir()
        for candidate in (f"{name}.html", f"{name}.tmpl", name):
            path = folder / candidate
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                stored[name] = text
                return text
    raise HostError(f"template {name!r} not found (import it with `nflow import templates.json`)")


def _name_of(ctx: RunContext, text: str) -> str:
    for name, content in ctx.templates.items():
        if content is text or content == text:
            return str(name)
    return "template"


@templates.function("template")
def template(ctx: RunContext, text: object, data: object = None) -> str:
    from nflow.golang.template import TemplateError, render

    if not isinstance(text, str):
        raise HostError("template(text, data) expects the template text as a string")
    values: Any = data if data is not None else {}
    try:
        return render(text, values, name=_name_of(ctx, text))
    except TemplateError as exc:
        raise HostError(str(exc)) from None


@templates.function("mustache")
def mustache(ctx: RunContext, text: object, data: object = None) -> str:
    if not isinstance(text, str):
        raise HostError("mustache(text, data) expects the template text as a string")
    from nflow.jsapi._mustache import MustacheError, render_mustache

    try:
        return render_mustache(text, data if isinstance(data, dict) else {})
    except MustacheError as exc:
        log.warning("mustache template failed: %s", exc, extra={"wid": ctx.wid})
        return ""  # the Go runtime returned "" on error
