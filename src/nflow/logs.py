"""Logging set-up: one line per event, with the run's wid, app and node when known.

JSON when the output is not a terminal (containers, log shippers), readable text otherwise.
"""

from __future__ import annotations

__all__ = ["BATCH_LINES", "IDLE_WRITE_AFTER", "AccessLog", "access_log", "configure_logging"]

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from itertools import islice
from typing import IO, Any

import msgspec
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


class _Line(msgspec.Struct, omit_defaults=True, gc=False):
    """One access line as queued and written: the fields in the order they are written.

    A Struct is made by C code and encoded from its slots (no key lookups), at about half
    what a dict and its orjson encoding cost; ``gc=False`` keeps the collector away from it.
    ``level`` and ``logger`` are passed on every line rather than given defaults, since
    ``omit_defaults`` (which drops the empty trace ids) would leave them out too.
    """

    level: str
    logger: str
    method: str
    path: str
    status: int
    duration_ms: float
    wid: str
    app: str
    starter: str
    ip: str
    ts: float
    trace_id: str = ""  # written only when tracing gave one
    span_id: str = ""


_encode_lines = msgspec.json.Encoder().encode_lines


class AccessLog:
    """One line per request, written without the logging machinery.

    Formatting a record and running the sanitizer's patterns cost ~120 µs a request, more
    than running a small flow. Access lines hold only method, path (no query), status, ids,
    duration and client address, so they skip both: :meth:`request` queues the line (a
    msgspec Struct, which the garbage collector does not track), and the request that
    fills a batch of :data:`BATCH_LINES` encodes and writes it, in one call, on its own
    thread. A background thread writes what is left when requests stop coming (within
    twice ``idle_write_after`` seconds, :data:`IDLE_WRITE_AFTER` by default) and at exit.

    Full batches are written by the requests, not by the background thread, because under
    load a second Python thread that wakes up to work makes the serving threads queue for
    the interpreter lock: with a writer thread encoding every 20 ms, a request served with
    the access log on made ~1.3 futex calls (``strace -c -f``, one worker under wrk) against
    ~1.0 with it off; with the requests writing, ~1.15. Writing blocks the request that
    fills a batch if the stream does (a pipe whose reader stalls): the log then slows the
    server down rather than lose lines or hold them in memory without bound.
    """

    def __init__(
        self,
        *,
        stream: IO[bytes] | None = None,
        json_lines: bool = True,
        idle_write_after: float | None = None,
    ) -> None:
        self._stream = stream
        self._json = json_lines
        self._idle_write_after = IDLE_WRITE_AFTER if idle_write_after is None else idle_write_after
        self._events: deque[_Line] = deque()
        self._batches = 0  # batches written so far: the idle writer's sign of traffic
        # Peer "host:port" -> host: clients come back, on the same connection many times.
        self._hosts: dict[str, str] = {}
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

        The line is queued (a deque append is atomic: no lock); the call that queues the
        :data:`BATCH_LINES`-th line writes the batch.
        """
        try:
            host = self._hosts[peer]
        except KeyError:
            host = self._host(peer)
        events = self._events
        events.append(
            _Line(
                "info",
                "nflow.access",
                method,
                path,
                status,
                # Whole microseconds, rounded half up, as milliseconds (round(x, 3) costs
                # several times more: it goes through a decimal string).
                (seconds * 1e6 + 0.5) // 1.0 / 1000.0,
                wid,
                app,
                starter,
                host,
                time.time(),
                trace_id,
                span_id,
            )
        )
        if len(events) >= BATCH_LINES:
            self._write_batch()

    def _write_batch(self) -> None:
        # On the serving path: a failure is logged, never raised into the request.
        try:
            self.flush()
        except Exception:
            logging.getLogger("nflow.logs").exception("access log write failed")

    def _host(self, peer: str) -> str:
        hosts = self._hosts
        if len(hosts) >= _MAX_HOSTS:
            hosts.clear()
        host = hosts[peer] = client_host(peer)
        return host

    def _text(self, line: _Line) -> bytes:
        return (
            f"{time.strftime('%H:%M:%S', time.localtime(line.ts))} ACCESS  "
            f"{line.method} {line.path} "
            f"{line.status} {line.duration_ms}ms  [wid={line.wid} "
            f"app={line.app} starter={line.starter}"
            + (f" trace_id={line.trace_id}" if line.trace_id else "")
            + "]\n"
        ).encode()

    def _encode(self, lines: list[_Line]) -> bytes:
        if not self._json:
            return b"".join(map(self._text, lines))
        try:
            return _encode_lines(lines)
        except UnicodeEncodeError:  # a lone surrogate is not UTF-8: line by line
            return b"".join(map(_one_line, lines))

    def flush(self) -> int:
        """Write the queued lines now; returns how many."""
        with self._lock:
            events = self._events
            # Only this method takes events out, under the lock: these n are there.
            batch = list(islice(iter(events.popleft, None), len(events)))
            if not batch:
                return 0
            self._batches += 1
            data = self._encode(batch)
        stream = self._stream or sys.stderr.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # stream closed at shutdown
            return 0
        return len(batch)

    def _run(self) -> None:
        seen = self._batches
        while True:
            time.sleep(self._idle_write_after)
            batches = self._batches
            if batches != seen:  # requests are writing batches: theirs to write
                seen = batches
                continue
            try:
                self.flush()
            except Exception:  # the writer must outlive any one bad batch
                logging.getLogger("nflow.logs").exception("access log write failed")
            seen = self._batches


def _one_line(line: _Line) -> bytes:
    try:
        return _encode_lines((line,))
    except UnicodeEncodeError:
        fixed = msgspec.structs.replace(
            line,
            **{
                field: value.encode("utf-8", "backslashreplace").decode()
                for field in line.__struct_fields__
                if isinstance(value := getattr(line, field), str)
            },
        )
        return _encode_lines((fixed,))


_MAX_HOSTS = 4096
# Lines per batch: ~30 kB of JSON, one write.
BATCH_LINES = 128
# The background writer's period: lines wait at most twice this after requests stop.
IDLE_WRITE_AFTER = 0.2
_access: AccessLog | None = None


def access_log() -> AccessLog:
    global _access
    if _access is None:
        _access = AccessLog(json_lines=not sys.stderr.isatty())
    return _access
