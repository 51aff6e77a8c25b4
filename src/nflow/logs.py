"""Logging set-up: one line per event, with the run's wid, app and node when known.

JSON when the output is not a terminal (containers, log shippers), readable text otherwise.
"""

from __future__ import annotations

__all__ = ["AccessLog", "access_log", "configure_logging"]

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import IO, Any

import orjson

from nflow._http import client_host

_EXTRA = (
    *("wid", "app", "starter", "node", "node_type", "next", "error", "rule", "status", "ip"),
    *("duration_ms", "trace_id", "span_id"),
)


_CHATTY = ("aiosqlite", "asyncio", "urllib3")


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
    global _access
    if _access is not None:
        _access._json = use_json
    else:
        _access = AccessLog(json_lines=use_json)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    if verbose:
        # -v is for nflow's own detail; these libraries log every statement and connection.
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.INFO)
    if security is not None:
        # Passwords, tokens and card numbers never reach a log handler.
        from nflow.security import install_log_sanitizer

        install_log_sanitizer(security)


class AccessLog:
    """One line per request, written without the logging machinery.

    Formatting a record and running the sanitizer's patterns cost ~120 µs a request, more
    than running a small flow. Access lines hold only method, path (no query), status, ids,
    duration and client address, so they skip both: :meth:`request` queues a tuple, and a
    background thread formats the queue with orjson and writes it out every 20 ms while
    requests come (200 ms when idle, and at exit), in one batch rather than a little on every
    request.
    """

    def __init__(self, *, stream: IO[bytes] | None = None, json_lines: bool = True) -> None:
        self._stream = stream
        self._json = json_lines
        self._events: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._start()
        atexit.register(self.flush)
        if hasattr(os, "register_at_fork"):
            # Server workers are forked from the process that configured logging; the writer
            # thread does not survive a fork, and without it lines pile up in memory unwritten.
            os.register_at_fork(after_in_child=self._after_fork)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nflow-access-log", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._events = deque()  # the parent's unwritten lines are the parent's to write
        self._start()

    def request(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float,
        wid: str,
        app: str,
        starter: str,
        peer: str,
        trace_id: str = "",
        span_id: str = "",
    ) -> None:
        """Queue the line of one served request (``peer`` is the client's ``host:port``).

        A tuple is queued (a deque append is atomic: no lock), and the writer thread makes
        the event of it (the dict, the client address, the rounding) in a batch, so the
        request itself pays for little more than the append.
        """
        self._events.append(
            (time.time(), method, path, status, seconds, wid, app, starter, peer, trace_id, span_id)
        )

    def _format(self, item: tuple[Any, ...]) -> bytes:
        event = _request_event(item)
        if self._json:
            return orjson.dumps(event) + b"\n"
        return (
            f"{time.strftime('%H:%M:%S', time.localtime(float(event['ts'])))} ACCESS  "  # type: ignore[arg-type]
            f"{event.get('method')} {event.get('path')} "
            f"{event.get('status')} {event.get('duration_ms')}ms  [wid={event.get('wid')} "
            f"app={event.get('app')} starter={event.get('starter')}"
            + (f" trace_id={event['trace_id']}" if "trace_id" in event else "")
            + "]\n"
        ).encode()

    def flush(self) -> int:
        """Write the queued lines now; returns how many."""
        with self._lock:
            events = self._events
            pop = events.popleft
            lines = []
            while events:
                try:
                    lines.append(self._format(pop()))
                except IndexError:
                    break
        if lines:
            stream = self._stream or sys.stderr.buffer
            try:
                stream.write(b"".join(lines))
                stream.flush()
            except (OSError, ValueError):  # stream closed at shutdown
                return 0
        return len(lines)

    def _run(self) -> None:
        wrote = 0
        while True:
            # Soon again while requests come: lines queued 200 ms earlier are out of the CPU's
            # caches, and formatting them cost ~20 % more than lines 20 ms old.
            time.sleep(_BUSY_FLUSH_EVERY if wrote else _IDLE_FLUSH_EVERY)
            wrote = self.flush()


def _request_event(item: tuple[Any, ...]) -> dict[str, object]:
    ts, method, path, status, seconds, wid, app, starter, peer, trace_id, span_id = item
    event: dict[str, object] = {
        "level": "info",
        "logger": "nflow.access",
        "method": method,
        "path": path,
        "status": status,
        # round(x, 3) costs more than the rest of the line (it goes through a decimal string).
        "duration_ms": (
            int(seconds * 1e6 + 0.5) / 1000 if seconds >= 0.0 else round(seconds * 1000, 3)
        ),
        "wid": wid,
        "app": app,
        "starter": starter,
        "ip": client_host(peer),
    }
    if trace_id:
        event["trace_id"] = trace_id
        event["span_id"] = span_id
    event["ts"] = ts
    return event


_BUSY_FLUSH_EVERY = 0.02
_IDLE_FLUSH_EVERY = 0.2
_access: AccessLog | None = None


def access_log() -> AccessLog:
    global _access
    if _access is None:
        _access = AccessLog(json_lines=not sys.stderr.isatty())
    return _access
