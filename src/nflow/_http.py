"""Request and Response values shared by every layer, free of any HTTP server."""

from __future__ import annotations

__all__ = [
    "BodyLimit",
    "Request",
    "Response",
    "ResponseWriter",
    "client_host",
    "json_response",
    "parse_cookie_header",
]

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

import orjson

from nflow.golang.json import dumps as go_json


class Request:
    """One HTTP request as the engine sees it.

    Built by the server adapters (RSGI, ASGI) or by hand (``nflow run``, tests, embedding).
    Parsing of query, form and cookies is lazy: most requests never need them.
    """

    __slots__ = (
        "_cookies",
        "_form",
        "_headers",
        "_json",
        "_json_error",
        "_query",
        "body",
        "client",
        "header_items",
        "host",
        "method",
        "path",
        "query_string",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        path: str,
        *,
        query_string: str = "",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        client: str = "127.0.0.1:0",
        scheme: str = "http",
        host: str = "",
    ) -> None:
        self.method = method.upper()
        self.path = path or "/"
        self.query_string = query_string
        self.header_items: list[tuple[str, str]] = list(headers)
        self.body = body
        self.client = client
        self.scheme = scheme
        self.host = host or self.header("host")
        self._headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None
        self._form: dict[str, list[str]] | None = None
        self._cookies: dict[str, str] | None = None
        self._json: object = _UNSET
        self._json_error = ""

    @classmethod
    def from_url(cls, method: str, url: str, **kwargs: object) -> Request:
        """Build a request from ``/path?query`` (used by ``nflow run`` and tests)."""
        path, _, query = url.partition("?")
        return cls(method, path, query_string=query, **kwargs)  # type: ignore[arg-type]

    # headers -----------------------------------------------------------------
    @property
    def headers(self) -> dict[str, list[str]]:
        """Headers with Go-canonical names (``Content-Type``) and list values, as goja saw them."""
        if self._headers is None:
            out: dict[str, list[str]] = {}
            for name, value in self.header_items:
                out.setdefault(canonical_header(name), []).append(value)
            self._headers = out
        return self._headers

    def header(self, name: str) -> str:
        """First value of a header, or ``""``."""
        lname = name.lower()
        for key, value in self.header_items:
            if key.lower() == lname:
                return value
        return ""

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()

    # query and form ----------------------------------------------------------
    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            qs = self.query_string
            self._query = parse_qs(qs, keep_blank_values=True) if qs else {}
        return self._query

    @property
    def form(self) -> dict[str, list[str]]:
        """Query plus url-encoded or multipart body fields (Echo's ``FormParams``)."""
        if self._form is None:
            if not self.body and not self.query_string:
                self._form = {}
                return self._form
            merged: dict[str, list[str]] = {k: list(v) for k, v in self.query.items()}
            ctype = self.content_type
            if self.body and ctype == "application/x-www-form-urlencoded":
                text = self.body.decode("utf-8", "replace")
                for key, values in parse_qs(text, keep_blank_values=True).items():
                    merged.setdefault(key, []).extend(values)
            elif self.body and ctype == "multipart/form-data":
                for key, value in _parse_multipart(self.body, self.header("content-type")):
                    merged.setdefault(key, []).append(value)
            self._form = merged
        return self._form

    def json(self) -> object:
        """The body decoded as JSON when the content type says so, else ``None``."""
        if self._json is _UNSET:
            value: object = None
            if self.body and self.content_type in ("application/json", "text/json"):
                try:
                    value = orjson.loads(self.body)
                except orjson.JSONDecodeError as exc:
                    value = None
                    self._json_error = str(exc)
            self._json = value
        return self._json

    @property
    def json_error(self) -> str:
        """Why a body sent as JSON does not parse (``""`` when it does, or is not JSON)."""
        self.json()
        return self._json_error

    @property
    def has_cookies(self) -> bool:
        return any(name.lower() == "cookie" for name, _ in self.header_items)

    @property
    def cookies(self) -> dict[str, str]:
        """Request cookies parsed as Go's ``net/http`` does: a malformed one is skipped alone.

        The first cookie of a name wins, as ``Request.Cookie(name)`` returns the first.
        """
        if self._cookies is None:
            out: dict[str, str] = {}
            for name, value in self.header_items:
                if name.lower() == "cookie":
                    for key, text in parse_cookie_header(value):
                        out.setdefault(key, text)
            self._cookies = out
        return self._cookies

    @property
    def client_ip(self) -> str:
        return client_host(self.client)

    @property
    def real_ip(self) -> str:
        """Echo's RealIP: the first X-Forwarded-For entry, X-Real-Ip, then the peer address."""
        xff = self.header("x-forwarded-for")
        if xff:
            return xff.split(",")[0].strip()
        return self.header("x-real-ip").strip() or self.client_ip

    @property
    def uri(self) -> str:
        return self.path + ("?" + self.query_string if self.query_string else "")

    def decoded_path(self) -> str:
        return unquote(self.path)


def client_host(peer: str) -> str:
    """The address part of a peer ``host:port`` (``[v6]:port``), as ``Request.client_ip``."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]")


# RFC 7230 token characters: what Go accepts in a cookie name.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Go's validCookieValueByte for request cookies: printable ASCII (space included) except
# the double quote, semicolon and backslash.
_COOKIE_VALUE = re.compile(r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e,]*")


def parse_cookie_header(line: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of one ``Cookie`` header, as Go's ``readCookies``.

    Each ``;``-separated part stands alone: a part with an invalid name or value is dropped
    and the others are kept (``http.cookies`` gives up on the whole header instead, so one
    odd third-party cookie logged users out). Values are not unquoted beyond one pair of
    surrounding double quotes, and not decoded.
    """
    found: list[tuple[str, str]] = []
    for part in line.split(";"):
        part = part.strip(" \t\r\n")
        if not part:
            continue
        name, _, value = part.partition("=")
        name = name.strip(" \t\r\n")
        if not name or not _TOKEN_CHARS.issuperset(name):
            continue
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        if _COOKIE_VALUE.fullmatch(value) is None:
            continue
        found.append((name, value))
    return found


class _Unset:
    pass


_UNSET = _Unset()


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Text fields of a multipart body; file parts are skipped (no file API yet)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    try:
        message = BytesParser(policy=HTTP).parsebytes(head + body)
    except Exception:
        return []
    fields: list[tuple[str, str]] = []
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields.append((name, payload.decode("utf-8", "replace")))
    return fields


def canonical_header(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-forwarded-for`` → ``X-Forwarded-For``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Response:
    """A finished response: status, headers in order, body bytes."""

    __slots__ = ("app", "body", "headers", "limit", "route", "status", "version", "wid")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        # What served it, for metrics and the access log (not sent to the client), and the
        # limit its run hit ("time", "memory", ...; "" for none).
        self.app = ""
        self.route = ""
        self.wid = ""
        self.limit = ""
        self.version = ""  # the app version that answered

    def header(self, name: str) -> str:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.body[:80]!r})"


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The largest request body a route takes, and the setting that says so.

    The one rule for body sizes: the server adapters apply it while the body streams in (and
    to a declared ``Content-Length`` before reading), ``Runtime`` to a body handed over whole.
    """

    max_bytes: int
    source: str  # "limits.max_body_bytes" or "the limit of app 'name'"

    def too_large(self) -> Response:
        message = f"request body larger than {self.max_bytes} bytes ({self.source})"
        return Response(
            413,
            orjson.dumps({"code": 413, "message": message}),
            [("content-type", "application/json")],
        )


class ResponseWriter:
    """Collects what scripts write, with Echo's rules.

    The first write fixes status and content type; later writes only append their body
    (Echo warned "response already committed" and appended). Headers set before the first
    write are kept; cookies may be added at any time because they are sent at the end.
    """

    __slots__ = ("_body", "_size", "committed", "content_type", "headers", "max_bytes", "status")

    def __init__(self, *, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.status = 200
        self.committed = False
        self.content_type = ""
        self.headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self.max_bytes = max_bytes

    @property
    def size(self) -> int:
        return self._size

    def write(self, status: int, content_type: str, body: bytes) -> None:
        size = self._size + len(body)
        if size > self.max_bytes:
            raise ResponseTooLarge(self.max_bytes)
        self._size = size
        if not self.committed:
            self.committed = True
            self.status = status
            self.content_type = content_type
        self._body.append(body)

    def set_header(self, name: str, value: str) -> None:
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]
        self.headers.append((name, value))

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def get_header(self, name: str) -> str:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return ""

    def body(self) -> bytes:
        """What was written so far."""
        return b"".join(self._body)

    def restore(
        self,
        *,
        status: int,
        content_type: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        committed: bool,
    ) -> None:
        """Take back what a run had written before it was checkpointed (durable runs)."""
        self.status = status
        self.content_type = content_type
        self.headers = list(headers)
        self._body = [body] if body else []
        self._size = len(body)
        self.committed = committed

    def finish(self, extra_headers: Mapping[str, str] | None = None) -> Response:
        headers = list(self.headers)
        if self.content_type:
            headers.append(("content-type", self.content_type))
        if extra_headers:
            headers.extend(extra_headers.items())
        return Response(self.status, b"".join(self._body), headers)


class ResponseTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"response larger than {limit} bytes (limits.max_response_bytes)")
        self.limit = limit


def json_response(status: int, body: object) -> Response:
    """A JSON response, written as the Go runtime writes it."""
    return Response(status, go_json(body), [("content-type", "application/json")])
