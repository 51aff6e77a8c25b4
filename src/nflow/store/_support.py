"""Pure helpers of the store: database URLs, ``$n`` placeholders, and the import/export file
formats of ``compat/playbooks/support/``. Nothing here touches a database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from nflow.errors import StoreError

from ._records import ModuleRecord, TemplateRecord

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "BIND_PREFIX",
    "AppMeta",
    "Document",
    "app_file_name",
    "dump_json",
    "export_app",
    "export_meta",
    "export_modules",
    "export_queries",
    "export_templates",
    "exported_meta_file",
    "meta_file_name",
    "normalise_url",
    "parse_document",
    "read_document",
    "translate_placeholders",
    "upsert",
]


def upsert(conn: AsyncConnection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT of ``conn``'s dialect, which has ON CONFLICT clauses.

    Each dialect module is imported by the first upsert on it: a server on SQLite never
    loads PostgreSQL's (2 MB a worker), and the reverse.
    """
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)


_URL_HINT = "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host:port/db"


def normalise_url(raw: str) -> URL:
    """Parse a database URL and pin the async driver, accepting the plain scheme as well.

    ``sqlite:///x`` and ``postgresql://…`` are what people copy from other tools; the sync
    drivers they would select cannot run under the async engine, so they are swapped here.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        # The message of ArgumentError quotes the whole URL, password included.
        raise StoreError(f"invalid database URL: {_URL_HINT}") from None
    backend = url.get_backend_name()
    driver = url.get_driver_name() if "+" in url.drivername else ""
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return url.set(drivername="postgresql+asyncpg")
    raise StoreError(f"unsupported database URL scheme {url.drivername!r}: {_URL_HINT}")


# --- $n placeholders -------------------------------------------------------------------------

BIND_PREFIX = "nflow_p"

# Tokens that change how the following characters must be read. A "$" or "E" glued to an
# identifier is part of it (PostgreSQL allows "$" inside names), hence the look-behinds.
_TOKENS = re.compile(
    r"""
      (?P<param>(?<![\w$])\$(?P<num>\d+))
    | (?P<dollar>(?<![\w$])\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
    | (?P<estring>(?<![\w$])[eE]')
    | (?P<squote>')
    | (?P<dquote>["`])
    | (?P<line>--)
    | (?P<block>/\*)
    """,
    re.VERBOSE,
)


def _end_of_quoted(sql: str, start: int, quote_char: str, backslash: bool) -> int:
    """Index just past the quoted run opened at ``start`` (doubled quotes stay inside)."""
    i = start + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote_char:
            if i + 1 < n and sql[i + 1] == quote_char:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _end_of_block_comment(sql: str, start: int, nested: bool) -> int:
    depth = 0
    i = start
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth = depth + 1 if nested or depth == 0 else depth
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _escape(chunk: str) -> str:
    # text() treats every ":word" as a bind parameter, even inside string literals; a
    # backslash makes SQLAlchemy emit the colon verbatim. Escaping every colon (including
    # each one of "::") keeps the rule simple and is undone by SQLAlchemy's compiler.
    return chunk.replace(":", "\\:")


def translate_placeholders(sql: str, *, nested_comments: bool = True) -> tuple[str, set[int]]:
    """Rewrite the ``$1…$n`` of a stored query as SQLAlchemy ``:nflow_pN`` bind parameters.

    Only placeholders in SQL code are rewritten: the ones inside string literals, quoted
    identifiers, dollar-quoted bodies and comments are text and stay as they are. Returns the
    ``text()``-ready SQL and the set of parameter numbers used. Values are never inlined.
    """
    out: list[str] = []
    used: set[int] = set()
    pos = 0
    n = len(sql)
    while pos < n:
        m = _TOKENS.search(sql, pos)
        if m is None:
            out.append(_escape(sql[pos:]))
            break
        out.append(_escape(sql[pos : m.start()]))
        kind = m.lastgroup
        if kind == "param":
            number = int(m.group("num"))
            end = m.end()
            if number == 0:
                raise StoreError("$0 is not a valid placeholder: parameters are numbered from $1")
            if end < n and (sql[end].isalnum() or sql[end] == "_"):
                raise StoreError(f"${number} is followed by {sql[end]!r}: separate it with a space")
            if out and out[-1].endswith(":"):
                # "[1:$1]": a bind name right after a colon would not be recognised.
                out.append(" ")
            out.append(f":{BIND_PREFIX}{number}")
            used.add(number)
            pos = end
            continue
        if kind == "dollar":
            tag = m.group("dollar")
            close = sql.find(tag, m.end())
            end = n if close < 0 else close + len(tag)
        elif kind == "estring":
            end = _end_of_quoted(sql, m.end() - 1, "'", backslash=True)
        elif kind in ("squote", "dquote"):
            end = _end_of_quoted(sql, m.start(), m.group(kind), backslash=False)
        elif kind == "line":
            newline = sql.find("\n", m.end())
            end = n if newline < 0 else newline + 1
        else:
            end = _end_of_block_comment(sql, m.start(), nested_comments)
        out.append(_escape(sql[m.start() : end]))
        pos = end
    return "".join(out), used


# --- import / export documents ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppMeta:
    """The non-``json`` columns of one ``nflow`` row; a field is ``None`` when the file
    did not mention it, so importing leaves that column alone."""

    name: str
    default_js: str | None
    tag: str | None
    has_tag: bool  # a null tag is a value to store, so presence needs its own flag


@dataclass(slots=True)
class Document:
    """What one import file holds; empty lists mean "none of that kind"."""

    app_json: str | None = None
    meta: AppMeta | None = None
    modules: list[ModuleRecord] = field(default_factory=list)
    templates: list[TemplateRecord] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)


_LIST_KEYS = ("modules", "templates", "queries")
_EXPECTED = (
    'expected a top-level "drawflow" object (an app), a "modules", "templates" or "queries" '
    'list, or "name" with "default_js"/"tag" (the other columns of an nflow row)'
)


def _text(path: Path, where: str, entry: dict[str, Any], *keys: str, optional: bool = False) -> Any:
    for key in keys:
        if key in entry:
            value = entry[key]
            if value is None and optional:
                return None
            if not isinstance(value, str):
                raise StoreError(f"{path}: {where}: {key!r} must be a string")
            return value
    if optional:
        return None
    raise StoreError(f"{path}: {where}: missing {keys[0]!r}")


def _entries(path: Path, doc: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    items = doc[key]
    if not isinstance(items, list):
        raise StoreError(f"{path}: {key!r} must be a list, not {type(items).__name__}")
    result = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise StoreError(f"{path}: {where} must be an object")
        result.append((where, item))
    return result


def _module(path: Path, where: str, entry: dict[str, Any]) -> ModuleRecord:
    name = _text(path, where, entry, "name")
    if "manifest" in entry:
        manifest = entry["manifest"]
        # A string manifest is kept verbatim: that is how export writes a ``mod`` column
        # that does not hold valid JSON, so such a row survives the round trip.
        mod = manifest if isinstance(manifest, str) else json.dumps(manifest, ensure_ascii=False)
    else:
        mod = _text(path, where, entry, "mod")
    form = _text(path, where, entry, "form_html", "form", optional=True) or ""
    code = _text(path, where, entry, "code", optional=True)
    return ModuleRecord(name=name, form=form, mod=mod, code=code)


def read_document(path: Path) -> Document:
    """Read and recognise one import file; a problem is a StoreError naming the file once."""
    try:
        source = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_document(path, source)


def parse_document(path: Path, source: str) -> Document:
    """Recognise and validate one import file; every problem names the file."""
    try:
        doc = json.loads(source)
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(doc, dict):
        raise StoreError(f"{path}: the top level is a JSON {type(doc).__name__}; {_EXPECTED}")
    if "drawflow" in doc:
        if not isinstance(doc["drawflow"], dict):
            raise StoreError(f'{path}: "drawflow" must be an object')
        return Document(app_json=json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
    result = Document()
    if any(key in doc for key in _LIST_KEYS):
        if "modules" in doc:
            result.modules = [_module(path, w, e) for w, e in _entries(path, doc, "modules")]
        if "templates" in doc:
            result.templates = [
                TemplateRecord(_text(path, w, e, "name"), _text(path, w, e, "content"))
                for w, e in _entries(path, doc, "templates")
            ]
        if "queries" in doc:
            result.queries = [
                (_text(path, w, e, "name"), _text(path, w, e, "query"))
                for w, e in _entries(path, doc, "queries")
            ]
        return result
    if "name" in doc and ("default_js" in doc or "tag" in doc):
        name = _text(path, "row", doc, "name")
        default_js = None
        if "default_js" in doc:
            default_js = _text(path, "row", doc, "default_js", optional=True) or ""
        tag = _text(path, "row", doc, "tag", optional=True)
        result.meta = AppMeta(name=name, default_js=default_js, tag=tag, has_tag="tag" in doc)
        return result
    found = ", ".join(repr(k) for k in doc) or "none"
    raise StoreError(f"{path}: unknown document: {_EXPECTED}; found keys: {found}")


def dump_json(value: object) -> str:
    """The layout of the fixture files: 2-space indent, UTF-8 kept, final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _safe(name: str) -> str:
    # Percent-encoding is reversible and keeps distinct names in distinct files.
    return quote(name, safe="")


def app_file_name(name: str) -> str:
    return f"app_{_safe(name)}.json"


def exported_meta_file(path: Path) -> Path | None:
    """The row-meta file :meth:`Store.export_all` wrote beside the app file ``path``.

    None when ``path`` is not named like an exported app. The meta file holds the app's
    real name, which the file name only percent-encodes.
    """
    name = path.name
    if not (name.startswith("app_") and name.endswith(".json")) or len(name) <= 9:
        return None
    return path.with_name("nflow_row_" + name[4:])


def meta_file_name(name: str) -> str:
    return f"nflow_row_{_safe(name)}.json"


def export_app(json_text: str) -> str:
    try:
        return dump_json(json.loads(json_text))
    except json.JSONDecodeError:
        # Written as stored, so the user can see and repair it; import will name the error.
        return json_text


def export_meta(name: str, default_js: str, tag: str | None) -> str:
    return dump_json(
        {
            "source": "nflow export: table nflow, the columns other than json",
            "name": name,
            "default_js": default_js,
            "tag": tag,
        }
    )


def _manifest(mod: str) -> Any:
    # Only an object is unpacked: import re-serialises objects, but stores a string as is,
    # so anything else must stay the stored text to come back unchanged.
    try:
        value = json.loads(mod)
    except json.JSONDecodeError:
        return mod
    return value if isinstance(value, dict) else mod


def export_modules(rows: list[ModuleRecord]) -> str:
    return dump_json(
        {
            "source": "nflow export: table modules",
            "modules": [
                {
                    "name": r.name,
                    "manifest": _manifest(r.mod),
                    "code": r.code,
                    "form_html": r.form,
                }
                for r in rows
            ],
        }
    )


def export_templates(rows: list[TemplateRecord]) -> str:
    return dump_json(
        {
            "source": "nflow export: table template",
            "templates": [{"name": r.name, "content": r.content} for r in rows],
        }
    )


def export_queries(rows: dict[str, str]) -> str:
    return dump_json(
        {
            "source": "nflow export: table queries",
            "queries": [{"name": k, "query": v} for k, v in rows.items()],
        }
    )
