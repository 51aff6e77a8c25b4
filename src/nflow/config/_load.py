"""Loading: ``config.toml``, then ``NFLOW_<SECTION>__<KEY>`` environment variables, validated.

Every problem found is reported at once, each naming its key and where the value came from
(the file and line, or the environment variable).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic_core import ErrorDetails

from nflow.config._schema import Config, ExtraDatabaseConfig, _Section, _show
from nflow.errors import ConfigError

_ENV_PREFIX = "NFLOW_"

# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, slots=True)
class _Finding:
    origin: str  # the file, or the environment variable that supplied the value
    key: str
    text: str  # already worded; the origin is added when the message is assembled


def _section_models() -> dict[str, type[_Section] | None]:
    sections: dict[str, type[_Section] | None] = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        sections[name] = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, _Section)
            else None
        )
    return sections


_SECTIONS = _section_models()

# Names from the Go runtime's README and MANUAL, which documented keys the code never read.
_RENAMED = {
    "mail.smtp_host": "smtp",
    "mail.smtp_port": "port",
    "mail.smtp_password": "password",
    "mail.smtp_from": "from",
    "mail.use_tls": "tls",
    "security.cache_ttl": "cache_ttl_minutes",
}


@cache
def _keys_of(model: type[_Section]) -> dict[str, str]:
    """TOML key → field name (they differ only where the key is a Python keyword)."""
    return {(field.alias or name): name for name, field in model.model_fields.items()}


def _kind(model: type[_Section], field_name: str) -> str:
    annotation: Any = model.model_fields[field_name].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    if annotation in (bool, int, float):
        return str(annotation.__name__)
    if origin is tuple:
        return "list"
    if origin is dict:
        return "table"
    return "str"


def _unknown(
    origin: str, key: str, candidates: Iterable[str], *, section: bool = False
) -> _Finding:
    lowered = key.lower()
    text = f"unknown {'section' if section else 'key'} {key}"
    if lowered.startswith("database_nflow.query"):
        # The Go struct had Query* fields, but they were always overwritten from the database.
        return _Finding(
            origin, key, text + " (named queries are read from the queries table, not the file)"
        )
    hint = _RENAMED.get(lowered)
    if hint is None:
        leaf = lowered.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, list(candidates), n=1, cutoff=0.6)
        hint = close[0] if close else None
    if hint:
        text += f" (did you mean {hint}?)"
    return _Finding(origin, key, text)


def _normalise(raw: Mapping[str, Any], origin: str, findings: list[_Finding]) -> dict[str, Any]:
    """Lower-case the known keys, as BurntSushi toml matched them case-insensitively."""
    data: dict[str, Any] = {}
    for given, value in raw.items():
        name = given.lower()
        if name not in _SECTIONS:
            findings.append(_unknown(origin, given, _SECTIONS, section=True))
            continue
        if name in data:
            findings.append(_Finding(origin, name, f"{name}: given twice (in different case)"))
            continue
        if not isinstance(value, dict):
            findings.append(_Finding(origin, name, f"{name}: expected a table, got {_show(value)}"))
            continue
        model = _SECTIONS[name]
        if model is None:  # [env]: free-form names, kept exactly as written
            data[name] = dict(value)
            continue
        keys = _keys_of(model)
        section: dict[str, Any] = {}
        for key_given, item in value.items():
            key = key_given.lower()
            if key not in keys:
                findings.append(_unknown(origin, f"{name}.{key_given}", keys))
            elif key in section:
                findings.append(
                    _Finding(
                        origin, f"{name}.{key}", f"{name}.{key}: given twice (in different case)"
                    )
                )
            else:
                section[key] = item
        data[name] = section
    return data


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _convert(kind: str, text: str) -> object:
    """Parse an environment string to the field's type; ValueError carries the wording."""
    if kind == "bool":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {_show(text)}")
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {_show(text)}") from None
    if kind == "float":
        try:
            number = float(text.strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"expected a number, got {_show(text)}")
        return number
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _apply_environ(
    data: dict[str, Any],
    environ: Mapping[str, str],
    findings: list[_Finding],
    sources: dict[str, str],
) -> None:
    for variable in sorted(environ):
        if not variable.startswith(_ENV_PREFIX) or "__" not in variable:
            continue  # NFLOW_TEMPLATE_PATH and friends are not config overrides
        text = environ[variable]
        parts = variable[len(_ENV_PREFIX) :].lower().split("__")
        if not all(parts):
            findings.append(
                _Finding(variable, "", "expected NFLOW_<SECTION>__<KEY>, e.g. NFLOW_SERVER__PORT")
            )
            continue
        section_name = parts[0]
        if section_name not in _SECTIONS:
            findings.append(_unknown(variable, section_name, _SECTIONS, section=True))
            continue
        section = data.setdefault(section_name, {})
        model = _SECTIONS[section_name]
        if section_name == "databases":
            _database_override(variable, parts[1:], text, section, findings, sources)
            continue
        if model is None:
            if section_name == "apps":
                findings.append(
                    _Finding(
                        variable,
                        section_name,
                        'per-app settings are read from config.toml ([apps."<name>".limits]) only',
                    )
                )
                continue
            if len(parts) != 2:
                findings.append(_Finding(variable, section_name, "expected NFLOW_ENV__<NAME>"))
                continue
            section[parts[1]] = text
            sources[f"{section_name}.{parts[1]}"] = variable
            continue
        keys = _keys_of(model)
        key = parts[1]
        dotted = f"{section_name}.{key}"
        if key not in keys:
            findings.append(_unknown(variable, dotted, keys))
            continue
        kind = _kind(model, keys[key])
        if kind == "table":
            if len(parts) != 3:
                findings.append(
                    _Finding(
                        variable,
                        dotted,
                        f"expected {variable.split('__')[0]}__{key.upper()}__<NAME>",
                    )
                )
                continue
            table = section.get(key)
            section[key] = {**(table if isinstance(table, dict) else {}), parts[2]: text}
            sources[f"{dotted}.{parts[2]}"] = variable
            continue
        if len(parts) != 2:
            findings.append(_Finding(variable, dotted, f"{dotted} is not a table"))
            continue
        try:
            section[key] = _convert(kind, text)
        except ValueError as exc:
            findings.append(_Finding(variable, dotted, str(exc)))
            continue
        sources[dotted] = variable


def _database_override(
    variable: str,
    parts: list[str],
    text: str,
    section: dict[str, Any],
    findings: list[_Finding],
    sources: dict[str, str],
) -> None:
    """``NFLOW_DATABASES__<NAME>__<KEY>`` and ``NFLOW_DATABASES__<NAME>__QUERIES__<QUERY>``."""
    keys = _keys_of(ExtraDatabaseConfig)
    if len(parts) < 2 or parts[1] not in keys or (parts[1] == "queries") != (len(parts) == 3):
        findings.append(
            _Finding(
                variable,
                "databases",
                "expected NFLOW_DATABASES__<NAME>__<KEY> (url, max_rows, timeout_seconds, "
                "read_only) or NFLOW_DATABASES__<NAME>__QUERIES__<QUERY>",
            )
        )
        return
    name, key = parts[0], parts[1]
    entry = section.get(name)
    entry = dict(entry) if isinstance(entry, dict) else {}
    dotted = f"databases.{name}.{key}"
    if key == "queries":
        table = entry.get("queries")
        entry["queries"] = {**(table if isinstance(table, dict) else {}), parts[2]: text}
        sources[f"{dotted}.{parts[2]}"] = variable
    else:
        try:
            entry[key] = _convert(_kind(ExtraDatabaseConfig, keys[key]), text)
        except ValueError as exc:
            findings.append(_Finding(variable, dotted, str(exc)))
            return
        sources[dotted] = variable
    section[name] = entry


_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "tuple_type": "a list of strings",
    "list_type": "a list of strings",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}

_SECRET_KEYS = frozenset(
    {
        "redis.password",
        "twilio.auth_token",
        "mail.password",
        "debug.auth_token",
        "api.token",
        "security.encryption_key",
        "session.secret",
        "llm.openai_api_key",
        "llm.gemini_api_key",
    }
)


def _describe(error: ErrorDetails, key: str) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    shown = f"a value of type {type(given).__name__}" if key in _SECRET_KEYS else _show(given)
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown}"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace("'", '"')
        return f"expected one of {choices}, got {shown}"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # pydantic turns the 0 of a float field into 0.0
        return f"must be {words} {bound}, got {shown}"
    if kind in ("string_too_short", "string_too_long"):
        return f"{error['msg'].removeprefix('String ').lower()}, got {shown}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    return f"{error['msg'].removeprefix('Value error, ')}, got {shown}"


def _loc_key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _origin_of(key: str, sources: Mapping[str, str], default: str) -> str:
    probe = key
    while probe:
        if probe in sources:
            return sources[probe]
        probe = probe.rpartition(".")[0]
    return default


def _from_validation(
    exc: ValidationError, sources: Mapping[str, str], default_origin: str
) -> list[_Finding]:
    findings: list[_Finding] = []
    for error in exc.errors():
        loc_key = _loc_key(tuple(error["loc"]))
        ctx = error.get("ctx") or {}
        if error["type"] == "nflow_config":
            reported = [(str(ctx["key"]), str(ctx["detail"]))]
            reported += [(str(k), str(d)) for k, d in ctx.get("more", ())]
            # A key without a dot is relative to the section that raised it (HttpsConfig).
            reported = [(k if "." in k else f"{loc_key}.{k}", d) for k, d in reported]
        else:
            reported = [(loc_key, _describe(error, loc_key))]
        for key, detail in reported:
            origin = _origin_of(key, sources, default_origin)
            # A variable's name (or a labelled override) already says which key it sets.
            text = f"{key}: {detail}" if origin == default_origin else detail
            findings.append(_Finding(origin, key, text))
    return findings


def _raise(findings: list[_Finding]) -> typing.NoReturn:
    lines = [f"{f.origin}: {f.text}" for f in findings]
    if len(lines) == 1:
        message = lines[0]
    else:
        message = f"{len(lines)} configuration problems:\n" + "\n".join(
            f"  {line}" for line in lines
        )
    error = ConfigError(message)
    error.key = findings[0].key
    raise error


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    name = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        where = _TOML_POSITION.search(reason)
        if where is None:
            raise ConfigError(f"{name}: invalid TOML: {reason}") from None
        line, column = where.groups()
        raise ConfigError(
            f"{name}: line {line}, column {column}: invalid TOML: {reason[: where.start()]}"
        ) from None


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (or start from defaults), apply ``NFLOW_<SECTION>__<KEY>`` overrides.

    Overrides come from ``environ`` (default: ``os.environ``) and win over the file, so a
    container can change one value without shipping a new file. Every problem found is
    reported in a single :class:`~nflow.errors.ConfigError`.
    """
    origin = os.fspath(path) if path is not None else "configuration"
    findings: list[_Finding] = []
    raw = _read_toml(path) if path is not None else {}
    data = _normalise(raw, origin, findings)
    sources: dict[str, str] = {}
    _apply_environ(data, os.environ if environ is None else environ, findings, sources)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        findings += _from_validation(exc, sources, origin)
        _raise(findings)
    if findings:
        _raise(findings)
    return config


DEFAULT_CONFIG_FILE = "config.toml"


def find_config(path: str | None) -> tuple[Config, str | None]:
    """The configuration the CLI uses: ``path``, else ``./config.toml`` if there is one.

    Returns the config and the file it came from (``None``: defaults and environment only).
    The Go runtime read ``config.toml`` from the working directory; so does every command.
    """
    if path is None and os.path.isfile(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    return load_config(path), path


def with_overrides(
    config: Config, values: Mapping[str, object], *, origin: str = "command line"
) -> Config:
    """A copy of ``config`` with dotted keys replaced (``{"server.port": 9000}``), validated.

    For command-line flags such as ``nflow serve --port``, which win over file and environment;
    problems are reported like those of :func:`load_config`, naming ``origin``. ``None``
    values are skipped, so flags the user did not give can be passed straight through.
    """
    findings: list[_Finding] = []
    sources: dict[str, str] = {}
    data: dict[str, Any] = config.model_dump(by_alias=True)
    for dotted, value in values.items():
        if value is None:
            continue
        section_name, _, key = dotted.lower().partition(".")
        model = _SECTIONS.get(section_name)
        if section_name not in _SECTIONS:
            findings.append(_unknown(origin, section_name, _SECTIONS, section=True))
        elif model is None:
            data[section_name][key] = value
        elif key not in _keys_of(model):
            findings.append(_unknown(origin, dotted, _keys_of(model)))
        else:
            data[section_name][key] = value
        sources[dotted.lower()] = f"{origin} ({dotted.lower()})"
    try:
        updated = Config.model_validate(data)
    except ValidationError as exc:
        findings += _from_validation(exc, sources, origin)
        _raise(findings)
    if findings:
        _raise(findings)
    return updated
