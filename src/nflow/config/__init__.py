"""Typed configuration: the Go runtime's ``config.toml`` plus nflow's own sections.

Every section of the original file is accepted, so an existing ``config.toml`` keeps working.
Keys the Go runtime parsed but never used are still validated, because a typo found at start-up
is cheaper than a feature that silently stays off. ``docs/config.md`` is the reference; its key
tables are generated from the fields' descriptions by ``docs`` (``python -m nflow.config.docs``).

The package is split at its seams: ``_schema`` (the models), ``_load`` (file and environment),
``_secrets`` (secret references and redaction) and ``_diff`` (what a reload changed).
"""

from __future__ import annotations

from nflow.config._app_limits import APP_LIMIT_KEYS, AppLimitIssue, validate_app_limits
from nflow.config._diff import RESTART_REQUIRED_KEYS, changed_keys, restart_required_keys
from nflow.config._load import find_config, load_config, with_overrides
from nflow.config._schema import (
    ApiConfig,
    AppConfig,
    AuthConfig,
    CacheConfig,
    ClusterConfig,
    Config,
    DatabaseConfig,
    DatabaseNflowConfig,
    DebugConfig,
    DurableConfig,
    ExtraDatabaseConfig,
    HistoryAppConfig,
    HistoryConfig,
    HttpConfig,
    HttpsConfig,
    LimitsConfig,
    LlmConfig,
    LoggingConfig,
    MailConfig,
    MongoConfig,
    MonitorConfig,
    PgSessionConfig,
    PluginConfig,
    RateLimitConfig,
    RedisConfig,
    ReleasesConfig,
    SecurityConfig,
    ServerConfig,
    SessionConfig,
    StudioConfig,
    TracingConfig,
    TrackerConfig,
    TwilioConfig,
    UrlConfig,
    VmPoolConfig,
)
from nflow.config._secrets import redacted, secret_references, with_secrets

__all__ = [
    "APP_LIMIT_KEYS",
    "RESTART_REQUIRED_KEYS",
    "ApiConfig",
    "AppConfig",
    "AppLimitIssue",
    "AuthConfig",
    "CacheConfig",
    "ClusterConfig",
    "Config",
    "DatabaseConfig",
    "DatabaseNflowConfig",
    "DebugConfig",
    "DurableConfig",
    "ExtraDatabaseConfig",
    "HistoryAppConfig",
    "HistoryConfig",
    "HttpConfig",
    "HttpsConfig",
    "LimitsConfig",
    "LlmConfig",
    "LoggingConfig",
    "MailConfig",
    "MongoConfig",
    "MonitorConfig",
    "PgSessionConfig",
    "PluginConfig",
    "RateLimitConfig",
    "RedisConfig",
    "ReleasesConfig",
    "SecurityConfig",
    "ServerConfig",
    "SessionConfig",
    "StudioConfig",
    "TracingConfig",
    "TrackerConfig",
    "TwilioConfig",
    "UrlConfig",
    "VmPoolConfig",
    "changed_keys",
    "find_config",
    "load_config",
    "redacted",
    "restart_required_keys",
    "secret_references",
    "validate_app_limits",
    "with_overrides",
    "with_secrets",
]
