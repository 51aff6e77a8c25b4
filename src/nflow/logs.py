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
from itertools import islice
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


class _Hosts(dict[str, str]):
    """Peer ``host:port`` -> host: clients come back, on the same connection many times."""

    def __missing__(self, peer: str) -> str:
        if len(self) >= _MAX_HOSTS:
            self.clear()
        host = self[peer] = client_host(peer)
        return host


class AccessLog:
    """One line per request, written without the logging machinery.

    Formatting a record and running the sanitizer's patterns cost ~120 µs a request, more
    than running a small flow. Access lines hold only method, path (no query), status, ids,
    duration and client address, so they skip both: :meth:`request` queues the line's event
    (a dict of plain values, which the garbage collector does not track), and a background
    thread encodes the queue with orjson and writes it out every 20 ms while requests come
    (200 ms when idle, and at exit), in one batch rather than a little on every request.
    """

    def __init__(self, *, stream: IO[bytes] | None = None, json_lines: bool = True) -> None:
        self._stream = stream
        self._json = json_lines
        self._events: deque[dict[str, Any]] = deque()
        self._hosts = _Hosts()
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
        self._events.clear()  # the parent's unwritten lines are the parent's to write
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

        The event is queued (a deque append is atomic: no lock) and the writer thread
        encodes a batch of them in one orjson call.
        """
        # Whole microseconds, rounded half up, as milliseconds (round(x, 3) costs several
        # times more: it goes through a decimal string).
        duration_ms = (seconds * 1e6 + 0.5) // 1.0 / 1000.0
        event = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "wid": wid,
            "app": app,
            "starter": starter,
            "ip": self._hosts[peer],
            "ts": time.time(),
        }
        if trace_id:
            event["trace_id"] = trace_id
            event["span_id"] = span_id
        self._events.append(event)

    def _text(self, event: dict[str, Any]) -> bytes:
        return (
            f"{time.strftime('%H:%M:%S', time.localtime(event['ts']))} ACCESS  "
            f"{event['method']} {event['path']} "
            f"{event['status']} {event['duration_ms']}ms  [wid={event['wid']} "
            f"app={event['app']} starter={event['starter']}"
            + (f" trace_id={event['trace_id']}" if "trace_id" in event else "")
            + "]\n"
        ).encode()

    def _encode(self, events: list[dict[str, Any]]) -> bytes:
        if not self._json:
            return b"".join(map(self._text, events))
        try:
            # One call for the batch, then a line per event, each given the fields every
            # line has: '},{"method":' only occurs between two events, as quotes inside
            # JSON strings are escaped.
            data = orjson.dumps(events)
        except TypeError:  # a value orjson refuses (a lone surrogate): line by line
            return b"".join(map(_one_line, events))
        return _LINE_START + data[2:-1].replace(_BETWEEN_EVENTS, _NEXT_LINE) + b"\n"

    def flush(self) -> int:
        """Write the queued lines now; returns how many."""
        with self._lock:
            events = self._events
            # Only this method takes events out, under the lock: these n are there.
            batch = list(islice(iter(events.popleft, None), len(events)))
            if not batch:
                return 0
            data = self._encode(batch)
        stream = self._stream or sys.stderr.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # stream closed at shutdown
            return 0
        return len(batch)

    def _run(self) -> None:
        wrote = 0
        while True:
            # Soon again while requests come: lines queued 200 ms earlier are out of the CPU's
            # caches, and encoding them cost ~20 % more than lines 20 ms old.
            time.sleep(_BUSY_FLUSH_EVERY if wrote else _IDLE_FLUSH_EVERY)
            try:
                wrote = self.flush()
            except Exception:  # the writer must outlive any one bad batch
                wrote = 0
                logging.getLogger("nflow.logs").exception("access log write failed")


def _one_line(event: dict[str, Any]) -> bytes:
    try:
        data = orjson.dumps(event)
    except TypeError:
        fixed = {
            key: value.encode("utf-8", "backslashreplace").decode()
            if isinstance(value, str)
            else value
            for key, value in event.items()
        }
        data = orjson.dumps(fixed)
    return _LINE_START + data[1:] + b"\n"


# Every access line starts with these fields; the queued events hold the rest, "method"
# first (see AccessLog.request).
_LINE_START = b'{"level":"info","logger":"nflow.access",'
_BETWEEN_EVENTS = b'},{"method":'
_NEXT_LINE = b"}\n" + _LINE_START + b'"method":'


_MAX_HOSTS = 4096
_BUSY_FLUSH_EVERY = 0.02
_IDLE_FLUSH_EVERY = 0.2
_access: AccessLog | None = None


def access_log() -> AccessLog:
    global _access
    if _access is None:
        _access = AccessLog(json_lines=not sys.stderr.isatty())
    return _access
