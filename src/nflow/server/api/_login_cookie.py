"""The studio login cookie: who logged in, until when, sealed with the server's key.

The value is ``<payload>.<mac>``, both base64url: the payload is JSON ``{"u": user,
"s": session id, "e": expiry (unix seconds)}`` and the MAC an HMAC-SHA256 of it under a key
derived from the runtime's signing key, which every worker of a server shares. Logging out
revokes the session id in the store, so a copied cookie stops working too.
"""

from __future__ import annotations

__all__ = ["COOKIE", "LoginTicket", "clear_cookie", "seal", "set_cookie", "unseal"]

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

COOKIE = "nflow_studio"
_PATH = "/_nflow"
_CONTEXT = b"nflow studio login v1"


@dataclass(frozen=True, slots=True)
class LoginTicket:
    user: str
    sid: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: bytes) -> bytes:
    derived = hmac.new(key.encode(), _CONTEXT, hashlib.sha256).digest()
    return hmac.new(derived, payload, hashlib.sha256).digest()


def seal(key: str, user: str, max_age: int) -> tuple[str, LoginTicket]:
    """A new login of ``user``: the cookie value and what it says."""
    ticket = LoginTicket(user, secrets.token_urlsafe(18), int(time.time()) + max_age)
    payload = orjson.dumps({"u": ticket.user, "s": ticket.sid, "e": ticket.expires})
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}", ticket


def unseal(key: str, value: str) -> LoginTicket | None:
    """What a cookie value says, or None when it is forged, damaged or expired."""
    text, _, mac = value.partition(".")
    try:
        payload = _unb64(text)
        given = _unb64(mac)
    except (ValueError, UnicodeEncodeError):
        return None
    if not hmac.compare_digest(given, _mac(key, payload)):
        return None
    try:
        data = orjson.loads(payload)
        ticket = LoginTicket(str(data["u"]), str(data["s"]), int(data["e"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return ticket if ticket.expires > time.time() else None


def set_cookie(value: str, max_age: int, *, secure: bool) -> str:
    """The ``Set-Cookie`` value: never readable by scripts, never sent cross-site."""
    flags = f"; Path={_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}{flags}{'; Secure' if secure else ''}"


def clear_cookie(*, secure: bool) -> str:
    return set_cookie("", 0, secure=secure)
