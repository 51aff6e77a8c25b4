"""send_otp / check_otp against a local fake of the Twilio Verify v2 REST API."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import parse_qs

from plugin_support import LocalServer, PluginRuntime, Reply, Seen, json_reply

SID, TOKEN, SERVICE = "AC0123456789", "secret-token", "VA0042"
PHONE = "+59899123456"


class FakeVerify:
    """Twilio Verify as far as nflow uses it: one code per number, checked once."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}

    def __call__(self, seen: Seen) -> Reply:
        expected_auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if seen.headers.get("authorization") != expected_auth:
            return json_reply({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        assert seen.method == "POST"
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in parse_qs(seen.body.decode(), strict_parsing=True).items()}
        to = form.get("To", "")
        if seen.path == f"/v2/Services/{SERVICE}/Verifications":
            assert set(form) == {"To", "Channel"} and form["Channel"] == "sms"
            if not to.startswith("+") or len(to) < 8:
                message = f"Invalid parameter `To`: {to}"
                return json_reply({"code": 60200, "message": message, "status": 400}, 400)
            self.pending[to] = "123456"
            return json_reply({"sid": "VE1", "to": to, "channel": "sms", "status": "pending"}, 201)
        if seen.path == f"/v2/Services/{SERVICE}/VerificationCheck":
            assert set(form) == {"To", "Code"}
            if to not in self.pending:
                return json_reply(
                    {"code": 20404, "message": "The requested resource was not found"}, 404
                )
            if form["Code"] != self.pending[to]:
                return json_reply({"to": to, "status": "pending", "valid": False})
            del self.pending[to]
            return json_reply({"to": to, "status": "approved", "valid": True})
        return json_reply({"code": 20404, "message": "no such path"}, 404)


def twilio_toml(url: str, token: str = TOKEN) -> str:
    return (
        f'[twilio]\nenable = true\naccount_sid = "{SID}"\nauth_token = "{token}"\n'
        f'verify_service_id = "{SERVICE}"\nbase_url = "{url}"\n'
    )


def test_send_and_check_against_verify(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    fake = FakeVerify()
    server = local_server(fake)
    rt = plugin_rt(twilio_toml(server.url))
    code = f"""function main(){{
  var out = {{sent: send_otp("{PHONE}")}};
  out.wrong = check_otp("{PHONE}", "000000");
  out.right = check_otp("{PHONE}", "123456");
  out.again = check_otp("{PHONE}", 123456);
  try {{ send_otp("12") }} catch (e) {{ out.bad_number = e.message }}
  try {{ send_otp("") }} catch (e) {{ out.empty = e.message }}
  c.JSON(200, out);
}}"""
    out = rt.run(code)
    assert out == {
        "sent": True,
        "wrong": False,
        "right": True,
        "again": False,  # nothing pending any more: Twilio answers 404
        "bad_number": "send_otp: Twilio Verify answered HTTP 400: Invalid parameter `To`: 12 "
        "(Twilio error 60200)",
        "empty": "send_otp: the phone number must be a non-empty string such as +59899123456",
    }
    assert [s.path.rsplit("/", 1)[1] for s in server.seen] == [
        "Verifications",
        "VerificationCheck",
        "VerificationCheck",
        "VerificationCheck",
        "Verifications",
    ]
    assert parse_qs(server.seen[0].body.decode()) == {"To": [PHONE], "Channel": ["sms"]}


def test_wrong_credentials_and_unreachable_server_throw(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    server = local_server(FakeVerify())
    rt = plugin_rt(twilio_toml(server.url, token="wrong"))
    code = f"""function main(){{
  try {{ send_otp("{PHONE}"); c.JSON(200, {{}}) }} catch (e) {{ c.JSON(200, {{error: e.message}}) }}
}}"""
    assert rt.run(code) == {
        "error": "send_otp: Twilio Verify answered HTTP 401: Authenticate (Twilio error 20003)"
    }
    server.close()
    rt = plugin_rt(twilio_toml(server.url))
    error = rt.run(code)["error"]
    assert error.startswith(f"send_otp: Twilio Verify at {server.url}: cannot connect")


def test_disabled_mode_returns_true_without_a_call(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    server = local_server(FakeVerify())
    rt = plugin_rt(f'[twilio]\nbase_url = "{server.url}"\n')
    out = rt.run('function main(){ c.JSON(200, [send_otp("+1"), check_otp("+1", "x")]) }')
    assert out == [True, True]
    assert server.seen == []
