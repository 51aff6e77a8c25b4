"""Sessions kept by the client, one cookie per session name, sealed with AES-256-GCM.

The original signed gob cookies with the hard-coded key "secret", so anyone could forge a
profile. Here each cookie is encrypted and authenticated with a key derived from
``[session] secret`` and bound to its cookie name, so a cookie cannot be read, edited or moved
to another name. A sealed cookie carries its issue time (the server enforces ``max_age``) and,
for a logged-in session, the login id that logout revokes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from nflow._http import Request
from nflow.errors import ExecutionError
from nflow.jsapi import Sessions
from nflow.sessions._base import (
    LoadedSessions,
    changed,
    clear_cookie,
    cookie_name,
    serialize,
    session_name,
    set_cookie,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("nflow.security")

PREFIX = "nf1."
MAX_COOKIE = 4000  # browsers drop cookies over 4096 bytes; leave room for the attributes

IsRevoked = Callable[[str], Awaitable[bool]]
Revoke = Callable[[str, int], Awaitable[None]]


def derive_key(secret: str) -> bytes:
    return hashlib.sha256(b"nflow-session-v1\x00" + secret.encode("utf-8")).digest()


class CookieSessions:
    def __init__(
        self,
        *,
        secret: str,
        max_age: int,
        secure: bool,
        is_revoked: IsRevoked,
        revoke: Revoke,
    ) -> None:
        self._key = derive_key(secret)
        self._cipher: AESGCM | None = None
        self._max_age = max_age
        self._secure = secure
        self._is_revoked = is_revoked
        self._revoke = revoke

    # sealing ----------------------------------------------------------------------------
    @property
    def _aead(self) -> AESGCM:
        # cryptography (7 MB) is loaded by the first request that carries or sets a session
        # cookie: a worker serving only cookie-less API calls never needs it.
        cipher = self._cipher
        if cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            cipher = self._cipher = AESGCM(self._key)
        return cipher

    def seal(self, name: str, values: dict[str, Any], *, sid: str = "") -> str:
        body: dict[str, Any] = {"v": values, "t": int(time.time())}
        if sid:
            body["s"] = sid
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, orjson.dumps(body), name.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, name: str, value: str) -> dict[str, Any] | None:
        if not value.startswith(PREFIX):
            return None
        from cryptography.exceptions import InvalidTag

        raw = value[len(PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            plain = self._aead.decrypt(sealed[:12], sealed[12:], name.encode("utf-8"))
            body = orjson.loads(plain)
        except (InvalidTag, ValueError, binascii.Error, orjson.JSONDecodeError):
            log.warning("session cookie %r rejected: tampered or sealed with another key", name)
            return None
        if not isinstance(body, dict) or not isinstance(body.get("v"), dict):
            return None
        issued = body.get("t")
        if not isinstance(issued, int) or time.time() - issued > self._max_age:
            return None
        return body

    # backend ----------------------------------------------------------------------------
    async def load(self, request: Request) -> LoadedSessions:
        loaded = LoadedSessions(Sessions())
        cookies = request.cookies
        if not cookies:
            return loaded
        for cname, value in cookies.items():
            if not value.startswith(PREFIX):
                continue
            body = self.open(cname, value)
            if body is None:
                continue
            name = session_name(cname)
            values: dict[str, Any] = body["v"]
            sid = body.get("s")
            if name == "auth-session" and isinstance(sid, str) and sid:
                if await self._is_revoked(sid):
                    log.warning("session cookie of a revoked login was replayed")
                    loaded.original[name] = b"revoked"  # forces a clearing cookie
                    loaded.sessions.dirty.add(name)
                    continue
                loaded.sessions.profile_sid = sid
                loaded.sid = sid
            loaded.sessions.values[name] = values
            loaded.original[name] = serialize(values) if values else b""
        return loaded

    async def save(self, loaded: LoadedSessions) -> list[str]:
        sessions = loaded.sessions
        for sid in sessions.revoked:
            await self._revoke(sid, int(time.time()) + self._max_age)
        headers: list[str] = []
        updates = changed(loaded)
        if sessions.profile_sid != loaded.sid and "auth-session" not in updates:
            values = sessions.values.get("auth-session", {})
            updates["auth-session"] = serialize(values) if values else b""
        for name, data in updates.items():
            cname = cookie_name(name)
            if not data:
                headers.append(clear_cookie(cname, secure=self._secure))
                continue
            sid = sessions.profile_sid if name == "auth-session" else ""
            value = self.seal(cname, sessions.values[name], sid=sid)
            if len(value) > MAX_COOKIE:
                raise ExecutionError(
                    f"session {name!r} holds {len(data)} bytes, too much for a cookie; "
                    'set [session] backend = "redis" to keep large sessions on the server'
                )
            headers.append(set_cookie(cname, value, max_age=self._max_age, secure=self._secure))
        return headers

    async def close(self) -> None:
        return None
