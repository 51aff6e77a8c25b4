"""The log sanitizer: every pattern masked, look-alikes left alone, and a logging filter that
keeps secrets away from every handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from nflow.config import SecurityConfig
from nflow.security import (
    Sanitizer,
    SanitizingFilter,
    install_log_sanitizer,
    luhn_valid,
    sanitize,
    sanitize_value,
)

CARD = "4111 1111 1111 1111"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END RSA PRIVATE KEY-----"

MASKED: list[tuple[str, str, str, str]] = [
    # (type, text, secret that must disappear, text that must stay)
    ("api_key", "api_key=sk_live_51H8abcdefGHIJKLmnop", "sk_live_51H8abcdefGHIJKLmnop", "api_key="),
    ("api_key", '{"access_token": "ya29.a0AfH6SMB", "n": 1}', "ya29.a0AfH6SMB", '"n": 1'),
    (
        "api_key",
        "GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "ghp_16C7e42F",
        "GITHUB_TOKEN=",
    ),
    ("api_key", "client_secret: 'abc def'", "abc def", "client_secret"),
    ("jwt", f"session {JWT} ok", JWT, "session"),
    ("private_key", f"key:\n{PEM}\nend", "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo", "end"),
    ("password", "login user=bob password=hunter22 ok", "hunter22", "user=bob"),
    (
        "password",
        '{"username": "bob", "password": "p@ss, word"}',
        "p@ss, word",
        '"username": "bob"',
    ),
    ("password", "{'pwd': 'x1'}", "'x1'", "'pwd'"),
    ("password", "/login?user=bob&passwd=s3cr3t&next=/home", "s3cr3t", "next=/home"),
    ("password", "DB_PASSWORD=correcthorse", "correcthorse", "DB_PASSWORD="),
    (
        "access_token",
        "Authorization: Bearer abc123.def-456",
        "abc123.def-456",
        "Authorization: Bearer",
    ),
    ("access_token", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "Basic"),
    (
        "email",
        "user john.doe+tag@example.co.uk logged in",
        "john.doe+tag@example.co.uk",
        "logged in",
    ),
    ("ssn", "ssn 123-45-6789 on file", "123-45-6789", "on file"),
    ("credit_card", f"paid with {CARD} exp 12/30", CARD, "exp 12/30"),
    ("credit_card", "card=4012888888881881;", "4012888888881881", "card="),
    ("credit_card", "amex 3782-822463-10005", "3782-822463-10005", "amex"),
    ("credit_card", "card 4111111111111111.", "4111111111111111", "card"),
    ("phone", "call (555) 123-4567 now", "123-4567", "now"),
    ("phone", "call +1 555-123-4567 now", "555-123-4567", "call"),
    ("phone", "call +44 20 7946 0958 now", "7946 0958", "call"),
]


@pytest.mark.parametrize(("kind", "text", "secret", "kept"), MASKED)
def test_pattern_masked(kind: str, text: str, secret: str, kept: str) -> None:
    out = sanitize(text)
    assert secret not in out, out
    assert f"[REDACTED:{kind}]" in out, out
    assert kept in out, out


NOT_MASKED = [
    "order 4111111111111112 shipped",  # 16 digits, fails Luhn
    "batch 1234 5678 9012 3456 done",  # grouped, fails Luhn
    "ts=1700000000 took 15 ms",  # a Unix time is not a phone number
    "version 1.2.3.4 from 10.0.0.1",  # IPv4 kept unless asked for
    "user bob logged in from the home page",
    "token_type=Bearer expires_in=3600",
    "password_hash computed in 12ms",
    "drew 0.03817082151494189 of 1",  # the digits of a decimal pass Luhn, but are no card
    "total 4111111111111111.25 units",
]


@pytest.mark.parametrize("text", NOT_MASKED)
def test_look_alikes_are_kept(text: str) -> None:
    assert sanitize(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x1111111111")


def test_ipv4_is_optional() -> None:
    assert Sanitizer(mask_ip=True).sanitize("from 10.0.0.1 at") == "from [REDACTED:ip_address] at"
    assert Sanitizer(mask_ip=True).sanitize("v 1.2.3.4.5") == "v 1.2.3.4.5"


def test_masking_options_from_config() -> None:
    text = "password=abcdef card 4111111111111111"
    assert (
        sanitize(text, config=SecurityConfig(log_show_type=False))
        == "password=[REDACTED] card [REDACTED]"
    )
    keep = SecurityConfig(log_preserve_length=True, log_masking_char="#")
    assert (
        sanitize(text, config=keep)
        == "password=[password:######] card [credit_card:################]"
    )
    bare = SecurityConfig(log_preserve_length=True, log_show_type=False)
    assert sanitize("password=abcdef", config=bare) == "password=******"
    off = SecurityConfig(enable_log_sanitization=False)
    assert sanitize(text, config=off) == text


def test_custom_patterns() -> None:
    config = SecurityConfig(
        log_custom_patterns={"employee_id": r"EMP\d{6}", "ticket": r"TCK-[A-Z]+"}
    )
    assert sanitize("by EMP123456 on TCK-ABC", config=config) == (
        "by [REDACTED:employee_id] on [REDACTED:ticket]"
    )
    assert sanitize("by EMP123456") == "by EMP123456"


def test_sanitize_value() -> None:
    data = {
        "user": "bob",
        "password": "hunter2",
        "pin_code": 1234,
        "Api-Key": "k",
        "nested": [{"note": "card 4111111111111111"}, ("mail bob@example.com",)],
        "active": True,
        "empty": None,
        "count": 3,
    }
    out = sanitize_value(data)
    assert out == {
        "user": "bob",
        "password": "[REDACTED:password]",
        "pin_code": 1234,
        "Api-Key": "[REDACTED:api_key]",
        "nested": [{"note": "card [REDACTED:credit_card]"}, ("mail [REDACTED:email]",)],
        "active": True,
        "empty": None,
        "count": 3,
    }
    assert data["password"] == "hunter2"  # a copy
    # A form field or header holds a list of values: masked one by one, still a list.
    assert sanitize_value({"password": ["a", "b"], "Cookie": ("c",)}) == {
        "password": ["[REDACTED:password]", "[REDACTED:password]"],
        "Cookie": ["[REDACTED:cookie]"],
    }
    config = SecurityConfig(always_encrypt_fields=("pin_code",))
    assert sanitize_value({"pin_code": 1234}, config=config) == {"pin_code": "[REDACTED:pin_code]"}
    deep: list[object] = []
    cursor = deep
    for _ in range(100):
        inner: list[object] = []
        cursor.append(inner)
        cursor = inner
    assert "[TRUNCATED]" in repr(sanitize_value(deep))


def test_hostile_inputs_are_sanitized_whole() -> None:
    # Near-miss shapes for the card, e-mail, IP and key=value patterns: nothing to mask, and
    # the text comes back whole (a backtracking pattern here would never finish the suite).
    sanitizer = Sanitizer(mask_ip=True)
    for text in ["a-" * 50_000, "a." * 50_000 + "@", "12-" * 30_000, "1." * 50_000]:
        assert sanitizer.sanitize(text) == text
    assert sanitizer.sanitize("password=" * 20_000) == "password=[REDACTED:password]"


def test_fast_path_leaves_plain_text_alone() -> None:
    text = "request handled for app home in module form"
    assert sanitize(text) is text


# --- the logging filter ----------------------------------------------------------------------

SECRETS = [
    "hunter22",
    "4111111111111111",
    "ghp_16C7e42F292c6912E7710c",
    "abc123tokenvalue",
    "s3cr3t-extra",
]


class _ExcInfoFormatter(logging.Formatter):
    """Like nflow's own formatters: prints exc_info itself and ignores exc_text."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.getMessage()} extra={record.__dict__.get('detail')}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, list[io.StringIO]]]:
    streams = [io.StringIO(), io.StringIO()]
    handlers: list[logging.Handler] = [
        logging.StreamHandler(streams[0]),
        logging.StreamHandler(streams[1]),
    ]
    handlers[0].setFormatter(logging.Formatter("%(levelname)s %(message)s %(detail)s"))
    handlers[1].setFormatter(_ExcInfoFormatter())
    parent = logging.getLogger("nflow_test_sanitizer")
    parent.propagate = False
    parent.setLevel(logging.DEBUG)
    for handler in handlers:
        parent.addHandler(handler)
    assert install_log_sanitizer(SecurityConfig(), handlers=handlers) is not None
    child = logging.getLogger("nflow_test_sanitizer.child")  # propagates to the handlers
    yield child, streams
    for handler in handlers:
        parent.removeHandler(handler)


def test_filter_keeps_secrets_from_every_handler(
    captured: tuple[logging.Logger, list[io.StringIO]],
) -> None:
    log, streams = captured
    log.info("login %s password=%s", "bob", "hunter22", extra={"detail": "plain"})
    log.info("paid with %s", "4111111111111111", extra={"detail": {"token": "abc123tokenvalue"}})
    log.warning("env GITHUB_TOKEN=%s", "ghp_16C7e42F292c6912E7710c", extra={"detail": "x"})
    log.info("extra secret", extra={"detail": "password: s3cr3t-extra"})
    try:
        raise RuntimeError("cannot connect with password=hunter22")
    except RuntimeError:
        log.exception("db failed", extra={"detail": None})
    log.info("harmless %d items", 3, extra={"detail": "ok"})
    for stream in streams:
        output = stream.getvalue()
        for secret in SECRETS:
            assert secret not in output, (secret, output)
        assert "login bob password=[REDACTED:password]" in output
        assert "paid with [REDACTED:credit_card]" in output
        assert "RuntimeError: cannot connect with password=[REDACTED:password]" in output
        assert "harmless 3 items" in output
        assert "Traceback" in output


def test_filter_leaves_clean_records_untouched() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "count %d", (5,), None)
    assert SanitizingFilter().filter(record)
    assert record.msg == "count %d" and record.args == (5,)
    secret = logging.LogRecord("x", logging.INFO, __file__, 1, "pw %s", ("password=abcd",), None)
    SanitizingFilter().filter(secret)
    assert secret.getMessage() == "pw password=[REDACTED:password]"


def test_filter_keeps_nflow_ids_whole() -> None:
    # This span id holds 7250844443303, a digit run that passes the card-number check; it
    # was masked in a log line once, so the line no longer matched its trace.
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "node ran", None, None)
    record.span_id = "b7250844443303e2"
    record.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    record.card = "4111 1111 1111 1111"
    SanitizingFilter().filter(record)
    assert record.span_id == "b7250844443303e2"
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "1111 1111" not in record.card


def test_filter_handles_dict_messages_and_bad_args() -> None:
    event = logging.LogRecord(
        "x", logging.INFO, __file__, 1, {"event": "login", "password": "pw1234"}, None, None
    )
    SanitizingFilter().filter(event)
    assert event.msg == {"event": "login", "password": "[REDACTED:password]"}
    broken = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s %s", ("password=abcd",), None)
    SanitizingFilter().filter(broken)
    assert "abcd" not in broken.getMessage() and broken.args is None


def test_install_is_idempotent_and_honours_the_switch() -> None:
    handler = logging.StreamHandler(io.StringIO())
    install_log_sanitizer(handlers=[handler])
    install_log_sanitizer(handlers=[handler])
    assert sum(isinstance(f, SanitizingFilter) for f in handler.filters) == 1
    other = logging.StreamHandler(io.StringIO())
    assert (
        install_log_sanitizer(SecurityConfig(enable_log_sanitization=False), handlers=[other])
        is None
    )
    assert other.filters == []
