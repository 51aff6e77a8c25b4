"""The mail plugin against a local aiosmtpd server that records what it receives."""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from plugin_support import Cert, PluginRuntime

from nflow.plugins._mail import wait_background_mail

FROM = "robot@example.com"
PASSWORD = "pw-123"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: bytes | None
    tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler: refuses ``nobody@`` recipients, keeps every accepted message."""

    messages: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.messages.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                parsed,
                login,
                session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == FROM.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpPeer:
    port: int
    recorder: Recorder

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[Callable[..., SmtpPeer]]:
    controllers: list[Controller] = []

    def factory(**kwargs: Any) -> SmtpPeer:
        recorder = Recorder()
        port = free_port()
        controller = Controller(
            recorder, hostname="127.0.0.1", port=port, ready_timeout=5.0, **kwargs
        )
        controller.start()
        controllers.append(controller)
        return SmtpPeer(port, recorder)

    yield factory
    for controller in controllers:
        controller.stop()


# mail_config servers are held to the HTTP address policy; the test server is on loopback.
LOOPBACK_ALLOWED = '[http]\nallowed_hosts = ["127.0.0.1"]\n'


@pytest.fixture
def rt(plugin_rt: Callable[..., PluginRuntime]) -> PluginRuntime:
    return plugin_rt(LOOPBACK_ALLOWED)


def send(config: str, call: str) -> str:
    """A script that runs ``config`` then ``call`` and reports the result or the error."""
    return f"""function main(){{
  {config}
  try {{ var r = {call}; c.JSON(200, {{ok: r}}) }}
  catch (e) {{ c.JSON(200, {{error: e.message}}) }}
}}"""


def configured(port: int, password: str = "") -> str:
    return f'mail_config("127.0.0.1", {port}, "{FROM}", "{password}");'


def test_plain_text_mail(rt: PluginRuntime, smtp: Callable[..., SmtpPeer]) -> None:
    peer = smtp()
    call = 'send_mail("ana@example.com, Bob <bob@example.com>", "Hello ñandú", "Plain body", "text", [])'
    assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    [got] = peer.messages
    assert got.mail_from == FROM
    assert got.rcpt_tos == ["ana@example.com", "bob@example.com"]
    message = got.message
    assert message["Subject"] == "Hello ñandú"
    assert message["From"] == FROM
    assert message["To"] == "ana@example.com, bob@example.com"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Plain body"
    assert got.login is None


def test_html_with_attachments(rt: PluginRuntime, smtp: Callable[..., SmtpPeer]) -> None:
    peer = smtp()
    png = base64.b64encode(PNG).decode()
    call = f"""send_mail(["ana@example.com"], "Report", "<h1>Hi</h1><p>see files</p>", "html", [
      {{filename: "r.csv", content: "a,b\\n1,2\\n", content_type: "text/csv"}},
      {{filename: "../../dot.png", content: "{png}", content_type: "image/png"}},
      {{filename: "notes.bin", content: "plain words", content_type: "application/octet-stream", encoding: "text"}},
    ])"""
    assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    [got] = peer.messages
    message = got.message
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(preferencelist=("html",))
    assert body is not None and body.get_content_type() == "text/html"
    assert body.get_content().strip() == "<h1>Hi</h1><p>see files</p>"
    files = {
        part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    }
    assert files == {
        "r.csv": ("text/csv", b"a,b\n1,2\n"),
        "dot.png": ("image/png", PNG),  # a name, never a path
        "notes.bin": ("application/octet-stream", b"plain words"),
    }


def test_login_on_a_loopback_server(rt: PluginRuntime, smtp: Callable[..., SmtpPeer]) -> None:
    # Like Go's PlainAuth, a password may go in clear text only to a loopback server.
    peer = smtp(authenticator=authenticator, auth_require_tls=False)
    call = 'send_mail("ana@example.com", "s", "m", "text", null)'
    assert rt.run(send(configured(peer.port, PASSWORD), call)) == {"ok": True}
    assert peer.messages[0].login == FROM.encode()
    out = rt.run(send(configured(peer.port, "wrong"), call))
    assert out["error"].startswith(f"send_mail: 127.0.0.1:{peer.port} refused the login (535")
    assert "wrong" not in out["error"]
    assert len(peer.messages) == 1


def test_starttls_then_login(
    rt: PluginRuntime, smtp: Callable[..., SmtpPeer], self_signed: Cert
) -> None:
    peer = smtp(
        authenticator=authenticator,
        tls_context=self_signed.server_context(),
        require_starttls=True,
    )
    call = 'send_mail("ana@example.com", "over tls", "m", "text")'
    # Certificates are verified: the self-signed one fails until its CA is trusted.
    out = rt.run(send(configured(peer.port, PASSWORD), call))
    assert "CERTIFICATE_VERIFY_FAILED" in out["error"] or "certificate verify" in out["error"]
    assert peer.messages == []
    rt.reconfigure(LOOPBACK_ALLOWED + f'[mail]\ncafile = "{self_signed.cert}"\n')
    assert rt.run(send(configured(peer.port, PASSWORD), call)) == {"ok": True}
    [got] = peer.messages
    assert got.tls and got.login == FROM.encode()


def test_implicit_tls_from_the_config_section(
    plugin_rt: Callable[..., PluginRuntime], smtp: Callable[..., SmtpPeer], self_signed: Cert
) -> None:
    peer = smtp(ssl_context=self_signed.server_context())
    rt = plugin_rt(
        f'[mail]\nsmtp = "127.0.0.1"\nport = {peer.port}\nfrom = "{FROM}"\ntls = true\n'
        f'cafile = "{self_signed.cert}"\n'
    )
    out = rt.run(send("", 'send_mail("ana@example.com", "from config", "m", "text", [])'))
    assert out == {"ok": True}
    assert peer.messages[0].message["Subject"] == "from config"


def test_incomplete_config_disables_mail_loudly(rt: PluginRuntime) -> None:
    out = rt.run(send("", 'send_mail("ana@example.com", "s", "m", "text", [])'))
    assert out["error"].startswith("mail disabled: smtp and from not set")
    out = rt.run(
        send('mail_config("", 25, "x@example.com", "");', 'send_mail("a@example.com", "s", "m")')
    )
    assert out["error"].startswith("mail disabled: smtp not set")


def test_mail_config_lasts_for_one_run(rt: PluginRuntime, smtp: Callable[..., SmtpPeer]) -> None:
    peer = smtp()
    call = 'send_mail("ana@example.com", "s", "m", "text", [])'
    assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    out = rt.run(send("", call))
    assert out["error"].startswith("mail disabled")
    assert len(peer.messages) == 1


def test_go_style_swapped_call_still_means_html(
    rt: PluginRuntime, smtp: Callable[..., SmtpPeer]
) -> None:
    peer = smtp()
    call = 'send_mail("ana@example.com", "legacy", "<b>bold</b>", "", "html")'
    assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    assert peer.messages[0].message.get_content_type() == "text/html"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            'send_mail("a@example.com", "s", "m", "text", "/etc/passwd")',
            "send_mail: attach must be a list of {filename, content, content_type}; file paths are not read",
        ),
        (
            'send_mail("a@example.com", "s", "m", "text", [{filename: "x.png", content: "%%%"}])',
            "send_mail: attachment 1 (x.png): content is not valid base64",
        ),
        (
            'send_mail("a@example.com", "s", "m", "text", [{content: "abc"}])',
            "send_mail: attachment 1: filename is required",
        ),
        (
            'send_mail("a@example.com", "s", "m", "pdf", [])',
            'send_mail: format must be "html" or "text"',
        ),
        (
            'send_mail("a@example.com", "s\\r\\nBcc: eve@example.com", "m")',
            "send_mail: Header values may not contain",
        ),
        ('send_mail("", "s", "m")', "send_mail: no recipient"),
        ('send_mail({}, "s", "m")', "send_mail: to must be an address"),
    ],
)
def test_bad_arguments_throw(
    rt: PluginRuntime, smtp: Callable[..., SmtpPeer], call: str, error: str
) -> None:
    peer = smtp()
    out = rt.run(send(configured(peer.port), call))
    assert out["error"].startswith(error), out
    assert peer.messages == []


def test_rejected_recipient_is_an_error(rt: PluginRuntime, smtp: Callable[..., SmtpPeer]) -> None:
    peer = smtp()
    out = rt.run(send(configured(peer.port), 'send_mail("nobody@example.com", "s", "m")'))
    assert out["error"] == (
        f"send_mail: 127.0.0.1:{peer.port} refused every recipient: "
        "nobody@example.com (550 5.1.1 no such user)"
    )


def test_partly_refused_recipients_are_logged(
    rt: PluginRuntime, smtp: Callable[..., SmtpPeer], caplog: pytest.LogCaptureFixture
) -> None:
    peer = smtp()
    call = 'send_mail(["ana@example.com", "nobody@example.com"], "s", "m")'
    with caplog.at_level(logging.WARNING, logger="nflow.plugins.mail"):
        assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    assert peer.messages[0].rcpt_tos == ["ana@example.com"]
    assert any(
        "nobody@example.com (550 5.1.1 no such user)" in r.getMessage() for r in caplog.records
    )


def test_send_mail_async(
    rt: PluginRuntime, smtp: Callable[..., SmtpPeer], caplog: pytest.LogCaptureFixture
) -> None:
    peer = smtp()
    call = 'send_mail_async("ana@example.com", "later", "<i>x</i>", "html", [])'
    assert rt.run(send(configured(peer.port), call)) == {"ok": True}
    assert wait_background_mail(timeout=5)
    deadline = time.monotonic() + 5
    while not peer.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    [got] = peer.messages
    assert got.message["Subject"] == "later"
    # Arguments are checked before returning; delivery failures are logged.
    out = rt.run(send(configured(peer.port), 'send_mail_async("a@example.com", "s", "m", "doc")'))
    assert out["error"].startswith('send_mail: format must be "html" or "text"')
    with caplog.at_level(logging.ERROR, logger="nflow.plugins.mail"):
        call = 'send_mail_async("nobody@example.com", "s", "m")'
        assert rt.run(send(configured(peer.port), call)) == {"ok": True}
        assert wait_background_mail(timeout=5)
    assert any(
        "send_mail_async to ['nobody@example.com'] failed" in r.getMessage()
        and "nobody@example.com (550 5.1.1 no such user)" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::ffff:127.0.0.1"])
def test_mail_config_is_held_to_the_http_address_policy(
    plugin_rt: Callable[..., PluginRuntime], smtp: Callable[..., SmtpPeer], host: str
) -> None:
    peer = smtp()
    call = 'send_mail("a@example.com", "s", "m")'
    script = send(f'mail_config("{host}", {peer.port}, "{FROM}", "");', call)
    out = plugin_rt().run(script)
    assert out["error"].startswith(f"send_mail: {host}:{peer.port} refused: "), out
    assert "is a loopback address" in out["error"]
    assert "need [http] allow_private or allowed_hosts" in out["error"]
    assert peer.messages == []
    # The operator's policy lets it through, by address or for every private address.
    if host == "127.0.0.1":
        assert plugin_rt(LOOPBACK_ALLOWED).run(script) == {"ok": True}
    assert plugin_rt("[http]\nallow_private = true\n").run(script) == {"ok": True}
    assert len(peer.messages) == (2 if host == "127.0.0.1" else 1)


def test_private_address_refused_before_connecting(plugin_rt: Callable[..., PluginRuntime]) -> None:
    # 10.255.255.1 is never dialled: the refusal is immediate, not a connect timeout.
    out = plugin_rt().run(
        send('mail_config("10.255.255.1", 25, "a@b.c", "");', 'send_mail("x@y.z", "s", "m")')
    )
    assert out["error"] == (
        "send_mail: 10.255.255.1:25 refused: 10.255.255.1 is a private address; private, "
        "loopback, link-local, multicast and unspecified addresses need [http] allow_private "
        "or allowed_hosts"
    )
