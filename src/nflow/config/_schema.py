"""The schema: one pydantic model per section of ``config.toml``, and the root ``Config``.

Validators give each finding the dotted key it is about, so loading can name the key, the
file or environment variable it came from, and what was expected.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from nflow.config._app_limits import validate_app_limits

SECRET_REF = "secret:"  # a value "secret:NAME" is read from the nflow_secrets table
_MIB = 1024 * 1024

# Every field has a description: docs/config.md is generated from them (nflow.config.docs).
# A key nflow parses, for Go files to load, but does not act on is marked so in its row.
_NO_EFFECT: JsonDict = {"status": "no effect"}
_PARTLY: JsonDict = {"status": "partly"}

# --------------------------------------------------------------------------------------------
# Value helpers shared by the models


def _problem(key: str, detail: str) -> PydanticCustomError:
    # The detail travels in the context, not the template, so braces in user values
    # (regexes such as ``\d{6}``) are never taken for format fields.
    return PydanticCustomError("nflow_config", "{detail}", {"detail": detail, "key": key})


def _problems(found: list[tuple[str, str]]) -> PydanticCustomError:
    """Several cross-field findings of one model, raised together so none hides another."""
    key, detail = found[0]
    return PydanticCustomError(
        "nflow_config", "{detail}", {"detail": detail, "key": key, "more": found[1:]}
    )


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (str, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _string_list(value: object) -> object:
    # TOML arrays arrive as lists; tuples keep the frozen config really immutable.
    if isinstance(value, list):
        return tuple(value)
    return value


def _comma_list(value: object) -> object:
    # The Go runtime took these as one comma-separated string; arrays are accepted as well.
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return _string_list(value)


def _port_string(value: object) -> object:
    # Go declared these ports as strings, so old files may quote them.
    if isinstance(value, str):
        text = value.strip().lstrip(":")
        if text == "":
            return 0
        if text.isdigit():
            return int(text)
    return value


def _mail_port(value: object) -> object:
    return 25 if value == "" else _port_string(value)  # Go's empty string meant "not set"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_StrList = Annotated[tuple[str, ...], BeforeValidator(_string_list)]
_CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]


def _check_networks(key: str, values: Iterable[str]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _problem(
                key, f"{json.dumps(value)} is not an IP address or a CIDR network"
            ) from None


def _check_paths(key: str, values: Iterable[str]) -> None:
    for value in values:
        if not value.startswith("/"):
            raise _problem(key, f"expected a path starting with /, got {json.dumps(value)}")


def _check_patterns(patterns: Iterable[tuple[str, str]]) -> None:
    # Python's re is close to Go's RE2 for the patterns people write; a typo fails here, not
    # at the first request that would have used the pattern.
    for key, pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _problem(key, f"invalid regular expression ({exc})") from None


class _Section(BaseModel):
    # Strict: TOML is typed, so "10" where a number belongs is a mistake worth reporting.
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, validate_by_name=True, validate_by_alias=True
    )


# --------------------------------------------------------------------------------------------
# Database URLs


_ASYNCPG_SSL_MODES = frozenset({"allow", "prefer", "require", "verify-ca", "verify-full"})
# Query parameters SQLAlchemy hands to asyncpg.connect() unchanged, which it accepts as strings.
_ASYNCPG_PASSTHROUGH = frozenset({"ssl", "target_session_attrs", "prepared_statement_cache_size"})


def _asyncpg_query(params: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in params.items():
        if name == "sslmode":
            if value == "disable":
                continue
            if value not in _ASYNCPG_SSL_MODES:
                raise ValueError(f'unknown sslmode "{value}"')
            out["ssl"] = value
        elif name in _ASYNCPG_PASSTHROUGH or (name == "host" and value.startswith("/")):
            out[name] = value
        else:
            # SQLAlchemy passes query parameters to asyncpg.connect() as keyword arguments,
            # so a libpq-only parameter would fail at the first connection instead of here.
            raise ValueError(f'parameter "{name}" is not supported with asyncpg')
    return out


_LIBPQ_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)")


def _parse_libpq(dsn: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    pos = 0
    while dsn[pos:].strip():
        match = _LIBPQ_PAIR.match(dsn, pos)
        if match is None:
            raise ValueError(f"cannot read key=value pairs at {dsn[pos:].strip()[:20]!r}")
        raw = match.group(2)
        if raw.startswith("'"):
            raw = raw[1:-1]
        pairs[match.group(1)] = re.sub(r"\\(.)", r"\1", raw)
        pos = match.end()
    return pairs


def _postgres_url(dsn: str) -> str:
    # SQLAlchemy is imported when a URL is built, not with the config: the master process
    # of ``nflow serve`` and commands without a database do not need it.
    from sqlalchemy.engine import URL, make_url

    params: dict[str, str] = {}
    if "://" in dsn:
        try:
            url = make_url(dsn)
        except Exception as exc:  # SQLAlchemy raises ArgumentError or ValueError
            raise ValueError(f"cannot parse the URL ({exc})") from None
        scheme = url.drivername.split("+")[0]
        if scheme not in ("postgres", "postgresql"):
            raise ValueError(f"expected a postgres:// or postgresql:// URL, got {scheme}://")
        parts = {
            "user": url.username,
            "password": url.password,
            "host": url.host,
            "port": str(url.port) if url.port else None,
            "dbname": url.database,
        }
        params = {name: value for name, value in parts.items() if value}
        for name, value in url.query.items():
            if isinstance(value, tuple):
                raise ValueError(f'parameter "{name}" is given more than once')
            params[name] = value  # libpq lets the query repeat user, password, host ...
    elif "=" in dsn:
        params = _parse_libpq(dsn)
    else:
        raise ValueError(
            "expected a PostgreSQL DSN (postgres://user@host/db or "
            f"host=... dbname=... pairs), got {json.dumps(dsn)}"
        )
    host = params.pop("host", "") or params.pop("hostaddr", "")
    params.pop("hostaddr", None)
    port_text = params.pop("port", "")
    if port_text and not port_text.isdigit():
        raise ValueError(f"port must be a number, got {json.dumps(port_text)}")
    if host.startswith("/"):  # a socket directory: asyncpg takes it as the host argument
        params["host"] = host
        host = ""
    user = params.pop("user", "") or None
    password = params.pop("password", "") or None
    database = params.pop("dbname", "") or None
    return URL.create(
        "postgresql+asyncpg",
        username=user,
        password=password,
        host=host or None,
        port=int(port_text) if port_text else None,
        database=database,
        query=_asyncpg_query(params),
    ).render_as_string(hide_password=False)


def _sqlite_url(dsn: str) -> str:
    if not dsn:
        raise ValueError("expected a file path or :memory:, got an empty string")
    if "://" in dsn:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(dsn)
        except Exception as exc:
            raise ValueError(f"cannot parse the URL ({exc})") from None
        if url.drivername.split("+")[0] != "sqlite":
            hint = (
                ' (for PostgreSQL set driver = "postgres" beside it)'
                if url.drivername.split("+")[0] in ("postgres", "postgresql")
                else ""
            )
            raise ValueError(
                f"expected a file path or a sqlite:// URL, got {url.drivername}://{hint}"
            )
        return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if dsn.startswith("file:"):
        # go-sqlite3 accepts SQLite URI filenames; sqlite3 in Python needs uri=true for them.
        separator = "&" if "?" in dsn else "?"
        return f"sqlite+aiosqlite:///{dsn}{separator}uri=true"
    # Three slashes then the path: an absolute path therefore gets four, as SQLAlchemy expects.
    return f"sqlite+aiosqlite:///{dsn}"


def _sqlalchemy_url(driver: str, dsn: str) -> str:
    if driver == "postgres":
        return _postgres_url(dsn.strip())
    return _sqlite_url(dsn.strip())


# --------------------------------------------------------------------------------------------
# Sections of the Go runtime


class DatabaseNflowConfig(_Section):
    driver: Annotated[Literal["sqlite3", "sqlite", "postgres"], BeforeValidator(_lower)] = Field(
        default="sqlite3",
        description="Store backend: SQLite through aiosqlite, PostgreSQL through asyncpg.",
    )
    dsn: str = Field(
        default="nflow.db",
        description=(
            "SQLite: a file path (relative to the working directory), an absolute path, "
            "`:memory:`, a `file:` URI or a `sqlite://` URL. PostgreSQL: a URL "
            "(`postgres://user:pw@host:5432/db?sslmode=disable`, `postgresql://…`) or libpq "
            "pairs (`host=127.0.0.1 port=5432 user=x dbname=test sslmode=disable`). "
            "`sslmode=disable` is dropped, other modes become asyncpg's `ssl`, a socket "
            "directory (`host=/var/run/postgresql`) is kept; any other libpq-only parameter "
            "(`application_name`, `connect_timeout` …) is rejected at load, because asyncpg "
            "would fail on it at the first connection."
        ),
    )
    query: str = Field(
        default="SELECT name,query FROM queries",
        min_length=1,
        description=(
            "Query that loads the named queries at start. The Go `Query*` keys are rejected with "
            "a hint: the queries always came from the `queries` table."
        ),
    )

    @model_validator(mode="after")
    def _dsn_usable(self) -> DatabaseNflowConfig:
        # After-validation, so a driver switched to postgres with the default dsn is caught too.
        try:
            _sqlalchemy_url(self.driver, self.dsn)
        except ValueError as exc:
            raise _problem("database_nflow.dsn", str(exc)) from None
        return self


class RedisConfig(_Section):
    host: str = Field(
        default="",
        description=(
            "`host:port` of Redis for the `redis_*` script functions, Redis sessions and the "
            "Redis rate-limit backend. Empty: no Redis (Go still created a client)."
        ),
    )
    password: str = Field(default="", description="Redis password.")
    maxconnectionpool: int = Field(
        default=0,
        ge=0,
        description="Most connections per worker; 0 = the client library's default.",
    )
    db: int = Field(default=0, ge=0, description="Redis database number (new; Go always used 0).")
    prefix: str = Field(
        default="nflow:",
        description="Prefix of every key nflow writes (new), so several apps can share one Redis.",
    )


class PgSessionConfig(_Section):
    url: str = Field(
        default="",
        description=(
            "Unused by the Go runtime too (its cookie store was always used). Sessions are set "
            "in `[session]`."
        ),
        json_schema_extra=_NO_EFFECT,
    )


class UrlConfig(_Section):
    url_base: str = Field(default="", description="The JS global `url_base`.")


class TwilioConfig(_Section):
    enable: bool = Field(
        default=False,
        description=(
            "Twilio Verify for `send_otp`/`check_otp`; when false both return true without a "
            "network call (as in Go). When true, the three keys below are required."
        ),
    )
    account_sid: str = Field(
        default="", description="Account SID (basic-auth user of the Verify API)."
    )
    auth_token: str = Field(default="", description="Auth token (basic-auth password).")
    verify_service_id: str = Field(default="", description="Verify service id (`VA…`).")
    base_url: str = Field(
        default="https://verify.twilio.com",
        pattern=r"^https?://[^/\s]+",
        description="Where the Verify v2 API is (new): a proxy or a test double.",
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for one Verify call, never past the run's deadline (new).",
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> TwilioConfig:
        if self.enable:
            missing = [
                (f"twilio.{name}", "required when twilio.enable is true")
                for name in ("account_sid", "auth_token", "verify_service_id")
                if not getattr(self, name)
            ]
            if missing:
                raise _problems(missing)
        return self


class MailConfig(_Section):
    smtp: str = Field(
        default="",
        description=(
            "SMTP host: the mail plugin's default when a run did not call `mail_config()` (Go "
            "parsed it but never used it)."
        ),
    )
    port: Annotated[int, BeforeValidator(_mail_port)] = Field(
        default=25, ge=1, le=65535, description="SMTP port."
    )
    from_: str = Field(default="", alias="from", description="Sender address.")
    password: str = Field(default="", description="SMTP password.")
    starttls: bool = Field(
        default=False, description="Require STARTTLS (new; otherwise it is used when offered)."
    )
    tls: bool = Field(
        default=False,
        description="Implicit TLS, usually port 465 (new). Cannot be combined with `starttls`.",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest SMTP conversation (new)."
    )
    max_message_bytes: int = Field(
        default=25 * _MIB, ge=1024, description="Largest message, attachments included (new)."
    )
    max_recipients: int = Field(
        default=100, ge=1, description="Most recipients of one `send_mail` (new)."
    )
    cafile: str = Field(
        default="",
        description="Extra CA certificate file to trust, for a private mail relay (new).",
    )

    @model_validator(mode="after")
    def _one_tls_mode(self) -> MailConfig:
        if self.starttls and self.tls:
            raise _problem("mail.tls", "choose tls (implicit TLS, port 465) or starttls, not both")
        return self


class DatabaseConfig(_Section):
    url: str = Field(
        default="",
        description=(
            "Parsed but unused by the Go runtime; script databases are `[databases.<name>]`."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    driver: str = Field(
        default="", description="Parsed but unused by the Go runtime.", json_schema_extra=_NO_EFFECT
    )
    init: str = Field(
        default="", description="Parsed but unused by the Go runtime.", json_schema_extra=_NO_EFFECT
    )


class MongoConfig(_Section):
    url: str = Field(
        default="", description="Parsed but unused by the Go runtime.", json_schema_extra=_NO_EFFECT
    )


class PluginConfig(_Section):
    plugins: _StrList = Field(
        default=(),
        description="Parsed but unused by the Go runtime; Python plugins are installed packages.",
        json_schema_extra=_NO_EFFECT,
    )


class HttpsConfig(_Section):
    enable: bool = Field(
        default=False,
        description=(
            "Serve HTTPS with `cert` and `key`, which are then required. nflow serves plain "
            "HTTP: put a TLS-terminating proxy in front."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    cert: str = Field(
        default="", description="Certificate file (PEM).", json_schema_extra=_NO_EFFECT
    )
    key: str = Field(
        default="",
        description="Private key file (PEM); a path, not the key itself.",
        json_schema_extra=_NO_EFFECT,
    )
    address: str = Field(
        default="", description="Listen address for HTTPS.", json_schema_extra=_NO_EFFECT
    )
    description: str = Field(default="", description="Free text.", json_schema_extra=_NO_EFFECT)
    httpbasic: bool = Field(
        default=False,
        description="HTTP basic auth for the Go designer.",
        json_schema_extra=_NO_EFFECT,
    )

    @model_validator(mode="after")
    def _files_when_enabled(self) -> HttpsConfig:
        if self.enable:
            missing = [
                (name, "required when enable is true")
                for name in ("cert", "key")
                if not getattr(self, name)
            ]
            if missing:
                # Relative keys: this class serves two sections, and only the parent knows which.
                raise _problems(missing)
        return self


class VmPoolConfig(_Section):
    max_size: int = Field(
        default=50,
        ge=1,
        description=(
            "Sizes each worker's pool of script threads (one warm JS runtime per thread): "
            "`max_size` clamped to 4–32. Go's default was 50 (its sample says 200); Go turned 0 "
            "into 50, nflow rejects 0."
        ),
    )
    preload_size: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Runtimes the Go pool created at start. nflow creates a thread's runtime at its "
            "first request, so there is nothing to preload."
        ),
        json_schema_extra={"status": "no effect", "doc_default": "unset"},
    )
    idle_timeout: int = Field(
        default=10,
        ge=1,
        description=(
            "Minutes after which the Go pool dropped idle runtimes. nflow keeps one runtime per "
            "thread for the process's life."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    cleanup_interval: int = Field(
        default=5,
        ge=0,
        description=(
            "Minutes between the Go pool's cleanups (0 disabled them). Nothing to clean in "
            "nflow, see `idle_timeout`."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    enable_metrics: bool = Field(
        default=False,
        description=(
            "Periodic pool statistics in the Go log. nflow's numbers are in `/metrics` "
            "(`[monitor]`)."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    max_memory_mb: int = Field(
        default=128,
        ge=1,
        description=(
            "Heap limit of each JS runtime; a script exceeding it ends its request with a 500 "
            "naming the limit and the runtime is replaced (not wired in Go). Apps may lower it "
            "(`[apps.<name>.limits]`)."
        ),
    )
    compiled_flows: bool = Field(
        default=True,
        description=(
            "Run chains of `js` nodes in one entry into the JS runtime instead of one per node "
            "(each node keeps its payload, routing, errors, limits and trace). A run with a "
            "debug session, tracing or the tracker, or that the history records in full, runs "
            "node by node anyway; `false` runs every node on its own."
        ),
    )
    max_execution_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Go's per-execution time limit (never wired there). nflow applies the stricter of "
            "this and `limits.step_timeout_seconds` to each node."
        ),
    )
    max_operations: int = Field(
        default=10_000_000,
        ge=0,
        description=(
            "Go's operation budget (a 10 ms tick there, never wired). nflow bounds scripts by "
            "time (`limits.step_timeout_seconds`), memory and host calls instead."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    enable_filesystem: bool = Field(
        default=False,
        description=(
            "Must be `false`: scripts never get direct filesystem access; `true` is rejected "
            "instead of silently ignored."
        ),
        json_schema_extra={"doc_type": "bool, must be `false`"},
    )
    enable_network: bool = Field(
        default=False,
        description=(
            "Must be `false`, as above; scripts reach the network through the `http_*` functions."
        ),
        json_schema_extra={"doc_type": "bool, must be `false`"},
    )
    enable_process: bool = Field(
        default=False,
        description="Must be `false`, as above, for process access.",
        json_schema_extra={"doc_type": "bool, must be `false`"},
    )

    @field_validator("enable_filesystem", "enable_network", "enable_process")
    @classmethod
    def _no_host_access(cls, value: bool, info: ValidationInfo) -> bool:
        if value:
            key = f"vm_pool.{info.field_name}"
            raise _problem(
                key,
                "scripts never get direct filesystem, network or process access in "
                "nflow (they use the host functions it exposes); remove the key or set false",
            )
        return value

    @model_validator(mode="after")
    def _preload_fits(self) -> VmPoolConfig:
        if self.preload_size is not None and self.preload_size > self.max_size:
            raise _problem(
                "vm_pool.preload_size",
                f"must not exceed vm_pool.max_size ({self.max_size}), got {self.preload_size}",
            )
        return self

    @property
    def effective_preload_size(self) -> int:
        """Runtimes to warm at start: the Go default of half the pool when unset."""
        return self.max_size // 2 if self.preload_size is None else self.preload_size


class TrackerConfig(_Section):
    enabled: bool = Field(default=False, description="Write one `tracker` row per executed node.")
    workers: int = Field(
        default=4,
        ge=1,
        description=(
            "Writer tasks in Go (its code used 70 unless set, its comments said 4). One writer "
            "task per worker process batches all rows in nflow."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    batch_size: int = Field(default=100, ge=1, description="Rows per insert transaction.")
    flush_interval: int = Field(
        default=250, ge=1, description="Milliseconds after which a partial batch is written."
    )
    channel_buffer: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Rows queued at most; rows beyond it are dropped and counted, never slowing requests."
        ),
    )
    verbose_logging: bool = Field(
        default=False,
        description=(
            "Go's start-up and statistics lines. nflow always logs failed batches; dropped rows "
            "are counted."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    stats_interval: int = Field(
        default=300,
        ge=1,
        description="Seconds between Go's statistics lines (verbose only).",
        json_schema_extra=_NO_EFFECT,
    )


class DebugConfig(_Section):
    enabled: bool = Field(default=False, description="Serve the `/debug/*` API.")
    auth_token: str = Field(
        default="",
        description=(
            "Token required in the `X-Debug-Token` header or `?debug_token=`. **Required when "
            "`enabled` in production mode.**"
        ),
    )
    allowed_ips: _CommaList = Field(
        default=(),
        description=(
            "Client IP allowlist (addresses or CIDR networks, each checked at load); empty = any "
            "client."
        ),
        json_schema_extra={"doc_type": "*list* of IPs or CIDR networks"},
    )
    enable_pprof: bool = Field(
        default=False,
        description="Go profiler endpoints; they were 404 in Go too.",
        json_schema_extra=_NO_EFFECT,
    )
    session_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A breakpoint debug session (`/_nflow/api/debug/sessions`, which also needs "
            "`[api] enabled`) ends by itself this long after it starts: a run still paused is "
            "aborted."
        ),
    )
    max_sessions: int = Field(
        default=4,
        ge=1,
        description=(
            "Debug sessions open at once; each paused run holds a thread and a JS runtime, so "
            "more are refused with 429."
        ),
    )

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_networks("debug.allowed_ips", value)
        return value


class ApiConfig(_Section):
    """``[api]``: the management API under ``/_nflow/api`` (runs, profiling, debug sessions)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Serve the management API under `/_nflow/api`. Off by default: it shows recorded "
            "requests and payloads."
        ),
    )
    token: str = Field(
        default="",
        description=(
            "Bearer token required in `Authorization: Bearer …`; with a token, clients must also "
            "come from `allowed_ips`. Empty: loopback clients only, no token."
        ),
    )
    allowed_ips: _CommaList = Field(
        default=("127.0.0.0/8", "::1"),
        description=(
            "Client networks allowed when `token` is set, matched against the connection's peer "
            "address (`X-Forwarded-For` is never read)."
        ),
        json_schema_extra={"doc_type": "*list* of IPs or CIDR networks"},
    )

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_networks("api.allowed_ips", value)
        return value


class MonitorConfig(_Section):
    enabled: bool = Field(
        default=True,
        description=(
            "Serve health and Prometheus metrics. **Differs from Go**, where an absent section "
            "meant off."
        ),
    )
    health_check_path: str = Field(
        default="/health",
        description=(
            "Health path; `<path>/ready` is the readiness check (database, Redis, a JS runtime)."
        ),
        json_schema_extra={"doc_type": "path starting with `/`"},
    )
    metrics_path: str = Field(
        default="/metrics",
        description="Prometheus metrics path.",
        json_schema_extra={"doc_type": "path starting with `/`"},
    )
    enable_detailed_metrics: bool = Field(
        default=False,
        description=(
            "Go's extra health details and metrics. nflow's metrics are always the full set."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    metrics_port: Annotated[int, BeforeValidator(_port_string)] = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "0 = metrics on the main server. Any other port takes the metrics path off the main "
            "server and serves it on this port instead (same host; answered by the master "
            "process, summing every worker). Must differ from `server.port`."
        ),
    )

    @field_validator("health_check_path", "metrics_path")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        _check_paths(f"monitor.{info.field_name}", (value,))
        return value


class RateLimitConfig(_Section):
    enabled: bool = Field(
        default=False, description="Limit requests per client IP (429 when over)."
    )
    ip_rate_limit: int = Field(
        default=100,
        description=(
            "Requests per IP per window. Go rejected every request on 0; nflow rejects 0 at load."
        ),
        json_schema_extra={"doc_type": "integer ≥ 1"},
    )
    ip_window_minutes: int = Field(
        default=1,
        description=(
            "Window length in minutes. **0 is rejected**: Go divided by it and crashed on every "
            "request."
        ),
        json_schema_extra={"doc_type": "integer ≥ 1"},
    )
    ip_burst_size: int = Field(
        default=10, ge=0, description="Extra bucket capacity above `ip_rate_limit`."
    )
    backend: Annotated[Literal["memory", "redis"], BeforeValidator(_lower)] = Field(
        default="memory",
        description=(
            "Bucket store: `memory` is one table in shared memory for all workers of one "
            "`nflow serve` (each instance has its own), `redis` is shared by every worker of "
            "every instance (needs `redis.host` when enabled; Go fell back to memory silently)."
        ),
    )
    cleanup_interval: int = Field(
        default=10,
        ge=1,
        description=(
            "Minutes between Go's sweeps of idle buckets. nflow's in-memory store sweeps on its "
            "own schedule; Redis buckets expire."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    retry_after_header: bool = Field(
        default=True, description="Add `Retry-After` to 429 responses."
    )
    error_message: str = Field(
        default="Rate limit exceeded. Please try again later.",
        description="`error` of the 429 JSON body.",
    )
    excluded_ips: _CommaList = Field(
        default=(),
        description="Clients never limited: addresses or CIDR networks, each checked at load.",
        json_schema_extra={"doc_type": "*list* of IPs or CIDR networks"},
    )
    trusted_proxies: _CommaList = Field(
        default=(),
        description=(
            "Load balancers or proxies in front of nflow (addresses or CIDR networks). A "
            "request from one of them is limited by the client address the proxy reports: "
            "`X-Real-IP`, else the last `X-Forwarded-For` entry (the one the proxy added). "
            "The proxy must set these headers itself; from any other peer they are ignored."
        ),
        json_schema_extra={"doc_type": "*list* of IPs or CIDR networks"},
    )
    excluded_paths: _CommaList = Field(
        default=("/health", "/metrics"),
        description=(
            "Path prefixes never limited (Go's zero value was empty; this is its sample value)."
        ),
        json_schema_extra={"doc_type": "*list* of paths"},
    )

    @field_validator("ip_rate_limit")
    @classmethod
    def _limit_positive(cls, value: int) -> int:
        if value <= 0:
            raise _problem(
                "rate_limit.ip_rate_limit",
                f"must be greater than 0, got {value} (0 would reject "
                "every request; set rate_limit.enabled = false to turn limiting off)",
            )
        return value

    @field_validator("ip_window_minutes")
    @classmethod
    def _window_positive(cls, value: int) -> int:
        if value <= 0:
            raise _problem(
                "rate_limit.ip_window_minutes",
                f"must be greater than 0, got {value} "
                "(the Go runtime divided by it and crashed on every request)",
            )
        return value

    @field_validator("excluded_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_networks("rate_limit.excluded_ips", value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_networks("rate_limit.trusted_proxies", value)
        return value

    @field_validator("excluded_paths")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_paths("rate_limit.excluded_paths", value)
        return value


_BUILTIN_SENSITIVE = ("email", "phone", "ssn", "credit_card", "api_key", "jwt")


class SecurityConfig(_Section):
    enable_static_analysis: bool = Field(
        default=True,
        description=(
            "Analyse every script when an app is checked (`nflow check`) or loaded to be served."
        ),
    )
    block_on_high_severity: bool = Field(
        default=True,
        description="Refuse to serve an app with a high-severity finding; false = log it only.",
    )
    log_security_warnings: bool = Field(
        default=True,
        description=(
            "A switch of the Go security library (never wired in). nflow always logs each finding "
            "as a warning when it loads an app."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    cache_analysis_results: bool = Field(
        default=True,
        description=(
            "The Go security library cached analyses per script text. nflow analyses each app "
            "version once, when it loads it, so there is nothing to cache."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    cache_ttl_minutes: int = Field(
        default=5,
        ge=0,
        description=(
            "Minutes the Go security library kept an analysis (it read `cache_ttl`; the documented "
            "name is kept, and `cache_ttl` is suggested away)."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    allowed_patterns: _StrList = Field(
        default=(),
        description=(
            "Regular expressions: findings whose rule name or code snippet matches one are not "
            "reported."
        ),
        json_schema_extra={"doc_type": "array of regular expressions"},
    )
    enable_encryption: bool = Field(
        default=False,
        description=(
            "Encryption at rest (AES-256-GCM); needed by `encrypt_sensitive_data`. Requires "
            "`encryption_key`."
        ),
    )
    encryption_key: str = Field(
        default="",
        description=(
            "Key: base64 of 32 bytes, or any string (hashed with SHA-256). Best set with "
            "`NFLOW_SECURITY__ENCRYPTION_KEY`; `nflow keys` adds rotation."
        ),
    )
    encrypt_sensitive_data: bool = Field(
        default=False,
        description=(
            "Seal tracker payloads and Redis session values at rest; requires `enable_encryption`."
        ),
    )
    encrypt_in_place: bool = Field(
        default=True,
        description=(
            "The Go security library's choice between replacing values and adding "
            "`_encrypted_fields` metadata. nflow seals whole values."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    always_encrypt_fields: _StrList = Field(
        default=("password", "token", "secret", "api_key"),
        description=(
            "Field names whose values the log sanitizer masks whole, whatever they look like. "
            "Not used for encryption, which seals whole values."
        ),
    )
    sensitive_patterns: _StrList = Field(
        default=_BUILTIN_SENSITIVE,
        description=(
            "The Go security library's detectors of values to encrypt: built-in names or keys of "
            "`custom_patterns`; anything else is rejected at load. nflow seals whole values "
            "instead of detected ones."
        ),
        json_schema_extra=_NO_EFFECT,
    )
    custom_patterns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra detectors for `sensitive_patterns` (name → regular expression, compiled at "
            "load)."
        ),
        json_schema_extra={"status": "no effect", "doc_type": "table of name → regular expression"},
    )
    enable_log_sanitization: bool = Field(
        default=True, description="Mask passwords, tokens, card numbers … in every log line."
    )
    log_masking_char: str = Field(
        default="*", min_length=1, max_length=1, description="Mask character."
    )
    log_preserve_length: bool = Field(default=False, description="Keep the masked value's length.")
    log_show_type: bool = Field(
        default=True, description="Write `[REDACTED:<type>]` rather than `[REDACTED]`."
    )
    log_custom_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra log-sanitizer patterns (name → regular expression, compiled at load).",
        json_schema_extra={"doc_type": "table of name → regular expression"},
    )

    @field_validator("custom_patterns", "log_custom_patterns")
    @classmethod
    def _regexes(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        _check_patterns((f"security.{info.field_name}.{k}", p) for k, p in value.items())
        return value

    @field_validator("allowed_patterns")
    @classmethod
    def _allowed_regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_patterns((f"security.allowed_patterns[{i}]", p) for i, p in enumerate(value))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        found: list[tuple[str, str]] = []
        if self.enable_encryption and not self.encryption_key:
            found.append(
                (
                    "security.encryption_key",
                    "required when security.enable_encryption is true "
                    "(set it in the file or with NFLOW_SECURITY__ENCRYPTION_KEY)",
                )
            )
        if self.encrypt_sensitive_data and not self.enable_encryption:
            found.append(
                (
                    "security.encrypt_sensitive_data",
                    "needs security.enable_encryption = true",
                )
            )
        known = set(_BUILTIN_SENSITIVE) | set(self.custom_patterns)
        for name in self.sensitive_patterns:
            if name not in known:
                found.append(
                    (
                        "security.sensitive_patterns",
                        f"unknown pattern {json.dumps(name)} "
                        f"(built in: {', '.join(_BUILTIN_SENSITIVE)}; or a key of "
                        "security.custom_patterns)",
                    )
                )
        if found:
            raise _problems(found)
        return self


# --------------------------------------------------------------------------------------------
# nflow's own sections


class HttpConfig(_Section):
    """The HTTP plugin's policy (``nflow.plugins.HttpPolicy``)."""

    allow_private: bool = Field(
        default=False,
        description=(
            "Let scripts reach private, loopback, link-local and other non-public addresses."
        ),
    )
    allowed_hosts: _CommaList = Field(
        default=(),
        description=(
            "Exceptions to the address check: host names, IPs or CIDR networks. A name trusts "
            "whatever it resolves to; an address or network is matched against the address "
            "connected to."
        ),
        json_schema_extra={"doc_type": "*list* of host names, IPs or CIDR networks"},
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait for one call, never past the run's deadline."
    )
    max_response_bytes: int = Field(
        default=10 * _MIB, ge=1, description="Largest (decoded) response body."
    )
    max_redirects: int = Field(
        default=5, ge=0, description="Redirects followed, each checked again."
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry.strip():
                raise _problem("http.allowed_hosts", "has an empty entry")
        return value


class LlmConfig(_Section):
    """The LLM plugin's endpoints, keys and caps (``nflow.plugins.LlmSettings``)."""

    openai_api_key: str = Field(
        default="",
        description=(
            "OpenAI (or compatible) key; scripts never see it. Empty: `OPENAI_API_KEY` of the "
            "server's environment."
        ),
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="OpenAI-compatible endpoint (an `http(s)://` URL).",
    )
    openai_model: str = Field(
        default="gpt-4o-mini", description="Model when the script names none."
    )
    gemini_api_key: str = Field(
        default="",
        description=(
            "Gemini key (sent in a header, never in the URL). Empty: `GEMINI_API_KEY` of the "
            "server's environment."
        ),
    )
    gemini_base_url: str = Field(
        default="https://generativelanguage.googleapis.com/v1beta",
        description="Gemini endpoint (an `http(s)://` URL).",
    )
    gemini_model: str = Field(default="gemini-2.0-flash", description="Default Gemini model.")
    ollama_base_url: str = Field(
        default="http://localhost:11434", description="Ollama server (an `http(s)://` URL)."
    )
    ollama_model: str = Field(default="llama3.2", description="Default Ollama model.")
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait for one completion, never past the run's deadline.",
    )
    max_tokens: int = Field(default=4096, ge=1, description="Cap on the tokens a call may ask for.")
    max_response_bytes: int = Field(
        default=4 * _MIB, ge=1024, description="Largest provider answer."
    )

    @field_validator("openai_base_url", "gemini_base_url", "ollama_base_url")
    @classmethod
    def _urls(cls, value: str, info: ValidationInfo) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise _problem(
                f"llm.{info.field_name}", f"expected an http:// or https:// URL, got {_show(value)}"
            )
        return value


class ExtraDatabaseConfig(_Section):
    """One ``[databases.<name>]`` table: a database scripts reach with ``db_query``/``db_exec``.

    ``[databases.nflow]`` tunes the nflow database itself (no ``url``, no ``queries``: its
    queries are the rows of the ``queries`` table).
    """

    url: str = Field(
        default="",
        description=(
            "`postgres://user:pw@host:5432/db` (or libpq pairs), or a SQLite file path / "
            "`sqlite://` URL; checked at load like `database_nflow.dsn`. Required, except for "
            "`[databases.nflow]`, which has none."
        ),
        json_schema_extra={"doc_default": "required", "doc_type": "string (password redacted)"},
    )
    max_rows: int = Field(
        default=1000,
        ge=1,
        description="A query returning more rows is an error (never a silent truncation).",
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Statement time limit (PostgreSQL `statement_timeout`, SQLite interrupt), never past "
            "the run's deadline."
        ),
    )
    read_only: bool = Field(
        default=True,
        description="Read-only sessions; `db_exec` is refused. Set `false` to allow writes.",
    )
    queries: dict[str, str] = Field(
        default_factory=dict,
        description="The statements scripts may run, by name, with `$1…$n` parameters.",
        json_schema_extra={"doc_type": "table of name → SQL"},
    )

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL (aiosqlite or asyncpg) for ``url``."""
        text = self.url.strip()
        if "://" in text:
            postgres = text.split("://", 1)[0].lower().startswith("postgres")
        else:  # libpq key=value pairs, or else a SQLite file path / file: URI
            postgres = "=" in text and not text.startswith("file:")
        return _sqlalchemy_url("postgres" if postgres else "sqlite3", text)


def _database_problems(databases: Mapping[str, ExtraDatabaseConfig]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, db in databases.items():
        key = f"databases.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            found.append((key, "a database name is letters, digits, _ and -"))
        if name == "nflow":
            if db.url:
                found.append((f"{key}.url", "the nflow database is [database_nflow]; leave it out"))
            if db.queries:
                found.append(
                    (f"{key}.queries", "the nflow database's queries are the queries table")
                )
            continue
        if not db.url:
            found.append((f"{key}.url", "is required (a postgres:// URL or a sqlite file path)"))
            continue
        try:
            db.sqlalchemy_url  # noqa: B018 - the property validates the URL
        except ValueError as exc:
            found.append((f"{key}.url", str(exc)))
        for query, sql in db.queries.items():
            if not sql.strip():
                found.append((f"{key}.queries.{query}", "is empty"))
    return found


class LimitsConfig(_Section):
    max_steps: int = Field(
        default=1000,
        ge=1,
        description="Nodes one execution may run; stops cycles between nodes (508).",
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Wall clock for a whole request (408)."
    )
    step_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Wall clock for one node (408 naming the node); the stricter of this and "
            "`vm_pool.max_execution_seconds` applies."
        ),
    )
    max_body_bytes: int = Field(
        default=10 * _MIB, ge=1, description="Largest request body accepted (413)."
    )
    max_response_bytes: int = Field(
        default=10 * _MIB, ge=1, description="Largest response a script may produce."
    )
    max_stack_kb: int = Field(
        default=1024,
        ge=1,
        description=(
            "JS stack size per runtime (fixed when a runtime is created, so apps cannot lower it)."
        ),
    )
    max_host_calls: int = Field(
        default=100_000, ge=1, description="Host-function calls per execution."
    )
    max_concurrent_host_calls: int = Field(
        default=16,
        ge=1,
        le=1000,
        description=(
            "Host calls one step may have in flight at once through the `*_async` functions "
            "(`await`, `Promise.all`); starting one more throws an error the script may catch."
        ),
    )
    parallel_branches: int = Field(
        default=4,
        ge=1,
        le=256,
        description=(
            "Branches of `parallel` nodes running at once in one worker (their thread pool, "
            "sized when first used); a node's `max_concurrency` lowers it for that node."
        ),
    )
    sleep_max_ms: int = Field(
        default=5000, ge=0, description="Longest single `sleep()` a script may ask for."
    )
    quarantine_after_hits: int = Field(
        default=0,
        ge=0,
        description=(
            "0 = off. After this many limit hits (time, memory, steps …) of one route within "
            "`quarantine_seconds`, that route answers 503 with `Retry-After` at once for "
            "`quarantine_seconds`. Counted per worker process."
        ),
    )
    quarantine_seconds: float = Field(
        default=30.0, gt=0, description="The counting window and the length of the pause."
    )
    isolate_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "0 = off. `nflow serve`: after a route hits a time or memory limit, its requests run "
            "in a child process of the worker for this long, so the worker's other requests do "
            "not wait behind it."
        ),
    )


class AppConfig(_Section):
    """``[apps."<app name>"]``: settings of one app: ``limits`` (lower-only), ``invalid_json``."""

    limits: dict[str, int | float] = Field(
        default_factory=dict,
        description=(
            "Lowers, for this app only, any key of `[limits]` except `max_stack_kb`, and "
            "`max_memory_mb` (lowering `vm_pool.max_memory_mb`: the app then runs on JS runtimes "
            "of its own). A value above the server's is clamped, with a warning."
        ),
        json_schema_extra={"doc_type": "table of limit name → number"},
    )
    invalid_json: Annotated[Literal["accept", "reject"], BeforeValidator(_lower)] | None = Field(
        default=None,
        description=(
            "How this app treats a body sent as `application/json` that does not parse; unset: "
            "`[request] invalid_json` applies."
        ),
        json_schema_extra={"doc_type": '`"accept"` or `"reject"`'},
    )

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: object) -> object:
        values, issues = validate_app_limits(value)
        if issues:
            # Keys without a dot are relative: the caller adds apps.<name>.limits.
            raise _problems([(i.key or "limits", i.message) for i in issues])
        return values


class CompatConfig(_Section):
    """``[compat]``: bring back a Go runtime behaviour that nflow changed on purpose."""

    error_body_source: bool = Field(
        default=False,
        description=(
            "A failing node's `500`/`408` body also carries `\"actor\"`: the node's data, script "
            "source included, as the Go runtime sent it to any client."
        ),
    )


class RequestConfig(_Section):
    """``[request]``: how request bodies are read."""

    invalid_json: Annotated[Literal["accept", "reject"], BeforeValidator(_lower)] = Field(
        default="accept",
        description=(
            "A body sent as `application/json` that does not parse is always logged; `accept` "
            "goes on without its fields (as the Go runtime did), `reject` answers `400` naming "
            "the problem."
        ),
    )


class AuthConfig(_Section):
    trigger: str = Field(
        default="",
        description=(
            "JS file defining `auth()`, run before starters and resumed nodes with `nflow_auth` "
            'on. Empty: the built-in trigger (`next = "login"` when there is no profile, like '
            "the shipped `_auth.js`). A file that is set but missing stops the start. "
            "`NFLOE_TRIGGERS_FOLD` (sic, the Go variable) is honoured as `<dir>/auth.js`."
        ),
    )
    login_path: str = Field(
        default="/nflow_login",
        description='Where `next = "login"` redirects (307). The Go runtime hard-coded it.',
        json_schema_extra={"doc_type": "path starting with `/`"},
    )

    @field_validator("login_path")
    @classmethod
    def _path(cls, value: str) -> str:
        _check_paths("auth.login_path", (value,))
        return value


class SessionConfig(_Section):
    backend: Annotated[Literal["cookie", "redis"], BeforeValidator(_lower)] = Field(
        default="cookie",
        description=(
            "Encrypted, signed cookies (AES-256-GCM), or server-side sessions in Redis (requires "
            "`redis.host`)."
        ),
    )
    secret: str = Field(
        default="",
        description=(
            "Signing key, at least 32 characters, shared by all workers and instances. "
            "**Required for cookie sessions in production mode.**"
        ),
    )
    cookie_secure: bool = Field(
        default=False, description="Set `Secure` on session cookies; turn it on behind HTTPS."
    )
    max_age_seconds: int = Field(
        default=30 * 24 * 3600, ge=1, description="Session lifetime (the default is 30 days)."
    )

    @field_validator("secret")
    @classmethod
    def _strong(cls, value: str) -> str:
        # A "secret:NAME" reference is checked again once the runtime has resolved it.
        if value and len(value) < 32 and not value.startswith(SECRET_REF):
            raise _problem(
                "session.secret",
                f"must be at least 32 characters, got {len(value)} characters",
            )
        return value


class ServerConfig(_Section):
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Listen address (Go listened on all interfaces; use `0.0.0.0` in containers).",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="Listen port; 0 picks a free one.")
    workers: int = Field(default=0, ge=0, description="Worker processes; 0 = one per CPU.")
    mode: Annotated[Literal["development", "production"], BeforeValidator(_lower)] = Field(
        default="development",
        description=(
            "Production mode enforces `session.secret` (cookie sessions) and `debug.auth_token` "
            "(when debug is on)."
        ),
    )
    compress_min_bytes: int = Field(
        default=1024,
        ge=0,
        description=(
            "Responses at least this large are gzip-compressed when the client accepts it; 0 "
            "turns compression off."
        ),
    )
    reload_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description=(
            "How often each worker of `nflow serve` looks for changed `--app` files and stored "
            "apps, modules, templates and queries (hot reload); 0 turns polling off (SIGHUP "
            "still looks once)."
        ),
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "A request body not fully received this long after its headers is answered `408` "
            "(a client sending 1 byte a second cannot hold a worker)."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=8192,
        le=16 * _MIB,
        description=(
            "Request line plus headers, in bytes; larger requests get `431`. The HTTP parser's "
            "buffer cannot be smaller than 8 KiB."
        ),
    )
    shutdown_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "On SIGTERM, how long requests already received may take to finish before workers "
            "are killed."
        ),
    )

    @property
    def effective_workers(self) -> int:
        """Worker processes to start: 0 means one per CPU."""
        return self.workers or os.cpu_count() or 1


def _log_level(value: object) -> object:
    value = _lower(value)
    return "warning" if value == "warn" else value


class LoggingConfig(_Section):
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_log_level)
    ] = Field(
        default="info",
        description=(
            "Lowest level written; `warn` is accepted for `warning`. `-v` lowers it to debug."
        ),
    )
    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)] = Field(
        default="auto", description="`auto`: pretty in a terminal, JSON otherwise."
    )
    access: bool = Field(
        default=True,
        description="One log line per request: method, path, status, duration, wid, app, starter.",
    )


class TracingConfig(_Section):
    """OpenTelemetry traces over OTLP/HTTP; off by default (no span is created then)."""

    enabled: bool = Field(
        default=False,
        description=(
            "OpenTelemetry spans: one per request, one per executed node; log lines get "
            "`trace_id`/`span_id`. Off: no span is created."
        ),
    )
    endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description=(
            "OTLP/HTTP (protobuf) traces endpoint (an `http(s)://` URL). When not set (file or "
            "`NFLOW_TRACING__ENDPOINT`), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used, else "
            "`OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` added, else the default."
        ),
    )
    service_name: str = Field(
        default="nflow", min_length=1, description="`service.name` of the spans."
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description=(
            "Share of new traces kept; a request with a `traceparent` follows the caller's "
            "sampled flag."
        ),
    )

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise _problem(
                "tracing.endpoint",
                f"expected an http:// or https:// URL of an OTLP/HTTP receiver, got {value!r}",
            )
        return value


_HistoryMode = Annotated[Literal["off", "errors", "sampled", "all"], BeforeValidator(_lower)]


class HistoryAppConfig(_Section):
    """``[history.apps."<app name>"]``: one app's own recording policy."""

    mode: _HistoryMode | None = Field(
        default=None, description="This app's `history.mode`; unset: the server's applies."
    )
    sample_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="This app's `history.sample_rate`; unset: the server's applies.",
    )


class HistoryConfig(_Section):
    """``[history]``: which runs are recorded, for how long, and how big a value may be."""

    mode: _HistoryMode = Field(
        default="sampled",
        description=(
            "`off`: nothing is recorded; `errors`: failed runs; `sampled`: failed runs plus "
            "`sample_rate` of the others; `all`: every run."
        ),
    )
    sample_rate: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description=(
            "Share of successful runs kept in `sampled`; the runs of one journey are kept or "
            "dropped together."
        ),
    )
    retention_days: float = Field(
        default=7.0, gt=0, description="Runs older than this are deleted."
    )
    max_runs: int = Field(
        default=100_000,
        ge=0,
        description="At most this many runs are kept, the oldest deleted first; 0: no count limit.",
    )
    max_value_bytes: int = Field(
        default=65_536,
        ge=256,
        description=(
            "A recorded value (body, payload, host call argument or result) larger than this is "
            "cut, with a truncation marker."
        ),
    )
    redact: bool = Field(
        default=True,
        description=(
            "Hide `Authorization`, `Cookie`, `Set-Cookie`, the debug token, keys named like "
            "password/token/secret/api_key and what the log sanitizer detects."
        ),
    )
    redact_keys: _StrList = Field(
        default=(), description="More key names whose values are hidden in the record."
    )
    queue_size: int = Field(
        default=2000,
        ge=1,
        description=(
            "Runs waiting to be written; past it runs are dropped (successful ones first) and "
            "counted in `nflow_history_dropped_total`."
        ),
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        description=(
            "Runs written per insert transaction; a transaction's commit costs SQLite about as "
            "much as a hundred runs."
        ),
    )
    flush_interval_ms: int = Field(
        default=250, ge=1, description="Longest wait before a partial batch is written."
    )
    apps: dict[str, HistoryAppConfig] = Field(
        default_factory=dict,
        description=(
            'One app\'s own policy: `[history.apps."<name>"]` with `mode` and/or `sample_rate`; '
            "a key left out follows the global one."
        ),
        json_schema_extra={"doc_type": "table of app name → table"},
    )


# --------------------------------------------------------------------------------------------
# The root


class ReleasesConfig(_Section):
    """``[releases]``: app versions kept, and the automatic rollback of a canary version."""

    keep_versions: int = Field(
        default=50,
        ge=1,
        description=(
            "Versions kept per app, the oldest deleted first; a version that has weight in a "
            "release is never deleted."
        ),
    )
    auto_rollback: bool = Field(
        default=True,
        description=(
            "Give a canary version (any version of a release but the one with the most weight) "
            "weight 0 as soon as its error rate crosses `canary_max_error_rate`."
        ),
    )
    canary_min_requests: int = Field(
        default=20,
        ge=1,
        description="Requests a canary must have served in the window before it is judged.",
    )
    canary_max_error_rate: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description=(
            "Share of a canary's requests that may fail (5xx answers and limit hits) in the "
            "window; above it the canary is rolled back."
        ),
    )
    window_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "The error rate counts the requests of the last this many seconds (and none from "
            "before the release began); counts are shared by every worker through the database."
        ),
    )


class CacheConfig(_Section):
    """``[cache]``: where the results of nodes with ``cache_ttl_seconds`` are kept."""

    backend: Annotated[Literal["memory", "redis", "off"], BeforeValidator(_lower)] = Field(
        default="memory",
        description=(
            "`memory`: each worker keeps its own (a bounded LRU); `redis`: one cache shared by "
            "every worker and instance, on the `[redis]` server; `off`: nodes are never cached."
        ),
    )
    max_entries: int = Field(
        default=1000,
        ge=1,
        description=(
            "Results one worker keeps in memory (`memory` backend); the least used go first."
        ),
    )
    max_entry_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description=(
            "A step result (payload and response writes, as JSON) larger than this is not cached."
        ),
    )
    key_prefix: str = Field(
        default="stepcache:",
        description=(
            "Added after `[redis] prefix` to the key of each cached result (`redis` backend)."
        ),
    )
    redis_timeout_seconds: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Longest wait for Redis on a lookup or a store; on a failure or a timeout the step "
            "runs as on a miss and its result is not stored (logged)."
        ),
    )


class DurableAppConfig(_Section):
    """``[durable.apps."<app name>"]``: one app's own retry policy for its durable runs."""

    max_attempts: int | None = Field(
        default=None, ge=1, description="This app's `durable.max_attempts`; unset: the server's."
    )
    retry_backoff_ms: int | None = Field(
        default=None,
        ge=0,
        description="This app's `durable.retry_backoff_ms`; unset: the server's.",
    )


class DurableConfig(_Section):
    """``[durable]``: async runs that survive the death of the instance running them."""

    enabled: bool = Field(
        default=False,
        description=(
            'Run async starters (`"async": true` in a starter\'s data), requests sent with '
            "`Prefer: respond-async` and `gorutine` background branches from a queue in the "
            "database, checkpointed after every node; serve `/_nflow/api/runs/{id}`."
        ),
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, description="Durable runs one worker process executes at once."
    )
    lease_seconds: float = Field(
        default=6.0,
        ge=1.0,
        description=(
            "A running run's lease, renewed every third of it; once it lapses (the instance "
            "died) any instance takes the run over from its last checkpoint."
        ),
    )
    poll_interval_ms: int = Field(
        default=250,
        ge=10,
        description="How often an idle worker looks for queued, due or abandoned runs.",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description=(
            "Attempts of one node before the run is `failed`; a node's data may set its own "
            "`max_attempts`."
        ),
    )
    retry_backoff_ms: int = Field(
        default=1000,
        ge=0,
        description=(
            "Wait before the first retry of a failed node, doubled for each further one (at "
            "most 5 minutes); a node's data may set its own `retry_backoff_ms`."
        ),
    )
    park_sleep_ms: int = Field(
        default=2000,
        ge=0,
        description=(
            "In a durable run, `sleep(ms)` longer than this parks the run (no worker held) "
            "instead of sleeping; shorter sleeps sleep."
        ),
    )
    max_wait_seconds: float = Field(
        default=30 * 86400.0,
        gt=0,
        description="The longest durable `sleep` or `wait_for_signal` a script may ask for.",
    )
    keep_days: float = Field(
        default=7.0,
        gt=0,
        description="Ended runs (completed, failed, cancelled) are deleted after this.",
    )
    apps: dict[str, DurableAppConfig] = Field(
        default_factory=dict,
        description=(
            'One app\'s own retry policy: `[durable.apps."<name>"]` with `max_attempts` and/or '
            "`retry_backoff_ms`."
        ),
        json_schema_extra={"doc_type": "table of app name → table"},
    )


class ClusterConfig(_Section):
    """``[cluster]``: instances of ``nflow serve`` sharing one database."""

    heartbeat_seconds: float = Field(
        default=2.0,
        gt=0,
        description=(
            "How often each instance writes its heartbeat to `nflow_instances` (every worker "
            "writes it, so the instance is live while any worker is)."
        ),
    )
    dead_after_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "An instance whose newest heartbeat is older than this is listed as dead (killed, "
            "frozen or cut off from the database); must exceed `heartbeat_seconds`. Instances' "
            "clocks must agree (NTP)."
        ),
    )
    forget_after_seconds: float = Field(
        default=86400.0,
        gt=0,
        description=(
            "Dead and stopped instances stay listed by `nflow cluster status` this long, then "
            "their rows are deleted."
        ),
    )
    notify: bool = Field(
        default=True,
        description=(
            "On PostgreSQL, each worker listens (`LISTEN nflow_changes`, one connection per "
            "worker) so that app, release and configuration changes made on any instance "
            "apply everywhere at once; polling (`server.reload_interval_seconds`) stays the "
            "fallback. SQLite has no notices and polls."
        ),
    )


class StudioConfig(_Section):
    """``[studio]``: the studio page at ``/_nflow/studio`` and the management API it uses."""

    enabled: bool = Field(
        default=False,
        description=(
            "Serve the studio page at `/_nflow/studio` and turn the management API on (as "
            "`[api] enabled = true`, with the same access rules)."
        ),
    )
    login: bool = Field(
        default=False,
        description=(
            "Require a studio login (`POST /_nflow/api/login`) with an nflow user whose role is "
            "in `roles`, also from loopback clients; the bearer `api.token` is accepted too. "
            "Clients must still come from `api.allowed_ips`."
        ),
    )
    roles: _CommaList = Field(
        default=("developer", "admin"),
        description="Roles (the users table's `rol`) that may log in to the studio.",
        json_schema_extra={"doc_type": "*list* of role names"},
    )
    login_max_age_seconds: int = Field(
        default=8 * 3600,
        ge=60,
        description="How long a studio login lasts before the user must log in again.",
    )


class Config(_Section):
    """The whole configuration; build it with :func:`load_config` to get file and env handling."""

    database_nflow: DatabaseNflowConfig = DatabaseNflowConfig()
    redis: RedisConfig = RedisConfig()
    pg_session: PgSessionConfig = PgSessionConfig()
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Free-form table: the JS `env` map (`env.scim_base`, `env.openid_base` in the Go "
            "sample). Values whose name looks secret (`…key`, `…token`, `…secret`, `…password` "
            "…) are redacted in `/debug/config`."
        ),
    )
    url: UrlConfig = UrlConfig()
    twilio: TwilioConfig = TwilioConfig()
    mail: MailConfig = MailConfig()
    database: DatabaseConfig = DatabaseConfig()
    mongo: MongoConfig = MongoConfig()
    plugin: PluginConfig = PluginConfig()
    https_engine: HttpsConfig = HttpsConfig()
    https_designer: HttpsConfig = HttpsConfig()
    vm_pool: VmPoolConfig = VmPoolConfig()
    limits: LimitsConfig = LimitsConfig()
    tracker: TrackerConfig = TrackerConfig()
    debug: DebugConfig = DebugConfig()
    monitor: MonitorConfig = MonitorConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    security: SecurityConfig = SecurityConfig()
    session: SessionConfig = SessionConfig()
    auth: AuthConfig = AuthConfig()
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()
    llm: LlmConfig = LlmConfig()
    databases: dict[str, ExtraDatabaseConfig] = Field(default_factory=dict)
    tracing: TracingConfig = TracingConfig()
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    compat: CompatConfig = CompatConfig()
    request: RequestConfig = RequestConfig()
    history: HistoryConfig = HistoryConfig()
    api: ApiConfig = ApiConfig()
    releases: ReleasesConfig = ReleasesConfig()
    cache: CacheConfig = CacheConfig()
    durable: DurableConfig = DurableConfig()
    cluster: ClusterConfig = ClusterConfig()
    studio: StudioConfig = StudioConfig()
    # dotted key → secret name, for keys whose "secret:NAME" value was resolved (with_secrets)
    _secret_keys: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        found: list[tuple[str, str]] = _database_problems(self.databases)
        if self.session.backend == "redis" and not self.redis.host:
            found.append(("session.backend", '"redis" needs redis.host to be set'))
        if self.rate_limit.enabled and self.rate_limit.backend == "redis" and not self.redis.host:
            found.append(("rate_limit.backend", '"redis" needs redis.host to be set'))
        cluster = self.cluster
        if cluster.dead_after_seconds <= cluster.heartbeat_seconds:
            found.append(
                (
                    "cluster.dead_after_seconds",
                    f"must exceed cluster.heartbeat_seconds ({cluster.heartbeat_seconds:g}), "
                    "or every instance would look dead between two heartbeats",
                )
            )
        if self.monitor.metrics_port and self.monitor.metrics_port == self.server.port:
            found.append(
                (
                    "monitor.metrics_port",
                    f"must differ from server.port ({self.server.port}); "
                    "use 0 to serve metrics on the main server",
                )
            )
        if self.server.mode == "production":
            if self.debug.enabled and not self.debug.auth_token:
                found.append(
                    (
                        "debug.auth_token",
                        "required when debug.enabled is true in production mode",
                    )
                )
            if self.session.backend == "cookie" and not self.session.secret:
                found.append(
                    (
                        "session.secret",
                        "required for cookie sessions in production mode "
                        "(every worker and instance must sign cookies with the same key)",
                    )
                )
        if found:
            raise _problems(found)
        return self

    @property
    def database_url(self) -> str:
        """The SQLAlchemy async URL for ``database_nflow`` (aiosqlite or asyncpg)."""
        return _sqlalchemy_url(self.database_nflow.driver, self.database_nflow.dsn)

    @property
    def effective_step_timeout_seconds(self) -> float:
        """Per-node wall clock: the stricter of ``limits`` and the Go-era ``vm_pool`` key."""
        return min(self.limits.step_timeout_seconds, self.vm_pool.max_execution_seconds)
