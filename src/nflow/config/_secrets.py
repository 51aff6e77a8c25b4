"""Secrets and redaction: ``"secret:NAME"`` references, and the config as it may be shown.

A printed or logged config never carries a password or a secret's value: connection strings
keep everything but the password, secret keys show what the file says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from nflow.config._load import _SECRET_KEYS, _Finding, _from_validation, _raise
from nflow.config._schema import SECRET_REF, Config

# Connection strings: only the password inside is hidden, so the rest stays useful to read.
_DSN_KEYS = ("database_nflow.dsn", "pg_session.url", "database.url", "mongo.url", "redis.host")
_URL_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s]*)")
_URL_PASSWORD_PARAM = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#\s]*")
_LIBPQ_PASSWORD = re.compile(
    r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)"
)
_SECRET_NAME = re.compile(
    r"(?i)pass|pwd|secret|token|key|credential|auth|private|signature|salt|cookie"
)


def _hide_userinfo(match: re.Match[str]) -> str:
    scheme, authority = match.groups()
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return match.group(0)
    return f"{scheme}{userinfo.split(':', 1)[0]}:***@{hostport}"


def _hide_passwords(text: str) -> str:
    """Passwords inside URLs, anywhere in the config (url_base, [env] values ...)."""
    text = _URL_AUTHORITY.sub(_hide_userinfo, text)
    return _URL_PASSWORD_PARAM.sub(r"\1***", text)


def _hide_dsn_password(text: str) -> str:
    if "://" in text:
        return _hide_passwords(text)
    if "=" in text:  # libpq key=value pairs
        return _LIBPQ_PASSWORD.sub(r"\1***", text)
    # Go driver DSNs such as user:password@tcp(host:3306)/db
    userinfo, at, rest = text.rpartition("@")
    if at and ":" in userinfo:
        return f"{userinfo.split(':', 1)[0]}:***@{rest}"
    return text


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return _hide_passwords(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def redacted(config: Config) -> dict[str, object]:
    """The configuration as plain JSON-ready data, safe for ``/debug/config`` and logs."""
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True)
    for dotted in _SECRET_KEYS:
        section, key = dotted.split(".")
        if data[section][key]:  # an empty secret stays visible: "unset" is useful and safe
            data[section][key] = "***"
    for dotted in _DSN_KEYS:
        section, key = dotted.split(".")
        data[section][key] = _hide_dsn_password(data[section][key])
    # Scripts read [env] for API keys and the like, so names that look secret are hidden whole.
    data["env"] = {
        name: "***" if value and _SECRET_NAME.search(name) else value
        for name, value in data["env"].items()
    }
    for dotted, name in config._secret_keys.items():
        section, key = dotted.split(".", 1)
        data[section][key] = SECRET_REF + name  # what the file says, never the value
    scrubbed = _scrub(data)
    assert isinstance(scrubbed, dict)
    return scrubbed


# Keys that cannot come from nflow_secrets: they are needed to reach and open that table.
_NO_SECRET_SECTIONS = ("database_nflow.", "security.encryption_key")


def secret_references(config: Config) -> dict[str, str]:
    """Dotted keys whose value is ``"secret:NAME"``, with the secret's name.

    Keys of a section and entries of ``[env]`` may refer to a secret; a reference anywhere
    else (database_nflow, the encryption key, nested tables, lists) is a ConfigError.
    """
    found: dict[str, str] = {}
    bad: list[_Finding] = []
    data = config.model_dump(by_alias=True)
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if isinstance(value, str) and value.startswith(SECRET_REF):
                if dotted.startswith(_NO_SECRET_SECTIONS):
                    bad.append(
                        _Finding(
                            "configuration",
                            dotted,
                            f"{dotted}: cannot refer to a secret: secrets are kept in the "
                            "nflow database and sealed with the encryption key, so this key "
                            "is needed to read them",
                        )
                    )
                else:
                    found[dotted] = value[len(SECRET_REF) :]
            elif _mentions_secret(value):
                bad.append(
                    _Finding(
                        "configuration",
                        dotted,
                        f"{dotted}: secret references work on keys of a section and [env] "
                        "entries only, not inside lists or nested tables",
                    )
                )
    if bad:
        _raise(bad)
    return found


def _mentions_secret(value: object) -> bool:
    if isinstance(value, str):
        return value.startswith(SECRET_REF)
    if isinstance(value, dict):
        return any(_mentions_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions_secret(v) for v in value)
    return False


def with_secrets(config: Config, values: Mapping[str, tuple[str, str]]) -> Config:
    """A copy of ``config`` with ``{dotted key: (secret name, plaintext)}`` substituted and
    validated again (``session.secret`` must still be 32+ characters ...).

    Problems name the key and the secret, never the value. :func:`redacted` shows such keys
    as ``"secret:NAME"``.
    """
    data: dict[str, Any] = config.model_dump(by_alias=True)
    for dotted, (_name, plain) in values.items():
        section, key = dotted.split(".", 1)
        data[section][key] = plain
    try:
        resolved = Config.model_validate(data)
    except ValidationError as exc:
        findings = _from_validation(exc, {}, "configuration")
        _raise([_from_secret(f, values) for f in findings])
    resolved._secret_keys = {**config._secret_keys, **{k: v[0] for k, v in values.items()}}
    return resolved


def _from_secret(finding: _Finding, values: Mapping[str, tuple[str, str]]) -> _Finding:
    if finding.key not in values:
        return finding
    name, plain = values[finding.key]
    text = finding.text
    if plain:  # a validator may quote the value it refused; a secret is never shown
        text = text.replace(json.dumps(plain), '"***"').replace(plain, "***")
    return _Finding(finding.origin, finding.key, f"{text} (from secret {name!r})")
