"""Logging set-up: one line per event, with the run's wid, app and node when known.

JSON when the output is not a terminal (containers, log shippers), readable text otherwise.
"""

from __future__ import annotations

__all__ = ["configure_logging"]

import logging
import sys
import time
from typing import Any

import orjson

_EXTRA = ("wid", "app", "starter", "node", "rule", "status", "ip", "duration_ms", "trace_id")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _EXTRA:
            value = record.__dict__.get(key)
            if value not in (None, ""):
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(event, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(
            f"{key}={record.__dict__[key]}"
            for key in _EXTRA
            if record.__dict__.get(key) not in (None, "")
        )
        line = f"{head} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    *, level: str = "info", fmt: str = "auto", verbose: bool = False, security: Any = None
) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    if security is not None:
        # Passwords, tokens and card numbers never reach a log handler.
        from nflow.security import install_log_sanitizer

        install_log_sanitizer(security)
