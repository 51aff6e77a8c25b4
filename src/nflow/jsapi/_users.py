"""Users and API tokens, read from the store through the I/O bridge."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable

users = HostTable()
T = TypeVar("T")


def _store_call(ctx: RunContext, what: str, coro: Coroutine[Any, Any, T]) -> T:
    timeout = max(0.05, min(ctx.remaining(), 10.0))
    try:
        return ctx.services.io.call(coro, timeout=timeout)
    except TimeoutError:
        raise HostError(f"database call {what} timed out") from None


def legacy_password_hash(password: str) -> str:
    """The original's format: hex SHA-512/256 of the password."""
    return hashlib.new("sha512_256", password.encode("utf-8")).hexdigest()


def verify_password(stored: str, password: str) -> bool:
    from nflow.passwords import verify

    return verify(stored, password)


@users.function("validate_user")
def validate_user(ctx: RunContext, username: object, password: object) -> bool:
    if not isinstance(username, str) or not isinstance(password, str):
        return False
    user = _store_call(ctx, "get_user", ctx.services.store.get_user(username))
    if user is None or not user.active:
        return False
    return verify_password(user.password, password)


@users.function("get_user")
def get_user(ctx: RunContext, username: object) -> dict[str, Any] | None:
    if not isinstance(username, str):
        return None
    user = _store_call(ctx, "get_user", ctx.services.store.get_user(username))
    if user is None:
        return None
    return {
        "id": user.id,
        "username": user.username,
        "password": user.password,
        "rol": user.rol,
        "active": user.active,
    }


def _token_matches(stored: str, token_type: str, presented: str) -> bool:
    from nflow.passwords import is_token_hash, verify_token

    if is_token_hash(stored):
        prefix = f"{token_type} " if token_type else ""
        if not presented.startswith(prefix):
            return False
        return verify_token(stored, presented[len(prefix) :])
    expected = f"{token_type} {stored}" if token_type else stored
    return hmac.compare_digest(expected.encode(), presented.encode())


@users.function("validate_token")
def validate_token(ctx: RunContext, name: object) -> bool:
    if not isinstance(name, str):
        return False
    now = time.time()
    for row in _store_call(ctx, "get_tokens", ctx.services.store.get_tokens(name)):
        if not row.active:
            continue
        presented = ctx.request.header(row.header or "Authorization")
        if not presented:
            continue
        if row.expired and now > row.expired:
            continue
        if _token_matches(row.token, row.token_type, presented):
            return True
    return False


@users.function("get_token")
def get_token(ctx: RunContext, name: object) -> list[dict[str, Any]] | None:
    if not isinstance(name, str):
        return None
    rows = _store_call(ctx, "get_tokens", ctx.services.store.get_tokens(name))
    if not rows:
        return None
    return [
        {
            "id": r.id,
            "name": r.name,
            "token": r.token,
            "start": r.start.isoformat() if r.start else None,
            "expired": r.expired,
            "active": r.active,
            "header": r.header,
            "tokenType": r.token_type,
        }
        for r in rows
    ]


def _hash(algo: str) -> Any:
    def digest(ctx: RunContext, text: object) -> str:
        return hashlib.new(algo, str(text).encode("utf-8")).hexdigest()

    return digest


users.register("calcular_sha512_256", _hash("sha512_256"))
users.register("calcular_sha512_224", _hash("sha512_224"))
users.register("calcular_sha512", _hash("sha512"))
