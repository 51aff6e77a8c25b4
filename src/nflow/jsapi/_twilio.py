"""Twilio Verify (spec §3.7): ``send_otp`` and ``check_otp``.

With ``[twilio] enable = false`` both return true without any network call, as the Go
runtime did, so OTP flows can be developed and tested without an account.
"""

from __future__ import annotations

from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable

twilio = HostTable()


def _enabled(ctx: RunContext) -> bool:
    return bool(ctx.services.config.twilio.enable)


@twilio.function("send_otp")
def send_otp(ctx: RunContext, to: object) -> bool:
    if not _enabled(ctx):
        return True
    raise HostError("Twilio Verify is enabled but this build has no Twilio client yet")


@twilio.function("check_otp")
def check_otp(ctx: RunContext, to: object, code: object) -> bool:
    if not _enabled(ctx):
        return True
    raise HostError("Twilio Verify is enabled but this build has no Twilio client yet")
