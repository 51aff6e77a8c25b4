"""What a reload changed: the dotted keys that differ, and those only a restart applies."""

from __future__ import annotations

import fnmatch

from nflow.config._schema import Config


def _leaves(prefix: str, value: object, out: dict[str, object]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _leaves(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (entries of [env] and pattern tables one by one)."""
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    _leaves("", old.model_dump(by_alias=True), before)
    _leaves("", new.model_dump(by_alias=True), after)
    missing = object()
    return sorted(
        key
        for key in before.keys() | after.keys()
        if before.get(key, missing) != after.get(key, missing)
    )


# Keys read once at start (connections, sockets, process count, cookie signing) that a SIGHUP
# reload cannot apply; patterns are fnmatch-style.
RESTART_REQUIRED_KEYS: tuple[str, ...] = (
    "database_nflow.*",
    "server.host",
    "server.port",
    "server.workers",
    "server.max_header_bytes",
    "server.shutdown_timeout_seconds",
    "redis.host",
    "redis.password",
    "redis.db",
    "redis.prefix",
    "session.*",
    "https_engine.*",
    "monitor.metrics_port",
    "tracing.*",
    # Built once per worker: the JS engine's limits, thread pool, metrics, limiter kind,
    # tracker queue and encryption keys.
    "vm_pool.max_size",
    "vm_pool.max_memory_mb",
    "limits.max_stack_kb",
    "limits.isolate_seconds",
    "limits.parallel_branches",
    "monitor.enabled",
    "rate_limit.enabled",
    "rate_limit.backend",
    "tracker.*",
    # The cluster heartbeat and change listener start with each worker.
    "cluster.heartbeat_seconds",
    "cluster.notify",
    # The history writer: its queue, batches and redaction (mode and sample rates are live).
    # The durable queue's workers and leases (retry and wait settings are read per run).
    "durable.enabled",
    "durable.concurrency",
    "durable.lease_seconds",
    "durable.poll_interval_ms",
    "history.queue_size",
    "history.batch_size",
    "history.flush_interval_ms",
    "history.max_value_bytes",
    "history.redact",
    "history.redact_keys",
    "security.enable_encryption",
    "security.encryption_key",
    "security.encrypt_sensitive_data",
)


def restart_required_keys(old: Config, new: Config) -> list[str]:
    """The changed keys that only take effect after a restart, for the SIGHUP reload."""
    return [
        key
        for key in changed_keys(old, new)
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in RESTART_REQUIRED_KEYS)
    ]
