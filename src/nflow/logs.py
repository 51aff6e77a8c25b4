"""Logging set-up: one line per event, with the run's wid, app and node when known.

JSON when the output is not a terminal (containers, log shippers), readable text otherwise.
"""

from __future__ import annotations

__all__ = [
    "BATCH_LINES",
    "IDLE_WRITE_AFTER",
    "MAX_PENDING_BYTES",
    "WAKE_WRITER_BYTES",
    "AccessLog",
    "access_log",
    "configure_logging",
    "utc_timestamp",
]

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from datetime import datetime
from itertools import islice
from typing import IO, Any

import msgspec
import orjson

from nflow._http import client_host

_EXTRA = (
    *("wid", "app", "starter", "node", "node_type", "next", "error", "rule", "status", "ip"),
    *("duration_ms", "trace_id", "span_id"),
    # the management API's audit lines
    *("method", "path", "outcome"),
)


_CHATTY = ("aiosqlite", "asyncio", "urllib3")


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def utc_timestamp(seconds: float) -> str:
    """``2025-01-31T12:00:00.123Z`` (UTC, milliseconds): the ``ts`` of every JSON line,
    application and access lines alike. The text of the second is reused within it."""
    global _second
    whole = int(seconds)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((seconds - whole) * 1000):03d}Z"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": utc_timestamp(record.created),
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
    # Alembic announces its dialect and plugins at info on every start of every worker;
    # the migrations nflow runs are logged by the store itself.
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)
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
    ts: str
    trace_id: str = ""  # written only when tracing gave one
    span_id: str = ""
    version: str = ""  # the app version that answered, when one did


_encode_lines = msgspec.json.Encoder().encode_lines


class AccessLog:
    """One line per request, written without the logging machinery.

    Formatting a record and running the sanitizer's patterns cost ~120 µs a request, more
    than running a small flow. Access lines hold only method, path (no query), status, ids,
    duration and client address, so they skip both: :meth:`request` queues the line (a
    msgspec Struct, which the garbage collector does not track); the request that fills a
    batch of :data:`BATCH_LINES` encodes it, in one call, and hands the bytes to a writer
    thread, which writes what it was handed every ``idle_write_after`` seconds
    (:data:`IDLE_WRITE_AFTER` by default; sooner past :data:`WAKE_WRITER_BYTES`), and the
    lines of a batch not yet full once no batch came for that long. :meth:`flush` (called at
    exit) writes everything now.

    The requests encode, not the writer, because under load a second Python thread that
    holds the interpreter lock for a while makes the serving threads queue for it. Futex
    calls per request (``strace -c -f``, one worker under wrk; ~1.15 with the access log
    off): ~0.45 more with the writer encoding every 20 ms, ~0.3 more with the requests
    encoding and the writer woken for every batch, ~0.1 more as here. The writer holds the
    lock only to take the bytes, not while it writes, so a slow disk or a stalled pipe
    reader holds up the writer, not the requests, until :data:`MAX_PENDING_BYTES` are
    waiting: then requests wait for the writer (the log slows the server down rather than
    lose lines or grow without bound).
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
        # Encoded batches waiting for the writer: (bytes, lines), and their total size.
        self._ready: deque[tuple[bytes, int]] = deque()
        self._ready_bytes = 0
        self._handed = 0  # batches encoded so far: the writer's sign of traffic
        # Peer "host:port" -> host: clients come back, on the same connection many times.
        self._hosts: dict[str, str] = {}
        self._start()
        atexit.register(self.flush)
        if hasattr(os, "register_at_fork"):
            # Server workers are forked from the process that configured logging; the writer
            # thread does not survive a fork, and without it lines pile up in memory unwritten.
            os.register_at_fork(after_in_child=self._after_fork)

    def _start(self) -> None:
        self._lock = threading.Lock()  # the queues
        self._write_lock = threading.Lock()  # the stream, so batches are written in order
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nflow-access-log", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # The parent's unwritten lines are the parent's to write.
        self._events.clear()
        self._ready.clear()
        self._ready_bytes = 0
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
        version: str = "",
    ) -> None:
        """Queue the line of one served request (``peer`` is the client's ``host:port``).

        The line is queued (a deque append is atomic: no lock); the call that queues the
        :data:`BATCH_LINES`-th line encodes the batch for the writer.
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
                utc_timestamp(time.time()),
                trace_id,
                span_id,
                version,
            )
        )
        if len(events) >= BATCH_LINES:
            self._hand_over()

    def _hand_over(self) -> None:
        # On the serving path: a failure is logged, never raised into the request.
        try:
            self._encode_queued()
            waiting = self._ready_bytes
            if waiting > MAX_PENDING_BYTES:
                self._write_ready()  # the writer is stuck behind its stream: wait with it
            elif waiting >= WAKE_WRITER_BYTES:
                self._wake.set()
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
            f"{datetime.fromisoformat(line.ts).astimezone():%H:%M:%S} ACCESS  "
            f"{line.method} {line.path} "
            f"{line.status} {line.duration_ms}ms  [wid={line.wid} "
            f"app={line.app} starter={line.starter}"
            + (f" trace_id={line.trace_id}" if line.trace_id else "")
            + (f" version={line.version[:12]}" if line.version else "")
            + "]\n"
        ).encode()

    def _encode(self, lines: list[_Line]) -> bytes:
        if not self._json:
            return b"".join(map(self._text, lines))
        try:
            return _encode_lines(lines)
        except UnicodeEncodeError:  # a lone surrogate is not UTF-8: line by line
            return b"".join(map(_one_line, lines))

    def _encode_queued(self) -> None:
        """Encode the queued lines into one batch for the writer."""
        with self._lock:
            events = self._events
            # Only this method takes lines out, under the lock: these n are there.
            lines = list(islice(iter(events.popleft, None), len(events)))
            if lines:
                data = self._encode(lines)
                self._ready.append((data, len(lines)))
                self._ready_bytes += len(data)
                self._handed += 1

    def _write_ready(self) -> int:
        """Write the encoded batches, in order; returns how many lines they held."""
        with self._write_lock:
            with self._lock:
                ready = self._ready
                batches = list(islice(iter(ready.popleft, None), len(ready)))
                self._ready_bytes -= sum(len(data) for data, _ in batches)
            if not batches:
                return 0
            stream = self._stream or sys.stderr.buffer
            try:
                stream.write(b"".join(data for data, _ in batches))
                stream.flush()
            except (OSError, ValueError):  # stream closed at shutdown
                return 0
            return sum(lines for _, lines in batches)

    def flush(self) -> int:
        """Write every queued line now; returns how many."""
        self._encode_queued()
        return self._write_ready()

    def _run(self) -> None:
        wake = self._wake
        seen = self._handed
        while True:
            wake.wait(self._idle_write_after)
            wake.clear()
            try:
                if self._handed != seen:
                    self._write_ready()  # requests are encoding: write what they handed over
                else:  # no full batch for a while: the lines queued too
                    self.flush()
            except Exception:  # the writer must outlive any one bad batch
                logging.getLogger("nflow.logs").exception("access log write failed")
            seen = self._handed


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
# The writer's period: a partial batch is written at most twice this after the last full one.
IDLE_WRITE_AFTER = 0.2
# Encoded lines that wake the writer before its period is up (under heavy traffic).
WAKE_WRITER_BYTES = 256 * 1024
# Encoded lines the writer may fall behind by (a slow stream) before requests wait for it.
MAX_PENDING_BYTES = 4 * 1024 * 1024
_access: AccessLog | None = None


def access_log() -> AccessLog:
    global _access
    if _access is None:
        _access = AccessLog(json_lines=not sys.stderr.isatty())
    return _access
