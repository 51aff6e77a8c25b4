"""Masking of secrets and personal data in log output.

The patterns are the Go runtime's log sanitizer's, in its order, with these fixes:

* ``key=value`` patterns (api keys and tokens, passwords) mask the value only and understand
  JSON, Python-repr and query-string spellings (``"password": "x"``, ``'pwd': 'x'``,
  ``password=x&``), which the Go expressions missed;
* credit card numbers must pass the Luhn check, so order ids and timestamps stay readable;
* phone numbers need a separator, parentheses or a ``+`` prefix (ten bare digits are usually a
  Unix time);
* IPv4 masking is off unless asked for, because client addresses are what security events
  and rate limiting are about.

Masks follow ``[security]``: ``[REDACTED:<type>]``; ``[REDACTED]`` without ``log_show_type``;
with ``log_preserve_length`` the value's length in ``log_masking_char`` (``[<type>:****]``
or ``****``).
"""

from __future__ import annotations

__all__ = [
    "Sanitizer",
    "SanitizingFilter",
    "install_log_sanitizer",
    "luhn_valid",
    "sanitize",
    "sanitize_value",
]

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nflow.config import SecurityConfig

_MAX_DEPTH = 32
_MARK = "_nflow_sanitized"

# Quick rejection: a text none of the built-in patterns can match has no digit, no "@" and
# none of these words.
_TRIGGER = re.compile(
    r"[0-9@]|pass|pwd|secret|token|bearer|basic|api[_-]?key|apikey|private|eyj",
    re.IGNORECASE,
)

# A value after "key:" or "key=": quoted (escapes allowed) or bare.
_VALUE = (
    r"""["']?\s*[:=]\s*(?:"(?P<dq>(?:[^"\\\n]|\\.)*)"|'(?P<sq>(?:[^'\\\n]|\\.)*)'"""
    r"""|(?P<bare>[^\s"'`,;&<>{}\[\]()]{%d,}))"""
)
_API_KEY_NAMES = (
    r"api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token"
    r"|session[_-]?token|client[_-]?secret|secret[_-]?key|private[_-]?key|x[_-]api[_-]key"
    r"|token|secret"
)
_PASSWORD_NAMES = r"password|passwd|passphrase|pwd|pass"

# Field names whose values are masked whole by sanitize_value and the logging filter, whatever
# they hold (the type shown is the value on the right).
_SENSITIVE_KEYS: Mapping[str, str] = {
    "password": "password",
    "passwd": "password",
    "pwd": "password",
    "passphrase": "password",
    "secret": "secret",
    "token": "token",
    "api_key": "api_key",
    "apikey": "api_key",
    "authorization": "authorization",
    "cookie": "cookie",
    "private_key": "private_key",
    "credential": "credential",
}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(value: str) -> bool:
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    value_groups: tuple[str, ...] = ()  # mask only these named groups (the first that matched)
    check: Callable[[str], bool] | None = None  # the match must pass this to be masked


def _builtin_patterns(mask_ip: bool) -> list[_Pattern]:
    patterns = [
        _Pattern(
            "private_key",
            re.compile(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
                r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"
            ),
        ),
        _Pattern(
            "api_key",
            re.compile(rf"(?i)(?<![a-z])(?:{_API_KEY_NAMES})(?![a-z]){_VALUE % 1}"),
            ("dq", "sq", "bare"),
        ),
        _Pattern(
            "jwt",
            # Runs are taken whole (possessive, and only from their first character), so a
            # long token without dots costs one scan, not one per position.
            re.compile(r"(?<![A-Za-z0-9_-])(?:[A-Za-z0-9_-]{10,}+\.){2}[A-Za-z0-9_-]{10,}+"),
        ),
        _Pattern(
            "password",
            re.compile(rf"(?i)(?<![a-z])(?:{_PASSWORD_NAMES})(?![a-z]){_VALUE % 1}"),
            ("dq", "sq", "bare"),
        ),
        _Pattern(
            "access_token",
            re.compile(
                r"(?i)\b(?:bearer\s+(?P<bearer>[A-Za-z0-9_\-.~+/]++=*)(?![A-Za-z0-9_\-.~+/=])"
                r"|basic\s+(?P<basic>[A-Za-z0-9+/]{8,}=*))"
            ),
            ("bearer", "basic"),
        ),
        _Pattern(
            "email",
            re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
        ),
        _Pattern("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
        _Pattern(
            "credit_card",
            re.compile(
                # Not the digits of a decimal number (0.03817082151494189 may pass Luhn).
                r"(?<!\d)(?<!\d\.)"
                r"(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})"
                r"(?!\d|\.\d)"
            ),
            check=_card_ok,
        ),
    ]
    if mask_ip:
        octet = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
        patterns.append(
            _Pattern("ip_address", re.compile(rf"(?<![\d.]){octet}(?:\.{octet}){{3}}(?![\d.])"))
        )
    patterns.append(
        _Pattern(
            "phone",
            re.compile(
                r"(?<![\w+])(?:(?:\+?1[-.\s]?)?(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}"
                r"|\+\d{1,3}(?:[-.\s]?\d{2,4}){2,5})(?![\w])"
            ),
        )
    )
    return patterns


class Sanitizer:
    """Masks what the patterns find; built once per configuration, thread-safe."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        masking_char: str = "*",
        preserve_length: bool = False,
        show_type: bool = True,
        custom_patterns: Mapping[str, str] | None = None,
        mask_ip: bool = False,
        sensitive_keys: Iterable[str] = (),
    ) -> None:
        if len(masking_char) != 1:
            raise ValueError("masking_char must be one character")
        self.enabled = enabled
        self.masking_char = masking_char
        self.preserve_length = preserve_length
        self.show_type = show_type
        builtin = _builtin_patterns(mask_ip)
        self._patterns = list(builtin)
        for name, expression in (custom_patterns or {}).items():
            self._patterns.append(_Pattern(name, re.compile(expression)))
        # With custom patterns anything may match, so there is no quick rejection.
        self._trigger = None if custom_patterns else _TRIGGER
        # One search with every built-in pattern at once decides whether any can match; most
        # texts that pass the trigger (a digit is enough) match none, and then cost that one
        # search instead of a substitution per pattern.
        self._any = None if custom_patterns else _combined(builtin)
        keys = dict(_SENSITIVE_KEYS)
        for key in sensitive_keys:
            normal = _normal_key(key)
            if normal:
                keys.setdefault(normal, normal)
        self._sensitive = keys
        # Results for short texts and key names, which repeat (headers, field names).
        self._texts: dict[str, str] = {}
        self._kinds: dict[str, str | None] = {}

    @classmethod
    def from_config(cls, config: SecurityConfig, *, mask_ip: bool = False) -> Sanitizer:
        """From ``[security]``: ``enable_log_sanitization``, ``log_masking_char``,
        ``log_preserve_length``, ``log_show_type``, ``log_custom_patterns``; the
        ``always_encrypt_fields`` names are masked whole in mappings too."""
        return cls(
            enabled=config.enable_log_sanitization,
            masking_char=config.log_masking_char,
            preserve_length=config.log_preserve_length,
            show_type=config.log_show_type,
            custom_patterns=dict(config.log_custom_patterns),
            mask_ip=mask_ip,
            sensitive_keys=tuple(config.always_encrypt_fields),
        )

    def mask(self, kind: str, value: str) -> str:
        if self.preserve_length:
            masked = self.masking_char * len(value)
            return f"[{kind}:{masked}]" if self.show_type else masked
        return f"[REDACTED:{kind}]" if self.show_type else "[REDACTED]"

    def sanitize(self, text: str) -> str:
        """``text`` with every match masked."""
        if not self.enabled or not text:
            return text
        short = len(text) <= _CACHED_TEXT
        if short:
            found = self._texts.get(text)
            if found is not None:
                return found
        original = text
        if (self._trigger is None or self._trigger.search(text) is not None) and (
            self._any is None or self._any.search(text) is not None
        ):
            for pattern in self._patterns:
                text = pattern.regex.sub(self._replacer(pattern), text)
        if short:
            texts = self._texts
            if len(texts) >= _CACHE_SIZE:
                texts.clear()
            texts[original] = text
        return text

    def _replacer(self, pattern: _Pattern) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            whole = match.group(0)
            if pattern.check is not None and not pattern.check(whole):
                return whole
            for group in pattern.value_groups:
                value = match.group(group)
                if value is not None:
                    start = match.start(group) - match.start()
                    end = match.end(group) - match.start()
                    return whole[:start] + self.mask(pattern.kind, value) + whole[end:]
            return self.mask(pattern.kind, whole)

        return replace

    def sensitive_kind(self, key: object) -> str | None:
        """The mask type when a field of this name is secret whatever its value."""
        if not isinstance(key, str):
            return None
        kinds = self._kinds
        try:
            return kinds[key]
        except KeyError:
            pass
        normal = _normal_key(key)
        found = None
        for word, kind in self._sensitive.items():
            if word in normal:
                found = kind
                break
        if len(kinds) >= _CACHE_SIZE:
            kinds.clear()
        kinds[key] = found
        return found

    def sanitize_value(self, obj: object, _depth: int = 0) -> object:
        """A copy of ``obj`` with strings sanitized and secret-named fields masked whole;
        dicts, lists, tuples and sets are walked (32 levels deep, then cut)."""
        if not self.enabled:
            return obj
        kind_of = type(obj)
        if kind_of in _SCALARS:  # most values of a JSON document; no ABC checks for them
            return obj
        if isinstance(obj, str):
            return self.sanitize(obj)
        if _depth >= _MAX_DEPTH:
            return "[TRUNCATED]" if isinstance(obj, Mapping | list | tuple | set) else obj
        if isinstance(obj, dict | Mapping):  # dict first: no ABC check for it
            out: dict[object, object] = {}
            for key, value in obj.items():
                kind = self.sensitive_kind(key)
                if kind is not None and value is not None and not isinstance(value, bool):
                    out[key] = self._masked(kind, value)
                else:
                    out[key] = self.sanitize_value(value, _depth + 1)
            return out
        if isinstance(obj, list):
            return [self.sanitize_value(v, _depth + 1) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.sanitize_value(v, _depth + 1) for v in obj)
        if isinstance(obj, set | frozenset):
            return type(obj)(self.sanitize_value(v, _depth + 1) for v in obj)
        return obj

    def _masked(self, kind: str, value: object) -> object:
        """A secret-named field's value masked whole; a list of values (a form field, a
        header) stays a list of masks, so code reading its first item still gets a mask."""
        if isinstance(value, list | tuple):
            return [self.mask(kind, v if isinstance(v, str) else str(v)) for v in value]
        return self.mask(kind, value if isinstance(value, str) else str(value))


_SCALARS = frozenset({int, float, bool, type(None)})
_CACHED_TEXT = 256
_CACHE_SIZE = 4096


def _combined(patterns: list[_Pattern]) -> re.Pattern[str]:
    """A pattern matching wherever one of ``patterns`` may: each with its named groups made
    plain (names repeat across patterns), its back references loosened to what they refer
    to, and its flags scoped to it. It may match more than they do, never less."""
    parts = []
    for pattern in patterns:
        text = re.sub(r"\(\?P<\w+>", "(?:", pattern.regex.pattern)
        text = text.replace("([ -])", "(?:[ -])").replace("\\1", "[ -]").replace("\\2", "[ -]")
        if text.startswith("(?i)"):
            text = f"(?i:{text[4:]})"
        parts.append(f"(?:{text})")
    return re.compile("|".join(parts))


def _normal_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


@lru_cache(maxsize=16)
def _cached(
    enabled: bool,
    masking_char: str,
    preserve_length: bool,
    show_type: bool,
    custom: tuple[tuple[str, str], ...],
    sensitive: tuple[str, ...],
) -> Sanitizer:
    return Sanitizer(
        enabled=enabled,
        masking_char=masking_char,
        preserve_length=preserve_length,
        show_type=show_type,
        custom_patterns=dict(custom),
        sensitive_keys=sensitive,
    )


def _for_config(config: SecurityConfig | None) -> Sanitizer:
    if config is None:
        return _cached(True, "*", False, True, (), ())
    return _cached(
        config.enable_log_sanitization,
        config.log_masking_char,
        config.log_preserve_length,
        config.log_show_type,
        tuple(sorted(config.log_custom_patterns.items())),
        tuple(config.always_encrypt_fields),
    )


def sanitize(text: str, *, config: SecurityConfig | None = None) -> str:
    """``text`` with secrets masked as ``[security]`` says (defaults without a config)."""
    return _for_config(config).sanitize(text)


def sanitize_value(obj: object, *, config: SecurityConfig | None = None) -> object:
    """:meth:`Sanitizer.sanitize_value` with the ``[security]`` settings."""
    return _for_config(config).sanitize_value(obj)


# --------------------------------------------------------------------------------------------
# logging

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", _MARK}
)
_TRACEBACKS = logging.Formatter()
# Random ids nflow itself puts on records; never user data. A hex span id such as
# b7250844443303e2 holds a digit run that passes the card-number check.
_NFLOW_IDS = frozenset({"wid", "trace_id", "span_id"})


class SanitizingFilter(logging.Filter):
    """Rewrites each record so no handler sees a secret: the formatted message, the
    traceback, ``stack_info`` and string (or dict/list) ``extra`` values.

    Attach it to **handlers** (a logger's filters do not see records propagated from child
    loggers). It never drops a record. When something is masked, ``record.msg`` becomes the
    sanitized formatted text and ``record.args`` ``None``; a traceback holding a secret is moved,
    sanitized, into the message and ``exc_info`` cleared, so formatters that print
    ``exc_info`` cannot show the original.
    """

    def __init__(
        self,
        config: SecurityConfig | None = None,
        *,
        sanitizer: Sanitizer | None = None,
        mask_ip: bool = False,
    ) -> None:
        super().__init__()
        if sanitizer is None:
            sanitizer = (
                Sanitizer.from_config(config, mask_ip=mask_ip)
                if config is not None
                else Sanitizer(mask_ip=mask_ip)
            )
        self.sanitizer = sanitizer

    def filter(self, record: logging.LogRecord) -> bool:
        clean = self.sanitizer
        if not clean.enabled or record.__dict__.get(_MARK):
            return True
        record.__dict__[_MARK] = True
        if isinstance(record.msg, Mapping) and not record.args:
            record.msg = clean.sanitize_value(record.msg)  # structlog-style event dicts
        else:
            try:
                text = record.getMessage()
            except Exception:  # bad %-args: logging would print them raw in handleError
                text = f"{record.msg} (unformattable arguments: {record.args!r})"
                record.args = None
                record.msg = text
            masked = clean.sanitize(text)
            if masked != text:
                record.msg = masked
                record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            trace = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            masked = clean.sanitize(trace)
            if masked != trace:
                record.msg = f"{record.getMessage()}\n{masked}"
                record.args = None
                record.exc_info = None
                record.exc_text = None
        elif record.exc_text:
            record.exc_text = clean.sanitize(record.exc_text)
        if record.stack_info:
            record.stack_info = clean.sanitize(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_ATTRS or key in _NFLOW_IDS:
                continue
            kind = clean.sensitive_kind(key)
            if kind is not None and value is not None and not isinstance(value, bool):
                record.__dict__[key] = clean.mask(kind, str(value))
            elif isinstance(value, str | Mapping | list | tuple | set):
                record.__dict__[key] = clean.sanitize_value(value)
        return True


def install_log_sanitizer(
    config: SecurityConfig | None = None,
    *,
    handlers: Iterable[logging.Handler] | None = None,
    mask_ip: bool = False,
) -> SanitizingFilter | None:
    """Add one :class:`SanitizingFilter` to ``handlers`` (default: the root logger's).

    Returns the filter, or ``None`` when ``enable_log_sanitization`` is off. Handlers that
    already have a SanitizingFilter are left alone, so calling it again is harmless.
    """
    if config is not None and not config.enable_log_sanitization:
        return None
    log_filter = SanitizingFilter(config, mask_ip=mask_ip)
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, SanitizingFilter) for f in handler.filters):
            handler.addFilter(log_filter)
    return log_filter
