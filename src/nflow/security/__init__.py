"""Security building blocks: script analysis, encryption at rest, log sanitizing.

The Go runtime shipped these as a library nothing called; nflow wires them in (see
docs/compat.md, Security module).

* :func:`analyze` / :func:`check_app` parse step scripts with a real JavaScript parser and
  report :class:`Finding` s; :class:`AnalyzerRules` holds the ``[security]`` settings.
* :class:`KeyRing` encrypts and decrypts ``enc:v1:<key id>:…`` values (AES-256-GCM) and
  :func:`rotate_database` re-encrypts the stored ones under the current key.
* :func:`set_secret` / :func:`resolve_secrets` keep configuration secrets in the database,
  sealed, and replace ``"secret:NAME"`` values of the config when a runtime opens.
* :func:`sanitize`, :func:`sanitize_value` and :class:`SanitizingFilter` keep passwords,
  tokens and card numbers out of logs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._analyzer import (
        DEFAULT_MAX_SCRIPT_BYTES,
        RULES,
        AnalyzerRules,
        Finding,
        NodeFinding,
        ScriptAnalyzer,
        analyze,
        blocks,
        check_app,
        playbook_sources,
    )
    from ._crypto import (
        CONFIG_KEY_ID,
        ENV_KEY_FILE,
        ENV_KEYS,
        PREFIX,
        DecryptionError,
        KeyConfigError,
        KeyRing,
        UnknownKeyError,
        field_aad,
        generate_key,
        is_encrypted,
    )
    from ._rotation import RotationReport, rotate_database
    from ._sanitizer import (
        Sanitizer,
        SanitizingFilter,
        install_log_sanitizer,
        luhn_valid,
        sanitize,
        sanitize_value,
    )
    from ._secrets import (
        SecretError,
        delete_secret,
        list_secrets,
        read_secrets,
        resolve_secrets,
        rotate_secrets,
        secret_aad,
        set_secret,
    )

# Each name's submodule, imported on first use: the log sanitizer and the key ring are
# wanted by processes (the master of ``nflow serve``, small commands) that never analyze
# a script, and the analyzer's parser is the heaviest part.
_SOURCES = {
    **dict.fromkeys(
        (
            "DEFAULT_MAX_SCRIPT_BYTES",
            "RULES",
            "AnalyzerRules",
            "Finding",
            "NodeFinding",
            "ScriptAnalyzer",
            "analyze",
            "blocks",
            "check_app",
            "playbook_sources",
        ),
        "_analyzer",
    ),
    **dict.fromkeys(
        (
            "CONFIG_KEY_ID",
            "ENV_KEY_FILE",
            "ENV_KEYS",
            "PREFIX",
            "DecryptionError",
            "KeyConfigError",
            "KeyRing",
            "UnknownKeyError",
            "field_aad",
            "generate_key",
            "is_encrypted",
        ),
        "_crypto",
    ),
    **dict.fromkeys(("RotationReport", "rotate_database"), "_rotation"),
    **dict.fromkeys(
        (
            "Sanitizer",
            "SanitizingFilter",
            "install_log_sanitizer",
            "luhn_valid",
            "sanitize",
            "sanitize_value",
        ),
        "_sanitizer",
    ),
    **dict.fromkeys(
        (
            "SecretError",
            "delete_secret",
            "list_secrets",
            "read_secrets",
            "resolve_secrets",
            "rotate_secrets",
            "secret_aad",
            "set_secret",
        ),
        "_secrets",
    ),
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'nflow.security' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nflow.security.{source}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CONFIG_KEY_ID",
    "DEFAULT_MAX_SCRIPT_BYTES",
    "ENV_KEYS",
    "ENV_KEY_FILE",
    "PREFIX",
    "RULES",
    "AnalyzerRules",
    "DecryptionError",
    "Finding",
    "KeyConfigError",
    "KeyRing",
    "NodeFinding",
    "RotationReport",
    "Sanitizer",
    "SanitizingFilter",
    "ScriptAnalyzer",
    "SecretError",
    "UnknownKeyError",
    "analyze",
    "blocks",
    "check_app",
    "delete_secret",
    "field_aad",
    "generate_key",
    "install_log_sanitizer",
    "is_encrypted",
    "list_secrets",
    "luhn_valid",
    "playbook_sources",
    "read_secrets",
    "resolve_secrets",
    "rotate_database",
    "rotate_secrets",
    "sanitize",
    "sanitize_value",
    "secret_aad",
    "set_secret",
]
