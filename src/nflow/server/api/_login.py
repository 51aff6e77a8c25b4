"""Studio logins: ``POST /login`` with an nflow user (the users table the JS ``user_*``
functions use) whose role is in ``[studio] roles``, ``POST /logout`` and ``GET /me``.

After ``MAX_FAILURES`` failed logins from one address within ``FAILURE_WINDOW`` seconds, that
address gets 429 until the oldest failure is out of the window (counted per worker process).

A login sets the ``nflow_studio`` cookie (HttpOnly, SameSite=Strict, Path=/_nflow, Secure
over https or with ``[session] cookie_secure``); see ``_login_cookie``. Wrong user, wrong
password, an inactive user and a role not allowed all get the same 401, so the answer tells
nothing about which users exist.
"""

from __future__ import annotations

__all__ = ["FAILURE_WINDOW", "MAX_FAILURES", "Credentials", "Me", "login", "logout", "me"]

import asyncio
import collections
import functools
import math
import time
import weakref
from typing import TYPE_CHECKING

import msgspec

from nflow._http import Response
from nflow.passwords import hash_password, verify

from ._core import ApiCall, ApiError, ok
from ._login_cookie import COOKIE, clear_cookie, seal, set_cookie, unseal

if TYPE_CHECKING:
    from nflow.runtime import Runtime

MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
_MAX_ADDRESSES = 10_000
_Failures = collections.OrderedDict[str, collections.deque[float]]
# Per runtime (a server's worker), so that tests and embedded runtimes do not share counts.
_by_runtime: weakref.WeakKeyDictionary[Runtime, _Failures] = weakref.WeakKeyDictionary()


def _failures_of(runtime: Runtime) -> _Failures:
    found = _by_runtime.get(runtime)
    if found is None:
        found = _by_runtime[runtime] = collections.OrderedDict()
    return found


def _check_throttle(failures: _Failures, address: str) -> None:
    now = time.monotonic()
    seen = failures.get(address)
    if seen is None:
        return
    while seen and seen[0] <= now - FAILURE_WINDOW:
        seen.popleft()
    if len(seen) >= MAX_FAILURES:
        wait = math.ceil(seen[0] + FAILURE_WINDOW - now)
        raise ApiError(
            429,
            f"too many failed logins from {address}: try again in {wait} s",
            {"retry-after": str(max(1, wait))},
        )


def _failed(failures: _Failures, address: str) -> None:
    seen = failures.setdefault(address, collections.deque())
    failures.move_to_end(address)
    seen.append(time.monotonic())
    while len(failures) > _MAX_ADDRESSES:  # bounded, whoever knocks
        failures.popitem(last=False)


@functools.cache
def _dummy_hash() -> str:
    """Verified when a user is unknown: an unknown name costs as long as a wrong password."""
    return hash_password("nflow studio: no such user")


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    """A studio user's name and password."""

    username: str
    password: str


class Me(msgspec.Struct):
    """Who the caller is: ``user`` for a studio login, and how the call was let in."""

    user: str | None
    auth: str


def _secure(call: ApiCall) -> bool:
    """``Secure`` over https, and behind a proxy that ends TLS when ``[session]
    cookie_secure`` says so (the request then arrives as plain http)."""
    return call.request.scheme == "https" or call.runtime.config.session.cookie_secure


def _decode(call: ApiCall) -> Credentials:
    try:
        return msgspec.json.decode(call.request.body or b"null", type=Credentials)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body: invalid JSON ({exc})") from None


async def login(call: ApiCall) -> Response:
    runtime = call.runtime
    studio = runtime.config.studio
    if not studio.login:
        raise ApiError(
            404,
            "studio logins are off ([studio] login = false): loopback clients need none, "
            "others send Authorization: Bearer <api.token>",
        )
    address = call.request.client_ip
    failures = _failures_of(runtime)
    _check_throttle(failures, address)
    given = _decode(call)
    user = await runtime.store_call(runtime.store.get_user(given.username))
    stored = user.password if user is not None else _dummy_hash()
    matches = await asyncio.to_thread(verify, stored, given.password)
    if user is None or not matches or not user.active or user.rol not in studio.roles:
        _failed(failures, address)
        raise ApiError(
            401,
            "wrong user name or password, or the user may not use the studio "
            f"(roles allowed: {', '.join(studio.roles)})",
        )
    failures.pop(address, None)
    value, _ = seal(runtime.signing_key, user.username, studio.login_max_age_seconds)
    response = ok(Me(user.username, "login"))
    secure = _secure(call)
    response.headers.append(
        ("set-cookie", set_cookie(value, studio.login_max_age_seconds, secure=secure))
    )
    return response


async def logout(call: ApiCall) -> Response:
    runtime = call.runtime
    value = call.request.cookies.get(COOKIE)
    ticket = unseal(runtime.signing_key, value) if value else None
    if ticket is not None:
        # Revoked until it would have expired: a copy of the cookie is refused too.
        await runtime.store_call(runtime.store.revoke_session(ticket.sid, expires=ticket.expires))
    response = ok(Me(None, call.caller.auth))
    response.headers.append(("set-cookie", clear_cookie(secure=_secure(call))))
    return response


async def me(call: ApiCall) -> Response:
    return ok(Me(call.caller.user, call.caller.auth))
