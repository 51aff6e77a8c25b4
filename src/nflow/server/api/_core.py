"""What every management API endpoint shares: the call, the route, errors, access and audit.

Access: without ``api.token`` (and without ``[studio] login``) only loopback peers are served;
otherwise the peer must be in ``api.allowed_ips`` and send ``Authorization: Bearer <token>`` or
carry a studio login cookie (``POST /_nflow/api/login``, see ``_login``). The peer is the
connection's own address: ``X-Forwarded-For`` and ``X-Real-Ip`` are never read, since any
client can send them. Calls that change something (POST, PUT, PATCH, DELETE) also need
``Content-Type: application/json`` and an ``X-Nflow-Client`` header: a web page cannot send
either to another origin without a CORS preflight, which nflow never grants, so a browser
cannot be used to call the API behind its user's back (CSRF).

Every call is written to the ``nflow.audit`` log: method, path, peer and outcome.
"""

from __future__ import annotations

__all__ = [
    "CLIENT_HEADER",
    "PREFIX",
    "ApiCall",
    "ApiError",
    "Caller",
    "Handler",
    "Param",
    "Route",
    "audit",
    "check_access",
    "check_mutation",
    "check_peer",
    "credentials_required",
    "error_response",
    "full_api",
    "logged_in",
    "ok",
]

import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from nflow._http import Request, Response
from nflow.history import to_builtins

from ._login_cookie import COOKIE, unseal

if TYPE_CHECKING:
    from nflow.config import Config
    from nflow.runtime import Runtime

PREFIX = "/_nflow/api"
CLIENT_HEADER = "X-Nflow-Client"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

audit_log = logging.getLogger("nflow.audit")


class ApiError(Exception):
    """Answered as ``{"code": status, "message": ...}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # more members of the error object (a 409's "current")


def error_response(error: ApiError) -> Response:
    response = Response(
        error.status,
        orjson.dumps({"code": error.status, "message": error.message, **error.extra}),
        [("content-type", "application/json"), ("cache-control", "no-store")],
    )
    response.headers.extend(error.headers.items())
    return response


def ok(value: Any, status: int = 200) -> Response:
    """A JSON response of a shape (Struct), or of plain values."""
    body = orjson.dumps(to_builtins(value), default=str)
    return Response(
        status, body, [("content-type", "application/json"), ("cache-control", "no-store")]
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """How a call was let in (``loopback``, ``token``, ``login``, or ``none`` for a public
    call without credentials) and, for a login, by whom."""

    auth: str
    user: str | None = None


_BEARER = {"www-authenticate": 'Bearer realm="nflow"'}


@dataclass(slots=True)
class ApiCall:
    """One call to an endpoint: the runtime, the request, the path's variables, the caller."""

    runtime: Runtime
    request: Request
    params: dict[str, str] = field(default_factory=dict)
    caller: Caller = field(default_factory=lambda: Caller("loopback"))

    def query(self, name: str) -> str | None:
        values = self.request.query.get(name)
        return values[-1] if values else None

    def query_int(self, name: str, default: int, *, low: int, high: int) -> int:
        text = self.query(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(
                400, f"query parameter {name}: expected an integer, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise ApiError(400, f"query parameter {name}: expected {low} to {high}, got {value}")
        return value

    def json_body(self) -> Any:
        if not self.request.body:
            return None
        try:
            return orjson.loads(self.request.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body: invalid JSON ({exc})") from None


Handler = Callable[[ApiCall], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter, for validation messages and the OpenAPI document."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: method and path (``{name}`` variables) under :data:`PREFIX`, its handler
    and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Handler
    operation: str
    summary: str
    response: type | None = None  # a Struct shape, or None for a schema given in ``schema``
    schema: dict[str, Any] | None = None
    status: int = 200
    params: tuple[Param, ...] = ()
    body: type | None = None
    errors: tuple[int, ...] = ()
    debug: bool = False  # needs [debug] enabled
    durable: bool = False  # also served when only [durable] is enabled
    public: bool = False  # answered without credentials (an allowed peer is still needed)
    tag: str = ""  # the OpenAPI tag; default from the path
    description: str = ""

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.path)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items()}


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(path: str) -> re.Pattern[str]:
    pattern = _PATTERNS.get(path)
    if pattern is None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        pattern = _PATTERNS[path] = re.compile(regex)
    return pattern


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return addr


def full_api(config: Config) -> bool:
    """Whether every endpoint is served (``[api]`` or the studio is on), not only the durable
    runs' ones (which ``[durable] enabled`` alone serves)."""
    return config.api.enabled or config.studio.enabled


def credentials_required(runtime: Runtime) -> bool:
    """Whether calls need a bearer token or a studio login (else loopback peers suffice)."""
    return bool(runtime.config.api.token) or runtime.config.studio.login


def check_peer(runtime: Runtime, request: Request) -> None:
    """Raise 403 for a peer that may not reach the API (or the studio page) at all."""
    api = runtime.config.api
    peer = request.client_ip
    addr = _address(peer)
    if not credentials_required(runtime):
        if addr is None or not addr.is_loopback:
            raise ApiError(
                403,
                f"client {peer} refused: without api.token the management API answers "
                "loopback clients only",
            )
        return
    if addr is None or not any(
        addr in ipaddress.ip_network(net, strict=False) for net in api.allowed_ips
    ):
        raise ApiError(403, f"client {peer} is not in api.allowed_ips")


async def check_access(runtime: Runtime, request: Request, *, public: bool = False) -> Caller:
    """Who calls: 403 for a peer not allowed, 401 for missing or wrong credentials.

    ``public`` calls (logging in) need an allowed peer but no credentials.
    """
    check_peer(runtime, request)
    if not credentials_required(runtime):
        return Caller("loopback")
    api = runtime.config.api
    login = runtime.config.studio.login
    scheme, _, given = request.header("authorization").partition(" ")
    if given.strip() or scheme:
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "send Authorization: Bearer <api.token>", _BEARER)
        if not api.token or not hmac.compare_digest(given.strip().encode(), api.token.encode()):
            raise ApiError(
                401,
                "invalid bearer token",
                {"www-authenticate": 'Bearer realm="nflow", error="invalid_token"'},
            )
        return Caller("token")
    if login:
        user = await logged_in(runtime, request)
        if user is not None:
            return Caller("login", user)
    if public:
        return Caller("none")
    if login:
        raise ApiError(
            401,
            f"log in first (POST {PREFIX}/login) or send Authorization: Bearer <api.token>",
            _BEARER,
        )
    raise ApiError(401, "missing bearer token: send Authorization: Bearer <api.token>", _BEARER)


async def logged_in(runtime: Runtime, request: Request) -> str | None:
    """The user of a valid studio login cookie: sealed by this server, not expired, not
    logged out, and the user still active with a studio role."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    ticket = unseal(runtime.signing_key, value)
    if ticket is None:
        return None
    store = runtime.store
    if await runtime.store_call(store.is_session_revoked(ticket.sid)):
        return None
    user = await runtime.store_call(store.get_user(ticket.user))
    if user is None or not user.active or user.rol not in runtime.config.studio.roles:
        return None
    return ticket.user


def check_mutation(request: Request) -> None:
    """Calls that change something must be JSON and carry the client header (no CSRF)."""
    if request.method not in MUTATING:
        return
    if request.content_type != "application/json":
        raise ApiError(
            415,
            f"{request.method} needs Content-Type: application/json "
            f"(got {request.header('content-type') or 'none'})",
        )
    if not request.header(CLIENT_HEADER):
        raise ApiError(
            403,
            f"{request.method} needs an {CLIENT_HEADER} header (any value): browsers cannot "
            "send it across origins, so it proves the call is not a forged form post",
        )


def audit(request: Request, status: int, outcome: str) -> None:
    """One ``nflow.audit`` line per call; refusals as warnings."""
    peer = request.client_ip
    audit_log.log(
        logging.WARNING if status in (401, 403) else logging.INFO,
        "api %s %s from %s: %s (%d)",
        request.method,
        request.path,
        peer,
        outcome,
        status,
        extra={
            "method": request.method,
            "path": request.path,
            "ip": peer,
            "status": status,
            "outcome": outcome,
        },
    )
