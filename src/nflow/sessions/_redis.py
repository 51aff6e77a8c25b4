"""Sessions kept in Redis, shared by every worker and instance; the client holds only an id.

One Redis hash per client (``<prefix>session:<id>``), one field per session name, expiring
``max_age`` seconds after the last write. Logout deletes the profile on the server, so an old
cookie replayed later finds nothing to log in with.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson

from nflow._http import Request
from nflow.jsapi import Sessions
from nflow.sessions._base import LoadedSessions, changed, serialize, set_cookie

T = TypeVar("T")
RunIo = Callable[[Coroutine[Any, Any, T]], Awaitable[T]]

SID_COOKIE = "nflow_sid"
_SID_PREFIX = "nf1r."


class RedisSessions:
    def __init__(
        self,
        *,
        client: Any,
        prefix: str,
        max_age: int,
        secure: bool,
        run_io: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]],
        keyring: Any = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._max_age = max_age
        self._secure = secure
        self._run = run_io
        # With [security] encrypt_sensitive_data, values are sealed (AES-256-GCM) at rest.
        self._keys = keyring

    def key(self, sid: str) -> str:
        return f"{self._prefix}session:{sid}"

    async def load(self, request: Request) -> LoadedSessions:
        loaded = LoadedSessions(Sessions())
        raw = request.cookies.get(SID_COOKIE, "")
        sid = raw[len(_SID_PREFIX) :] if raw.startswith(_SID_PREFIX) else ""
        if not sid or len(sid) != 43:
            return loaded
        loaded.sid = sid
        stored: dict[bytes, bytes] = await self._run(self._redis.hgetall(self.key(sid)))
        for field, data in stored.items():
            name = field.decode("utf-8", "replace")
            try:
                if self._keys is not None and data.startswith(b"enc:"):
                    data = self._keys.decrypt(data.decode(), aad=_aad(name)).encode()
                values = orjson.loads(data)
            except (orjson.JSONDecodeError, ValueError):
                continue
            if isinstance(values, dict):
                loaded.sessions.values[name] = values
                loaded.original[name] = serialize(values) if values else b""
        return loaded

    async def save(self, loaded: LoadedSessions) -> list[str]:
        updates = changed(loaded)
        if not updates:
            return []
        headers: list[str] = []
        sid = loaded.sid
        if not sid:
            if not any(updates.values()):
                return []  # nothing to keep for a client we have never seen
            sid = secrets.token_urlsafe(32)
            loaded.sid = sid
            headers.append(
                set_cookie(
                    SID_COOKIE, _SID_PREFIX + sid, max_age=self._max_age, secure=self._secure
                )
            )
        key = self.key(sid)
        redis = self._redis

        async def write() -> None:
            async with redis.pipeline(transaction=True) as pipe:
                for name, data in updates.items():
                    if data and self._keys is not None:
                        pipe.hset(key, name, self._keys.encrypt(data.decode(), aad=_aad(name)))
                    elif data:
                        pipe.hset(key, name, data)
                    else:
                        pipe.hdel(key, name)
                pipe.expire(key, self._max_age)
                await pipe.execute()

        await self._run(write())
        return headers

    async def close(self) -> None:
        await self._run(self._redis.aclose())


def _aad(name: str) -> bytes:
    return f"nflow:session.{name}".encode()
