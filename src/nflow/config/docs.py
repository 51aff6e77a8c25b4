"""The key tables of ``docs/config.md``, generated from the schema so they cannot drift.

The page is written by hand except its tables: each sits between ``<!-- keys: SECTION ... -->``
and ``<!-- /keys -->`` and is rebuilt from the models in ``_schema``. A key's row takes its type
from the annotation and bounds, its default from the field, its text from
``Field(description=...)`` and its status from ``json_schema_extra={"status": ...}``
(``honoured`` unless the field says ``partly`` or ``no effect``); ``doc_type`` and
``doc_default`` in ``json_schema_extra`` replace a derived type or default that would read
badly. A section with no table yet gets one, introduced by its model's docstring, just above
the ``<!-- new sections -->`` line, so a new section only needs descriptions to be documented.

    python -m nflow.config.docs            # rewrite docs/config.md
    python -m nflow.config.docs --check    # exit 1 when docs/config.md is out of date
"""

from __future__ import annotations

__all__ = ["DocsError", "KeyRow", "key_rows", "main", "render"]

import argparse
import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nflow.config._load import _SECRET_KEYS
from nflow.config._schema import Config, _comma_list, _mail_port, _port_string
from nflow.config._secrets import _DSN_KEYS

STATUSES = ("honoured", "partly", "no effect")
NEW_SECTIONS = "<!-- new sections -->"
REGENERATE = "python -m nflow.config.docs"
_BLOCK = re.compile(r"(<!-- keys: ([a-z0-9_ ]+) -->\n)(.*?)(<!-- /keys -->)", re.DOTALL)
_HEADER = "| Key | Type | Default | What it does | Status |\n|---|---|---|---|---|\n"
_MIB = 1024 * 1024


class DocsError(Exception):
    """The schema cannot be documented as it is (a field without a description ...)."""


@dataclasses.dataclass(frozen=True)
class KeyRow:
    key: str
    type: str
    default: str
    description: str
    status: str

    def markdown(self) -> str:
        cells = (f"`{self.key}`", self.type, self.default, self.description, self.status)
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"


def _extra(field: FieldInfo) -> dict[str, object]:
    extra = field.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bounds(field: FieldInfo) -> str:
    found: dict[str, object] = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    low = found.get("ge", found.get("gt"))
    high = found.get("le", found.get("lt"))
    if "ge" in found and "le" in found:
        return f" {_number(low)}–{_number(high)}"
    parts = []
    if low is not None:
        parts.append(f"{'≥' if 'ge' in found else '>'} {_number(low)}")
    if high is not None:
        parts.append(f"{'≤' if 'le' in found else '<'} {_number(high)}")
    return " " + ", ".join(parts) if parts else ""


def _validators(field: FieldInfo) -> set[object]:
    return {getattr(item, "func", None) for item in field.metadata}


def _value_type(annotation: object) -> str:
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "integer"
    if annotation is float or annotation == (int | float):
        return "number"
    if annotation is str:
        return "string"
    return str(annotation)


def _type_of(key: str, field: FieldInfo) -> str:
    extra = _extra(field)
    if "doc_type" in extra:
        return str(extra["doc_type"])
    annotation = field.annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    validators = _validators(field)
    if origin is typing.Literal:
        text = " | ".join(f'`"{value}"`' for value in args)
    elif annotation in (int, float):
        text = _value_type(annotation) + _bounds(field)
    elif annotation is str:
        lengths = {
            name: getattr(item, name)
            for item in field.metadata
            for name in ("min_length", "max_length")
            if getattr(item, name, None) is not None
        }
        pattern = next((p for i in field.metadata if (p := getattr(i, "pattern", None))), None)
        if lengths.get("min_length") == lengths.get("max_length") == 1:
            text = "one character"
        elif pattern and pattern.startswith("^https?://"):
            text = "`http(s)://…` URL"
        elif lengths.get("min_length"):
            text = "non-empty string"
        else:
            text = "string"
    elif origin in (tuple, list):
        items = {"string": "strings", "integer": "integers", "number": "numbers"}
        item = items.get(_value_type(args[0]), _value_type(args[0])) if args else "values"
        text = f"*list* of {item}" if _comma_list in validators else f"array of {item}"
    elif origin is dict:
        text = f"table of name → {_value_type(args[1])}"
    else:
        text = _value_type(annotation)
    if validators & {_port_string, _mail_port}:
        text += " (a quoted number is accepted)"
    if key in _SECRET_KEYS:
        text += " (secret)"
    if key in _DSN_KEYS:
        text += " (password redacted)"
    return text


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return _number(value)


def _default_of(name: str, field: FieldInfo) -> str:
    extra = _extra(field)
    if "doc_default" in extra:
        return str(extra["doc_default"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    text = f"`{_toml(value)}`"
    if name.endswith("_bytes") and isinstance(value, int) and value >= _MIB and value % _MIB == 0:
        text += f" ({value // _MIB} MiB)"
    return text


def _row(key: str, name: str, field: FieldInfo) -> KeyRow:
    if not field.description:
        raise DocsError(
            f"{key} has no description: give it Field(description=...) in "
            "src/nflow/config/_schema.py"
        )
    status = str(_extra(field).get("status", "honoured"))
    if status not in STATUSES:
        raise DocsError(f"{key}: status {status!r} is not one of {', '.join(STATUSES)}")
    description = " ".join(field.description.split())
    return KeyRow(key, _type_of(key, field), _default_of(name, field), description, status)


def _model_rows(prefix: str, model: type[BaseModel]) -> list[KeyRow]:
    return [
        _row(prefix + (field.alias or name), name, field)
        for name, field in model.model_fields.items()
    ]


def _section_model(root: type[BaseModel], section: str) -> type[BaseModel] | None:
    """The model of ``section``'s keys (for a table of named entries, of one entry)."""
    annotation = root.model_fields[section].annotation
    if typing.get_origin(annotation) is dict:
        annotation = typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def key_rows(section: str, root: type[BaseModel] = Config) -> list[KeyRow]:
    """The rows of one top-level section of ``config.toml`` (``root``: the whole schema)."""
    if section not in root.model_fields:
        raise DocsError(f"docs/config.md has a table for [{section}], which the schema lacks")
    field = root.model_fields[section]
    model = _section_model(root, section)
    if model is None:  # a free-form table such as [env]
        row = _row(f"{section}.<name>", section, field)
        value_type = _value_type(typing.get_args(field.annotation)[1])
        return [dataclasses.replace(row, type=value_type, default="none")]
    if typing.get_origin(field.annotation) is dict:
        return _model_rows(f"{section}.<name>.", model)
    return _model_rows(f"{section}.", model)


def _table(root: type[BaseModel], sections: Sequence[str]) -> str:
    return _HEADER + "".join(row.markdown() for s in sections for row in key_rows(s, root))


def _new_section(root: type[BaseModel], section: str) -> str:
    model = _section_model(root, section)
    intro = inspect.cleandoc(model.__doc__) if model is not None and model.__doc__ else ""
    parts = [f"### `[{section}]`\n\n"]
    if intro:
        parts.append(intro + "\n\n")
    parts.append(f"<!-- keys: {section} -->\n{_table(root, [section])}<!-- /keys -->\n\n")
    return "".join(parts)


def render(text: str, root: type[BaseModel] = Config) -> str:
    """``text`` (the page) with every key table rebuilt and missing sections added."""
    documented: set[str] = set()

    def table(match: re.Match[str]) -> str:
        sections = match.group(2).split()
        documented.update(sections)
        return match.group(1) + _table(root, sections) + match.group(4)

    text = _BLOCK.sub(table, text)
    missing = [s for s in root.model_fields if s not in documented]
    if missing:
        if NEW_SECTIONS not in text:
            raise DocsError(f"docs/config.md lacks the {NEW_SECTIONS!r} line")
        added = "".join(_new_section(root, s) for s in missing)
        text = text.replace(NEW_SECTIONS, added + NEW_SECTIONS, 1)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Rebuild the key tables of docs/config.md from the schema."
    )
    parser.add_argument("path", nargs="?", default="docs/config.md", help="the page to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    page = Path(args.path)
    current = page.read_text(encoding="utf-8")
    try:
        wanted = render(current)
    except DocsError as exc:
        print(f"{page}: {exc}", file=sys.stderr)
        return 2
    if wanted == current:
        return 0
    if args.check:
        print(f"{page} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1
    page.write_text(wanted, encoding="utf-8")
    print(f"{page} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
