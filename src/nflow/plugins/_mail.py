"""The mail plugin: ``mail_config``, ``send_mail``, ``send_mail_async``.

What changed from the Go runtime, and why (also in docs/compat.md, Plugins):

* ``send_mail(to, subject, msg, format, attach)`` takes its arguments in the documented order.
  Go swapped ``format`` and ``attach`` internally, so ``("html", "")`` tried to attach a file
  named ``html`` and failed silently. The one unambiguous legacy call that relied on the swap,
  a format name in the fifth position and nothing in the fourth, is still understood.
* ``attach`` is a list of ``{filename, content, content_type, encoding}`` objects carrying
  the data itself (base64 or text). A string is never taken as a path: reading server files
  on a script's behalf would let any playbook mail out the configuration or keys.
* ``mail_config`` applies to the run that called it, not to the whole process: with several
  playbooks (or tenants) in one worker, one must not send through another's account. Without
  it the ``[mail]`` section of the configuration is used (Go ignored that section).
* A server named by ``mail_config`` is held to the HTTP plugin's address policy (``[http]
  allow_private``, ``allowed_hosts``): loopback, private, link-local and metadata addresses
  are refused, checked on the address the socket connects to. The ``[mail]`` section is the
  operator's and is trusted.
* Incomplete configuration throws ``mail disabled: ...`` instead of logging and returning.
* TLS: implicit TLS (``[mail] tls`` or port 465), required STARTTLS (``[mail] starttls``), or
  else STARTTLS whenever the server offers it, as Go's ``smtp.SendMail`` did. As with Go's
  ``PlainAuth``, the password is only sent over an encrypted connection or to a loopback
  server; certificates are always verified (``MailPolicy.cafile`` adds a private CA).
"""

from __future__ import annotations

__all__ = [
    "MailFailure",
    "MailPolicy",
    "MailSettings",
    "mail",
    "wait_background_mail",
]

import asyncio
import base64
import binascii
import concurrent.futures
import ipaddress
import logging
import mimetypes
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import getaddresses
from functools import cache
from typing import TYPE_CHECKING

from nflow._io import IoLoop
from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.plugins._http import HttpFailure, HttpPolicy, allowed_addresses

if TYPE_CHECKING:
    from email.message import EmailMessage

MIB = 1024 * 1024
log = logging.getLogger("nflow.plugins.mail")

mail = HostTable()


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """Limits of the mail plugin; ``cafile`` trusts an extra CA (a private mail relay)."""

    timeout_seconds: float = 30.0
    max_message_bytes: int = 25 * MIB
    max_recipients: int = 100
    cafile: str | None = None

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("MailPolicy.timeout_seconds must be greater than 0")
        if self.max_message_bytes < 1024:
            raise ValueError("MailPolicy.max_message_bytes must be at least 1024")
        if self.max_recipients < 1:
            raise ValueError("MailPolicy.max_recipients must be at least 1")


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Where and as whom to send. ``starttls``: True required, False never, None if offered."""

    smtp: str
    port: int
    from_: str
    password: str
    tls: bool = False
    starttls: bool | None = None
    # Chosen by a script (mail_config): the server's address must pass the HTTP policy.
    script_chosen: bool = False

    def problem(self) -> str | None:
        missing = [name for name, value in (("smtp", self.smtp), ("from", self.from_)) if not value]
        if missing:
            return (
                f"mail disabled: {' and '.join(missing)} not set (call mail_config(smtp, port, "
                "from, password) or set them in the [mail] section of the configuration)"
            )
        return None


class MailFailure(Exception):
    """Sending failed; the message says why (never containing the password)."""


# --------------------------------------------------------------------------------------------
# Settings of the current run


_STATE = "mail"  # mail_config's settings in the run's plugin state


def _remember(ctx: RunContext, settings: MailSettings) -> None:
    if ctx.plugin_state is None:
        ctx.plugin_state = {}
    ctx.plugin_state[_STATE] = settings


def _settings(ctx: RunContext) -> MailSettings:
    chosen = ctx.plugin_state.get(_STATE) if ctx.plugin_state is not None else None
    if isinstance(chosen, MailSettings):
        return chosen
    cfg = ctx.services.config.mail
    return MailSettings(
        smtp=str(cfg.smtp),
        port=int(cfg.port),
        from_=str(cfg.from_),
        password=str(cfg.password),
        tls=bool(cfg.tls),
        starttls=True if cfg.starttls else None,
    )


def _port(value: object) -> int:
    if value is None or value == "":
        return 25  # Go's default
    if isinstance(value, bool):
        raise HostError("mail_config: port must be a number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise HostError(f"mail_config: port must be between 1 and 65535, got {value!r}")
    return value


def _string(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HostError(f"mail_config: {name} must be a string")
    return value.strip() if name != "password" else value


@mail.function("mail_config")
def mail_config(
    ctx: RunContext, smtp: object, port: object, from_: object, password: object = ""
) -> bool:
    """Set the SMTP server for the rest of this run. Port 465 means implicit TLS."""
    number = _port(port)
    settings = MailSettings(
        smtp=_string("smtp", smtp),
        port=number,
        from_=_string("from", from_),
        password=_string("password", password),
        tls=number == 465,
        starttls=None,
        script_chosen=True,
    )
    _remember(ctx, settings)
    return True


# --------------------------------------------------------------------------------------------
# Building the message


_FORMATS = {"html": "html", "text": "plain", "plain": "plain", "": "plain"}
_TEXTUAL = ("application/json", "application/xml", "application/javascript")


def _recipients(value: object, limit: int) -> list[str]:
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise HostError("send_mail: to must be an address, a comma-separated list or an array")
    found = [addr for _, addr in getaddresses(items) if addr]
    if not found:
        raise HostError("send_mail: no recipient")
    for addr in found:
        if "@" not in addr or any(c in addr for c in "\r\n\0 "):
            raise HostError(f"send_mail: invalid recipient {addr!r}")
    if len(found) > limit:
        raise HostError(f"send_mail: more than {limit} recipients")
    return found


def _attachment(index: int, item: object) -> tuple[str, str, bytes]:
    where = f"send_mail: attachment {index + 1}"
    if not isinstance(item, Mapping):
        raise HostError(f"{where} must be an object {{filename, content, content_type}}")
    filename = item.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise HostError(f"{where}: filename is required")
    filename = filename.replace("\\", "/").rsplit("/", 1)[-1]  # a name, never a path
    content = item.get("content", "")
    if not isinstance(content, str):
        raise HostError(f"{where} ({filename}): content must be a string (text or base64)")
    content_type = item.get("content_type") or item.get("contentType")
    if content_type is None:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if not isinstance(content_type, str) or content_type.count("/") != 1:
        raise HostError(f"{where} ({filename}): content_type must look like type/subtype")
    content_type = content_type.split(";", 1)[0].strip().lower()
    encoding = item.get("encoding")
    if encoding is None:
        # Text types carry text unless told otherwise; anything else must be base64.
        textual = content_type.startswith("text/") or content_type in _TEXTUAL
        encoding = "text" if textual else "base64"
    if encoding == "text":
        data = content.encode("utf-8")
    elif encoding == "base64":
        try:
            data = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise HostError(
                f"{where} ({filename}): content is not valid base64 "
                '(set encoding: "text" to send it as text)'
            ) from None
    else:
        raise HostError(f'{where} ({filename}): encoding must be "base64" or "text"')
    return filename, content_type, data


def _attachments(value: object) -> list[tuple[str, str, bytes]]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        raise HostError(
            "send_mail: attach must be a list of {filename, content, content_type}; "
            "file paths are not read"
        )
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise HostError("send_mail: attach must be a list of {filename, content, content_type}")
    return [_attachment(i, item) for i, item in enumerate(items)]


def _text_arg(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise HostError(f"send_mail: {name} must be a string")


def build_message(
    settings: MailSettings,
    to: object,
    subject: object,
    msg: object,
    format: object,
    attach: object,
    policy: MailPolicy,
) -> tuple[EmailMessage, list[str]]:
    """The MIME message and its envelope recipients; raises :class:`HostError` on bad input."""
    if (format in ("", None, [])) and isinstance(attach, str) and attach.lower() in _FORMATS:
        format, attach = attach, None  # a call written for the Go runtime's swapped order
    if not isinstance(format, str) or format.lower() not in _FORMATS:
        raise HostError(f'send_mail: format must be "html" or "text", got {format!r}')
    # The MIME classes (and aiosmtplib, in deliver) are loaded by the first mail a worker
    # sends, not by every worker.
    from email.message import EmailMessage
    from email.policy import SMTP as SMTP_POLICY
    from email.utils import formatdate, make_msgid

    recipients = _recipients(to, policy.max_recipients)
    files = _attachments(attach)
    message = EmailMessage(policy=SMTP_POLICY)
    try:
        message["From"] = settings.from_
        message["To"] = ", ".join(recipients)
        message["Subject"] = _text_arg("subject", subject)
        message["Date"] = formatdate(localtime=True)
        domain = settings.from_.rpartition("@")[2].strip("> ") or None
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(_text_arg("msg", msg), subtype=_FORMATS[format.lower()])
        for filename, content_type, data in files:
            maintype, subtype = content_type.split("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    except ValueError as exc:  # a line break in a header, a malformed address...
        raise HostError(f"send_mail: {exc}") from None
    size = len(message.as_bytes())
    if size > policy.max_message_bytes:
        raise HostError(
            f"send_mail: the message is {size} bytes, more than {policy.max_message_bytes}"
        )
    return message, recipients


# --------------------------------------------------------------------------------------------
# Sending


@cache
def _tls_context(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _checked_socket(host: str, port: int, policy: HttpPolicy) -> socket.socket:
    """A socket connected to an address of ``host`` that the HTTP address policy allows."""
    addresses = await allowed_addresses(host, port, policy)
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, port))
            return sock
        except OSError as exc:  # try the next address, as dialers do
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise last


async def deliver(
    settings: MailSettings,
    message: EmailMessage,
    recipients: list[str],
    *,
    timeout: float,
    cafile: str | None = None,
    addresses: HttpPolicy | None = None,
) -> None:
    """Connect, secure, authenticate and send; raises :class:`MailFailure`.

    A server a script chose is held to ``addresses``, the run's HTTP address policy.
    """
    import aiosmtplib

    where = f"{settings.smtp}:{settings.port}"
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(timeout):
            if settings.script_chosen:
                sock = await _checked_socket(
                    settings.smtp, settings.port, addresses or HttpPolicy()
                )
            client = aiosmtplib.SMTP(
                hostname=settings.smtp,  # still the name: TLS verifies the certificate by it
                port=None if sock is not None else settings.port,
                sock=sock,
                use_tls=settings.tls,
                start_tls=False if settings.tls else settings.starttls,
                timeout=timeout,
                tls_context=_tls_context(cafile),
            )
            async with client:
                if settings.password:
                    encrypted = client.get_transport_info("sslcontext") is not None
                    if not encrypted and not _is_loopback(settings.smtp):
                        raise MailFailure(
                            f"{where} offers no TLS: refusing to send the password "
                            "unencrypted (use port 465 or a server with STARTTLS)"
                        )
                    await client.login(settings.from_, settings.password)
                errors, _ = await client.send_message(
                    message, sender=settings.from_, recipients=recipients
                )
    except MailFailure:
        raise
    except HttpFailure as exc:
        raise MailFailure(f"{where} {exc}") from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
        raise MailFailure(f"{where} refused every recipient: {refused}") from None
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise MailFailure(f"{where} refused the login ({exc.code} {exc.message})") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise MailFailure(f"{where} answered {exc.code} {exc.message}") from None
    except (TimeoutError, aiosmtplib.SMTPTimeoutError):
        raise MailFailure(f"{where} did not answer in {timeout:.3g} s") from None
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise MailFailure(f"{where}: {exc}") from None
    finally:
        if sock is not None:
            sock.close()  # a no-op once the client's transport has closed it
    if errors:
        # The others got it, so this is not a failure; the refusals still deserve a trace.
        refused = ", ".join(f"{addr} ({r.code} {r.message})" for addr, r in errors.items())
        log.warning("mail from %s accepted, but %s refused: %s", settings.from_, where, refused)


def _prepare(
    ctx: RunContext, to: object, subject: object, msg: object, format: object, attach: object
) -> tuple[MailSettings, EmailMessage, list[str], MailPolicy]:
    settings = _settings(ctx)
    problem = settings.problem()
    if problem is not None:
        raise HostError(problem)
    policy = ctx.services.policies.get(MailPolicy)
    message, recipients = build_message(settings, to, subject, msg, format, attach, policy)
    durable = ctx.durable
    if durable is not None:
        # A retried node sends the same Message-ID: receivers and relays that deduplicate
        # on it deliver the mail once.
        domain = settings.from_.rpartition("@")[2].strip("> ") or "nflow.invalid"
        key = durable.effect_key().replace(":", ".")
        del message["Message-ID"]
        message["Message-ID"] = f"<{key}@{domain}>"
    return settings, message, recipients, policy


@mail.function("send_mail")
def send_mail(
    ctx: RunContext,
    to: object,
    subject: object,
    msg: object,
    format: object = "text",
    attach: object = None,
) -> bool:
    """Send now and wait for the server to accept the message (true), or throw."""
    settings, message, recipients, policy = _prepare(ctx, to, subject, msg, format, attach)
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError("send_mail: no time left in this run")
    timeout = min(policy.timeout_seconds, remaining)
    coro = deliver(
        settings,
        message,
        recipients,
        timeout=timeout,
        cafile=policy.cafile,
        addresses=ctx.services.policies.get(HttpPolicy),
    )
    try:
        ctx.services.io.call(coro, timeout=timeout + 1.0)
    except MailFailure as exc:
        raise HostError(f"send_mail: {exc}") from None
    except TimeoutError:
        raise HostError(f"send_mail: no answer in {timeout:.3g} s") from None
    return True


# Mail still being sent in the background: its I/O loop, and an event set once the outcome
# has been logged (the future itself completes before its callbacks have run).
_background: dict[concurrent.futures.Future[None], tuple[IoLoop, threading.Event]] = {}
_background_lock = threading.Lock()


@mail.function("send_mail_async")
def send_mail_async(
    ctx: RunContext,
    to: object,
    subject: object,
    msg: object,
    format: object = "text",
    attach: object = None,
) -> bool:
    """Check the arguments now (so mistakes throw), send in the background, log failures."""
    settings, message, recipients, policy = _prepare(ctx, to, subject, msg, format, attach)
    io: IoLoop = ctx.services.io
    wid = ctx.wid
    finished = threading.Event()
    future = io.submit(
        deliver(
            settings,
            message,
            recipients,
            timeout=policy.timeout_seconds,
            cafile=policy.cafile,
            addresses=ctx.services.policies.get(HttpPolicy),
        )
    )
    with _background_lock:
        _background[future] = (io, finished)

    def done(f: concurrent.futures.Future[None]) -> None:
        try:
            if f.cancelled():
                log.error("send_mail_async to %s cancelled", recipients, extra={"wid": wid})
            elif (exc := f.exception()) is not None:
                log.error("send_mail_async to %s failed: %s", recipients, exc, extra={"wid": wid})
        finally:
            with _background_lock:
                _background.pop(f, None)
            finished.set()

    future.add_done_callback(done)
    return True


def wait_background_mail(io: IoLoop | None = None, timeout: float | None = None) -> bool:
    """Wait for mail sent with ``send_mail_async`` (on ``io``, or all); False if some remain."""
    with _background_lock:
        pending = [event for owner, event in _background.values() if io is None or owner is io]
    deadline = None if timeout is None else time.monotonic() + timeout
    for event in pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not event.wait(left):
            return False
    return True
