"""Debug session calls that reach a worker other than the session's owner.

A debug session is a run paused in one worker's memory, but ``nflow serve`` spreads calls
over all its workers. So a worker that starts a session first listens on a Unix socket in
the server's private relay directory (created by ``serve``, mode 0700, removed at exit), and
puts its pid in the ids of the sessions it starts (``p<pid>.<hex>``). A worker asked about a
session it does not have passes the call, with who made it, to the owner's socket and answers
with the owner's response. Outside ``nflow serve`` (tests, embedding: one process) nothing
listens and nothing is passed on.

Frames are a 4-byte big-endian length and a JSON object; bodies travel base64-encoded.
"""

from __future__ import annotations

__all__ = ["Answer", "answer_with", "forward", "listen"]

import asyncio
import base64
import contextlib
import logging
import os
import re
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nflow._http import Request, Response
from nflow.server._worker import SPEC_ENV

from ._core import Caller

if TYPE_CHECKING:
    from nflow.runtime import Runtime

log = logging.getLogger("nflow.debug")

Answer = Callable[["Runtime", Request, Caller], Awaitable[Response]]

_OWNER = re.compile(r"p(\d+)\.")
_MAX_FRAME = 32 * 1024 * 1024
# A step or continue waits up to 10 s for the run to settle; the owner may also be busy.
_ANSWER_SECONDS = 60.0
_answer: Answer | None = None
_listening: dict[int, asyncio.AbstractServer | None] = {}  # by id() of the runtime


def answer_with(answer: Answer) -> None:
    """How an owner answers a passed-on call: the API's own routing."""
    global _answer
    _answer = answer


def _relay_dir() -> Path | None:
    text = os.environ.get(SPEC_ENV)
    if not text:
        return None
    try:
        directory = orjson.loads(text).get("relay_dir")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return Path(directory) if directory and os.path.isdir(directory) else None


def _socket(directory: Path, pid: int) -> Path:
    return directory / f"debug-{pid}.sock"


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > _MAX_FRAME:
        raise ValueError(f"relay frame of {size} bytes is too large")
    return orjson.loads(await reader.readexactly(size))


async def _write(writer: asyncio.StreamWriter, value: Any) -> None:
    data = orjson.dumps(value)
    writer.write(struct.pack(">I", len(data)) + data)
    await writer.drain()


async def listen(runtime: Runtime) -> None:
    """Serve passed-on calls for this worker's sessions (once per runtime; a no-op outside
    ``nflow serve``), and name this worker in the ids of the sessions it starts."""
    directory = _relay_dir()
    if directory is None or id(runtime) in _listening:
        return
    path = _socket(directory, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a worker that had this pid before

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            call = await _read(reader)
            request = Request(
                call["method"],
                call["path"],
                query_string=call["query"],
                headers=[(k, v) for k, v in call["headers"]],
                body=base64.b64decode(call["body"]),
                client=call["client"],
                scheme=call["scheme"],
            )
            assert _answer is not None
            response = await _answer(runtime, request, Caller(call["auth"], call["user"]))
            await _write(
                writer,
                {
                    "status": response.status,
                    "headers": response.headers,
                    "body": base64.b64encode(response.body).decode(),
                },
            )
        except Exception:
            log.exception("debug relay: a passed-on call failed")
        finally:
            writer.close()

    try:
        server = await asyncio.start_unix_server(serve_one, path=str(path))
    except OSError as exc:  # a socket path too long for this system (a long TMPDIR) …
        log.warning(
            "debug sessions of this worker are reachable through it alone: cannot listen on "
            "%s (%s)",
            path,
            exc,
        )
        server = None
    _listening[id(runtime)] = server
    if server is not None:
        runtime.debug_sessions.id_prefix = f"p{os.getpid()}."


async def forward(session_id: str, request: Request, caller: Caller) -> Response | None:
    """The owner's answer to a call on session ``session_id``, or None when the session is
    not another live worker's."""
    found = _OWNER.match(session_id)
    directory = _relay_dir()
    if found is None or directory is None or int(found.group(1)) == os.getpid():
        return None
    path = _socket(directory, int(found.group(1)))
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5.0)
    except (OSError, TimeoutError):
        return None  # that worker is gone, and its sessions with it
    try:
        await _write(
            writer,
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": request.header_items,
                "body": base64.b64encode(request.body).decode(),
                "client": request.client,
                "scheme": request.scheme,
                "auth": caller.auth,
                "user": caller.user,
            },
        )
        answer = await asyncio.wait_for(_read(reader), _ANSWER_SECONDS)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        log.warning(
            "debug relay: worker %s did not answer for session %s", found.group(1), session_id
        )
        return None
    finally:
        writer.close()
    return Response(
        answer["status"],
        base64.b64decode(answer["body"]),
        [(k, v) for k, v in answer["headers"]],
    )
