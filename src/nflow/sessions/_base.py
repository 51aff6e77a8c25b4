"""What every session backend does: read a client's sessions, write back what changed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from nflow._http import Request
from nflow.jsapi import Sessions

_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


@dataclass(slots=True)
class LoadedSessions:
    """A client's sessions as read at the start of a request, and what is needed to save them."""

    sessions: Sessions
    original: dict[str, bytes] = field(default_factory=dict)  # name -> serialized values
    sid: str = ""  # server-side backends: the client's session id
    new_client: bool = False


class SessionBackend(Protocol):
    async def load(self, request: Request) -> LoadedSessions: ...

    async def save(self, loaded: LoadedSessions) -> list[str]:
        """Persist changed sessions; returns Set-Cookie header values."""
        ...

    async def close(self) -> None: ...


def serialize(values: dict[str, Any]) -> bytes:
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def changed(loaded: LoadedSessions) -> dict[str, bytes]:
    """Sessions whose content differs from what the client had (name -> new serialization)."""
    out: dict[str, bytes] = {}
    sessions = loaded.sessions
    for name in sessions.dirty:
        values = sessions.values.get(name, {})
        data = serialize(values) if values else b""
        if data != loaded.original.get(name, b""):
            out[name] = data
    return out


def cookie_name(session: str) -> str:
    """Session names become cookie names as the Go runtime did; odd names are hex-encoded."""
    if _COOKIE_NAME.match(session):
        return session
    return "nfx_" + session.encode("utf-8").hex()[:120]


def session_name(cookie: str) -> str:
    if cookie.startswith("nfx_"):
        try:
            return bytes.fromhex(cookie[4:]).decode("utf-8")
        except ValueError:
            return cookie
    return cookie


def set_cookie(name: str, value: str, *, max_age: int, secure: bool) -> str:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie(name: str, *, secure: bool) -> str:
    return set_cookie(name, "", max_age=0, secure=secure).replace("Max-Age=0", "Max-Age=0")
