"""App versions as content: the hash of an app document and of the sources it uses.

A version id is the SHA-256 of one canonical JSON value (keys sorted, orjson)::

    {"playbook": <the app document>, "modules": {name: code},
     "templates": {name: text}, "queries": {name: sql}}

holding only the modules, templates and queries the app uses, so a change to a module that
another app uses does not make a new version of this one, and identical content is always the
same version, whoever saved it and wherever it came from.
"""

from __future__ import annotations

__all__ = ["VERSION_SOURCES", "used_sources", "version_content"]

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from nflow.playbook import Playbook

#: Where a version came from, as stored with it.
VERSION_SOURCES = ("import", "reload", "designer", "cli", "file", "example")

_QUOTES = ('"', "'", "`")


def version_content(
    playbook_doc: Mapping[str, Any],
    modules: Mapping[str, str],
    templates: Mapping[str, str],
    queries: Mapping[str, str],
) -> tuple[str, bytes]:
    """``(version id, canonical content)`` of an app document and the sources it uses."""
    content = orjson.dumps(
        {
            "playbook": dict(playbook_doc),
            "modules": dict(modules),
            "templates": dict(templates),
            "queries": dict(queries),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(content).hexdigest(), content


def used_sources(
    playbook: Playbook,
    modules: Mapping[str, str | None],
    templates: Mapping[str, str],
    queries: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The modules, templates and queries ``playbook`` uses, out of the ones given.

    Modules are the ``script`` of js nodes without inline code (the engine's rule). Templates
    and queries are used when their name appears as a quoted string in the app's scripts or
    node data: a name built at run time is not seen, and such a run reads the stored one.
    """
    used_modules: dict[str, str] = {}
    texts: list[str] = []
    for node in playbook.nodes.values():
        data = node.data
        code = data.get("code")
        if isinstance(code, str) and code.strip():
            texts.append(code)
            continue
        script = data.get("script")
        if node.type == "js" and isinstance(script, str) and script in modules:
            source = modules[script] or ""
            used_modules[script] = source
            texts.append(source)
    if not templates and not queries:
        return used_modules, {}, {}
    texts.append(orjson.dumps(dict(playbook.document)).decode())
    blob = "\n".join(texts)

    def named(name: str) -> bool:
        return any(f"{q}{name}{q}" in blob for q in _QUOTES)

    used_templates = {k: v for k, v in templates.items() if named(k)}
    used_queries = {k: v for k, v in queries.items() if named(k)}
    return used_modules, used_templates, used_queries
