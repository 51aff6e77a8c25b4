"""Twilio Verify: ``send_otp`` and ``check_otp``.

With ``[twilio] enable = false`` both return true without any network call, as the Go
runtime did, so OTP flows can be developed and tested without an account.

Enabled, they call the Verify v2 REST API at ``[twilio] base_url``: ``send_otp(to)`` posts
``To`` and ``Channel=sms`` to ``/v2/Services/<verify_service_id>/Verifications`` and returns
true once Twilio reports the code as ``pending`` (sent); ``check_otp(to, code)`` posts ``To``
and ``Code`` to ``…/VerificationCheck`` and returns true only for ``approved``. A wrong code is
false; so is a 404, Twilio's answer when no verification is pending (expired, already used).
Transport failures and other error answers throw with Twilio's message. The credentials are
the operator's (basic auth ``account_sid:auth_token``) and never reach the script.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.plugins._http import HttpFailure, HttpPolicy, fetch

twilio = HostTable()

_MAX_ANSWER_BYTES = 1024 * 1024


def _enabled(ctx: RunContext) -> bool:
    return bool(ctx.services.config.twilio.enable)


def _phone(name: str, to: object) -> str:
    if not isinstance(to, str) or not to.strip():
        raise HostError(f"{name}: the phone number must be a non-empty string such as +59899123456")
    return to.strip()


def _verify(ctx: RunContext, name: str, endpoint: str, form: dict[str, str]) -> tuple[int, Any]:
    """POST ``form`` to the Verify service's ``endpoint``: (status code, parsed JSON)."""
    cfg = ctx.services.config.twilio
    base = cfg.base_url.rstrip("/")
    url = f"{base}/v2/Services/{quote(cfg.verify_service_id, safe='')}/{endpoint}"
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError(f"{name}: no time left in this run")
    timeout = min(cfg.timeout_seconds, remaining)
    credentials = base64.b64encode(f"{cfg.account_sid}:{cfg.auth_token}".encode()).decode()
    headers = [
        ("Authorization", f"Basic {credentials}"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    ]
    coro = fetch(
        "POST",
        url,
        content=urlencode(form).encode(),
        headers=headers,
        # The operator's endpoint, not a script's: the address policy is for script URLs.
        policy=HttpPolicy(timeout_seconds=timeout, max_response_bytes=_MAX_ANSWER_BYTES),
        timeout=timeout,
        guarded=False,
        max_redirects=0,
    )
    try:
        fetched = ctx.services.io.call(coro, timeout=timeout + 1.0)
    except HttpFailure as exc:
        raise HostError(f"{name}: Twilio Verify at {base}: {exc}") from None
    except TimeoutError:
        raise HostError(
            f"{name}: Twilio Verify at {base}: timed out after {timeout:.3g} s"
        ) from None
    try:
        data = orjson.loads(fetched.body) if fetched.body else {}
    except orjson.JSONDecodeError:
        data = {}
    return fetched.status_code, data


def _failure(name: str, status: int, data: Any) -> HostError:
    message = data.get("message") if isinstance(data, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    detail = f"{message} (Twilio error {code})" if message and code else (message or "no details")
    return HostError(f"{name}: Twilio Verify answered HTTP {status}: {detail}")


@twilio.function("send_otp")
def send_otp(ctx: RunContext, to: object) -> bool:
    """Send a code by SMS to ``to``; true once Twilio has it pending."""
    if not _enabled(ctx):
        return True
    phone = _phone("send_otp", to)
    status, data = _verify(ctx, "send_otp", "Verifications", {"To": phone, "Channel": "sms"})
    if not 200 <= status < 300:
        raise _failure("send_otp", status, data)
    return isinstance(data, dict) and data.get("status") == "pending"


@twilio.function("check_otp")
def check_otp(ctx: RunContext, to: object, code: object) -> bool:
    """True when ``code`` is the one sent to ``to``; false for a wrong or expired code."""
    if not _enabled(ctx):
        return True
    phone = _phone("check_otp", to)
    if isinstance(code, bool) or not isinstance(code, str | int | float) or code == "":
        raise HostError('check_otp: the code must be a string such as "123456"')
    text = str(int(code)) if isinstance(code, float) and code.is_integer() else str(code)
    status, data = _verify(
        ctx, "check_otp", "VerificationCheck", {"To": phone, "Code": text.strip()}
    )
    if status == 404:  # no pending verification for this number: expired or already approved
        return False
    if not 200 <= status < 300:
        raise _failure("check_otp", status, data)
    return isinstance(data, dict) and data.get("status") == "approved"
