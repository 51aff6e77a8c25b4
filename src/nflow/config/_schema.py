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
from pydantic_core import PydanticCustomError

from nflow.config._app_limits import validate_app_limits

SECRET_REF = "secret:"  # a value "secret:NAME" is read from the nflow_secrets table
_MIB = 1024 * 1024

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
            raise ValueError(f"expected a file path or a sqlite:// URL, got {url.drivername}://")
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
    driver: Annotated[Literal["sqlite3", "sqlite", "postgres"], BeforeValidator(_lower)] = "sqlite3"
    dsn: str = "nflow.db"
    query: str = Field(default="SELECT name,query FROM queries", min_length=1)

    @model_validator(mode="after")
    def _dsn_usable(self) -> DatabaseNflowConfig:
        # After-validation, so a driver switched to postgres with the default dsn is caught too.
        try:
            _sqlalchemy_url(self.driver, self.dsn)
        except ValueError as exc:
            raise _problem("database_nflow.dsn", str(exc)) from None
        return self


class RedisConfig(_Section):
    host: str = ""
    password: str = ""
    maxconnectionpool: int = Field(default=0, ge=0)
    db: int = Field(default=0, ge=0)
    prefix: str = "nflow:"


class PgSessionConfig(_Section):
    url: str = ""


class UrlConfig(_Section):
    url_base: str = ""


class TwilioConfig(_Section):
    enable: bool = False
    account_sid: str = ""
    auth_token: str = ""
    verify_service_id: str = ""
    # Tests and proxies point this at another server speaking the Verify API.
    base_url: str = Field(default="https://verify.twilio.com", pattern=r"^https?://[^/\s]+")
    timeout_seconds: float = Field(default=10.0, gt=0)

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
    smtp: str = ""
    port: Annotated[int, BeforeValidator(_mail_port)] = Field(default=25, ge=1, le=65535)
    from_: str = Field(default="", alias="from")
    password: str = ""
    starttls: bool = False
    tls: bool = False
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_message_bytes: int = Field(default=25 * _MIB, ge=1024)
    max_recipients: int = Field(default=100, ge=1)
    cafile: str = ""

    @model_validator(mode="after")
    def _one_tls_mode(self) -> MailConfig:
        if self.starttls and self.tls:
            raise _problem("mail.tls", "choose tls (implicit TLS, port 465) or starttls, not both")
        return self


class DatabaseConfig(_Section):
    url: str = ""
    driver: str = ""
    init: str = ""


class MongoConfig(_Section):
    url: str = ""


class PluginConfig(_Section):
    plugins: _StrList = ()


class HttpsConfig(_Section):
    enable: bool = False
    cert: str = ""
    key: str = ""
    address: str = ""
    description: str = ""
    httpbasic: bool = False

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
    max_size: int = Field(default=50, ge=1)
    preload_size: int | None = Field(default=None, ge=0)
    idle_timeout: int = Field(default=10, ge=1)
    cleanup_interval: int = Field(default=5, ge=0)
    enable_metrics: bool = False
    max_memory_mb: int = Field(default=128, ge=1)
    max_execution_seconds: float = Field(default=30.0, gt=0)
    max_operations: int = Field(default=10_000_000, ge=0)
    enable_filesystem: bool = False
    enable_network: bool = False
    enable_process: bool = False

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
    enabled: bool = False
    workers: int = Field(default=4, ge=1)
    batch_size: int = Field(default=100, ge=1)
    flush_interval: int = Field(default=250, ge=1)
    channel_buffer: int = Field(default=100_000, ge=1)
    verbose_logging: bool = False
    stats_interval: int = Field(default=300, ge=1)


class DebugConfig(_Section):
    enabled: bool = False
    auth_token: str = ""
    allowed_ips: _CommaList = ()
    enable_pprof: bool = False

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_networks("debug.allowed_ips", value)
        return value


class MonitorConfig(_Section):
    enabled: bool = True
    health_check_path: str = "/health"
    metrics_path: str = "/metrics"
    enable_detailed_metrics: bool = False
    metrics_port: Annotated[int, BeforeValidator(_port_string)] = Field(default=0, ge=0, le=65535)

    @field_validator("health_check_path", "metrics_path")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        _check_paths(f"monitor.{info.field_name}", (value,))
        return value


class RateLimitConfig(_Section):
    enabled: bool = False
    ip_rate_limit: int = 100
    ip_window_minutes: int = 1
    ip_burst_size: int = Field(default=10, ge=0)
    backend: Annotated[Literal["memory", "redis"], BeforeValidator(_lower)] = "memory"
    cleanup_interval: int = Field(default=10, ge=1)
    retry_after_header: bool = True
    error_message: str = "Rate limit exceeded. Please try again later."
    excluded_ips: _CommaList = ()
    excluded_paths: _CommaList = ("/health", "/metrics")

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

    @field_validator("excluded_paths")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_paths("rate_limit.excluded_paths", value)
        return value


_BUILTIN_SENSITIVE = ("email", "phone", "ssn", "credit_card", "api_key", "jwt")


class SecurityConfig(_Section):
    enable_static_analysis: bool = True
    block_on_high_severity: bool = True
    log_security_warnings: bool = True
    cache_analysis_results: bool = True
    cache_ttl_minutes: int = Field(default=5, ge=0)
    allowed_patterns: _StrList = ()
    enable_encryption: bool = False
    encryption_key: str = ""
    encrypt_sensitive_data: bool = False
    encrypt_in_place: bool = True
    always_encrypt_fields: _StrList = ("password", "token", "secret", "api_key")
    sensitive_patterns: _StrList = _BUILTIN_SENSITIVE
    custom_patterns: dict[str, str] = Field(default_factory=dict)
    enable_log_sanitization: bool = True
    log_masking_char: str = Field(default="*", min_length=1, max_length=1)
    log_preserve_length: bool = False
    log_show_type: bool = True
    log_custom_patterns: dict[str, str] = Field(default_factory=dict)

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

    allow_private: bool = False
    allowed_hosts: _CommaList = ()
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_response_bytes: int = Field(default=10 * _MIB, ge=1)
    max_redirects: int = Field(default=5, ge=0)

    @field_validator("allowed_hosts")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry.strip():
                raise _problem("http.allowed_hosts", "has an empty entry")
        return value


class LlmConfig(_Section):
    """The LLM plugin's endpoints, keys and caps (``nflow.plugins.LlmSettings``)."""

    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    gemini_api_key: str = ""
    gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    gemini_model: str = "gemini-2.0-flash"
    ollama_base_url: str = "http://localhost:11434"
    ollama_model: str = "llama3.2"
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_tokens: int = Field(default=4096, ge=1)
    max_response_bytes: int = Field(default=4 * _MIB, ge=1024)

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

    url: str = ""
    max_rows: int = Field(default=1000, ge=1)
    timeout_seconds: float = Field(default=5.0, gt=0)
    read_only: bool = True
    queries: dict[str, str] = Field(default_factory=dict)

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
    max_steps: int = Field(default=1000, ge=1)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    step_timeout_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=10 * _MIB, ge=1)
    max_response_bytes: int = Field(default=10 * _MIB, ge=1)
    max_stack_kb: int = Field(default=1024, ge=1)
    max_host_calls: int = Field(default=100_000, ge=1)
    sleep_max_ms: int = Field(default=5000, ge=0)
    # 0 = off. N limit hits of one route within quarantine_seconds → 503 for that long.
    quarantine_after_hits: int = Field(default=0, ge=0)
    quarantine_seconds: float = Field(default=30.0, gt=0)
    # nflow serve: after a time or memory limit hit, a route runs in a child process this long.
    isolate_seconds: float = Field(default=60.0, ge=0)


class AppConfig(_Section):
    """``[apps."<app name>"]``: settings of one app: ``limits`` (lower-only), ``invalid_json``."""

    limits: dict[str, int | float] = Field(default_factory=dict)
    # None: [request] invalid_json applies.
    invalid_json: Annotated[Literal["accept", "reject"], BeforeValidator(_lower)] | None = None

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

    # A failing node's 500/408 body carries the node ("actor": its data, script included).
    error_body_source: bool = False


class RequestConfig(_Section):
    """``[request]``: how request bodies are read."""

    # A body sent as application/json that does not parse: "accept" (logged; post_data keeps
    # only the path, as in the Go runtime) or "reject" (400 naming the problem).
    invalid_json: Annotated[Literal["accept", "reject"], BeforeValidator(_lower)] = "accept"


class AuthConfig(_Section):
    trigger: str = ""
    login_path: str = "/nflow_login"

    @field_validator("login_path")
    @classmethod
    def _path(cls, value: str) -> str:
        _check_paths("auth.login_path", (value,))
        return value


class SessionConfig(_Section):
    backend: Annotated[Literal["cookie", "redis"], BeforeValidator(_lower)] = "cookie"
    secret: str = ""
    cookie_secure: bool = False
    max_age_seconds: int = Field(default=30 * 24 * 3600, ge=1)

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
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=0, ge=0)
    mode: Annotated[Literal["development", "production"], BeforeValidator(_lower)] = "development"
    compress_min_bytes: int = Field(default=1024, ge=0)
    # How often each worker looks for changed app files and stored apps; 0 turns it off.
    reload_interval_seconds: float = Field(default=1.0, ge=0)
    # A request body not fully received this long after its headers is answered 408.
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    # Request line plus headers, in bytes (431 above). The HTTP parser's buffer cannot be
    # smaller than 8 KiB.
    max_header_bytes: int = Field(default=64 * 1024, ge=8192, le=16 * _MIB)
    # SIGTERM: how long requests already received may take to finish before workers are killed.
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

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
    ] = "info"
    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)] = "auto"
    access: bool = True


class TracingConfig(_Section):
    """OpenTelemetry traces over OTLP/HTTP; off by default (no span is created then)."""

    enabled: bool = False
    # Left unset, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT apply.
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = Field(default="nflow", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

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

    mode: _HistoryMode | None = None
    sample_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class HistoryConfig(_Section):
    """``[history]``: which runs are recorded, for how long, and how big a value may be."""

    # off: nothing; errors: failed runs; sampled: failed runs plus sample_rate of the others.
    mode: _HistoryMode = "sampled"
    sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    retention_days: float = Field(default=7.0, gt=0)
    max_runs: int = Field(default=100_000, ge=0)  # 0 = no limit but retention_days
    max_value_bytes: int = Field(default=65_536, ge=256)
    redact: bool = True
    redact_keys: _StrList = ()
    queue_size: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=100, ge=1)
    flush_interval_ms: int = Field(default=250, ge=1)
    apps: dict[str, HistoryAppConfig] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# The root


class Config(_Section):
    """The whole configuration; build it with :func:`load_config` to get file and env handling."""

    database_nflow: DatabaseNflowConfig = DatabaseNflowConfig()
    redis: RedisConfig = RedisConfig()
    pg_session: PgSessionConfig = PgSessionConfig()
    env: dict[str, str] = Field(default_factory=dict)
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
    # dotted key → secret name, for keys whose "secret:NAME" value was resolved (with_secrets)
    _secret_keys: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        found: list[tuple[str, str]] = _database_problems(self.databases)
        if self.session.backend == "redis" and not self.redis.host:
            found.append(("session.backend", '"redis" needs redis.host to be set'))
        if self.rate_limit.enabled and self.rate_limit.backend == "redis" and not self.redis.host:
            found.append(("rate_limit.backend", '"redis" needs redis.host to be set'))
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
