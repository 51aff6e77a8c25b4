"""The step result cache: a node with ``cache_ttl_seconds`` in its data reuses its result.

A result (the ``next`` output, the payload out and the response writes the step made) is
kept for ``cache_ttl_seconds`` under a key made of the app, its version, the node (its data
and, for a js node, its module's source) and the input payload. Where it is kept is the
``[cache]`` section: each worker's own bounded LRU (``memory``), or Redis, shared by every
worker and instance (``redis``).

What is never stored, unless the node sets ``cache_any_calls``: a step that failed, and a
step that made a host call outside :data:`CACHEABLE_CALLS`, the calls that change nothing
and answer every client alike (reading the request, a session or a cookie, writing to a
database, sending mail, drawing a uuid all disqualify it). ``Math.random`` and the clock are
not host calls: a cached step repeats what they gave.

The lookup is itself a host call of the run (:data:`CACHE_CALL`), so a recorded run keeps
whether its step was served from the cache, and a replay is answered the same way.
"""

from __future__ import annotations

__all__ = ["CACHEABLE_CALLS", "CACHE_CALL", "TTL_KEY", "StepCache", "cached", "cached_step"]

import functools
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nflow.engine._js import VMProvider
from nflow.engine._record import WRITERS
from nflow.engine._results import StepResult
from nflow.engine._services import EngineServices
from nflow.errors import ExecutionError
from nflow.jsapi import SETTLED_CALL, HostCallInterceptor, HostError, HostTable, RunContext
from nflow.playbook import Node, Playbook, flag

if TYPE_CHECKING:
    from nflow.config import CacheConfig

log = logging.getLogger("nflow.engine")

TTL_KEY = "cache_ttl_seconds"
ANY_CALLS_KEY = "cache_any_calls"
CACHE_CALL = "nflow.cache"
# Host calls that change nothing and answer every client alike.
CACHEABLE_CALLS = frozenset(
    {
        "calcular_sha512",
        "calcular_sha512_224",
        "calcular_sha512_256",
        "db_query",
        "gemini",
        "get_env",
        "get_template",
        "http_get",
        "http_get_with_header",
        "llm",
        "mustache",
        "ollama",
        "openai",
        "redis_get",
        "redis_hget",
        "rule_run",
        "sleep",
        "template",
        "time_now_unix_nano",
        SETTLED_CALL,
    }
    | (WRITERS - {"c.set_cookie"})
)

# A run of one step: what StepFunction does once the engine and the run are bound.
Step = Callable[[], StepResult]


class _Memory:
    """One worker's results: a bounded LRU of (expiry, encoded result). Steps of several
    threads share it."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class StepCache:
    """The cache of one engine: a worker's memory LRU, or its Redis client's keys."""

    def __init__(self) -> None:
        self._memory: _Memory | None = None
        self._lock = threading.Lock()

    def _local(self, settings: CacheConfig) -> _Memory:
        memory = self._memory
        if memory is None or memory.max_entries != settings.max_entries:
            with self._lock:
                memory = self._memory
                if memory is None or memory.max_entries != settings.max_entries:
                    memory = self._memory = _Memory(settings.max_entries)
        return memory

    def get(self, ctx: RunContext, key: str) -> bytes | None:
        settings = ctx.services.config.cache
        if settings.backend == "memory":
            return self._local(settings).get(key)
        found = _redis(ctx, "GET", key)
        return found if isinstance(found, bytes) else None

    def put(self, ctx: RunContext, key: str, value: bytes, ttl: float) -> None:
        settings = ctx.services.config.cache
        if settings.backend == "memory":
            self._local(settings).put(key, value, ttl)
        else:
            _redis(ctx, "SET", key, value, ttl)


def _redis(ctx: RunContext, command: str, key: str, value: bytes = b"", ttl: float = 0) -> Any:
    # The client library loads here, outside the timed call, the first time it is used.
    import redis.asyncio  # noqa: F401

    from nflow.plugins import worker_redis

    config = ctx.services.config
    settings = config.cache
    name = f"{config.redis.prefix}{settings.key_prefix}{key}"
    timeout = max(0.0, min(settings.redis_timeout_seconds, ctx.remaining()))

    async def go() -> Any:
        client = await worker_redis(config.redis.host, config.redis.password, config.redis.db)
        if command == "GET":
            return await client.get(name)
        return await client.set(name, value, px=max(1, math.ceil(ttl * 1000)))

    try:
        return ctx.services.io.call(go(), timeout=timeout)
    except Exception as exc:
        # The cache is an optimisation: the step runs (or its result is not kept).
        log.warning(
            "step cache: Redis %s failed (%s: %s); the step runs uncached",
            command,
            type(exc).__name__,
            exc,
            extra={"wid": ctx.wid, "app": ctx.app, "node": ctx.node_id},
        )
        return None


class _Capture:
    """The run's host calls during a cached node's step: its writes, and whether one of its
    calls keeps it out of the cache."""

    def __init__(self, inner: HostCallInterceptor | None, any_calls: bool) -> None:
        self.inner = inner
        self.any_calls = any_calls
        self.writes: list[list[Any]] = []
        self.refused = ""

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        if name in WRITERS:
            self.writes.append([name, list(args)])
        if name not in CACHEABLE_CALLS and not self.any_calls and not self.refused:
            self.refused = name
        inner = self.inner
        return call() if inner is None else inner.around(name, args, call)


def ttl_of(node: Node) -> float | None:
    """The node's ``cache_ttl_seconds`` when it asks for caching (a positive number)."""
    value = node.data.get(TTL_KEY)
    if isinstance(value, bool):
        return None
    try:
        ttl = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return ttl if ttl > 0 and math.isfinite(ttl) else None


def key_of(app: str, version: str, node: Node, source: str, payload: Any) -> str:
    material = orjson.dumps(
        [app, version, node.id, node.type, dict(node.data), source, payload],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(material).hexdigest()


def cached(
    cache: StepCache,
    host: HostTable,
    ctx: RunContext,
    node: Node,
    identity: tuple[str, str, str],
    payload: dict[str, Any],
    step: Step,
    count: Callable[[bool], None] | None,
) -> StepResult:
    """Run ``step`` through the cache: ``identity`` is (app, version, the node's source)."""
    ttl = ttl_of(node)
    if ttl is None or ctx.services.config.cache.backend == "off":
        return step()
    app, version, source = identity
    try:
        key = key_of(app, version, node, source, payload)
    except TypeError:
        return step()  # a payload JSON cannot hold: nothing to key it by
    interceptor = ctx.host_interceptor
    lookup = functools.partial(_lookup, cache, ctx, key)
    found = (
        interceptor.around(CACHE_CALL, (node.id, key), lookup)
        if interceptor is not None
        else lookup()
    )
    if isinstance(found, dict):
        if count is not None:
            count(True)
        return _served(host, ctx, node, found)
    if count is not None:
        count(False)
    capture = _Capture(interceptor, flag(node.data.get(ANY_CALLS_KEY)))
    ctx.host_interceptor = capture
    try:
        result = step()
    finally:
        ctx.host_interceptor = interceptor
    if capture.refused:
        log.debug(
            "step cache: node %s not stored: it called %s",
            node.id,
            capture.refused,
            extra={"wid": ctx.wid, "app": ctx.app, "node": node.id},
        )
        return result
    try:
        value = orjson.dumps(
            {"next": result.next, "payload": result.payload, "writes": capture.writes}
        )
    except TypeError:
        return result  # bytes written (c.Blob) or a value JSON cannot hold
    if len(value) <= ctx.services.config.cache.max_entry_bytes:
        cache.put(ctx, key, value, ttl)
    return result


def _lookup(cache: StepCache, ctx: RunContext, key: str) -> dict[str, Any] | None:
    raw = cache.get(ctx, key)
    if raw is None:
        return None
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _served(host: HostTable, ctx: RunContext, node: Node, found: Mapping[str, Any]) -> StepResult:
    """A cached result: its response writes made again (through the run's interceptor, so a
    recording sees them), its payload and output given back."""
    interceptor = ctx.host_interceptor
    for name, args in found.get("writes") or ():
        fn = host.get(str(name))
        if fn is None:
            continue
        call = functools.partial(fn, ctx, *args)
        try:
            if interceptor is not None:
                interceptor.around(str(name), tuple(args), call)
            else:
                call()
        except HostError as exc:
            raise ExecutionError(
                f"node {node.label}: its cached response could not be written: {exc}",
                node=node.id,
            ) from None
    payload = found.get("payload")
    return StepResult(str(found.get("next") or ""), payload if isinstance(payload, dict) else {})


class _CachingEngine(Protocol):
    services: EngineServices
    vms: VMProvider
    step_cache: StepCache


class _CachedRun(Protocol):
    ctx: RunContext
    playbook: Playbook
    modules: Mapping[str, str | None]


def cached_step(step: Callable[..., StepResult]) -> Callable[..., StepResult]:
    """``step`` (a StepFunction) through the engine's step cache, for a node that asks."""

    def through_cache(
        engine: _CachingEngine, run: _CachedRun, node: Node, payload: dict[str, Any]
    ) -> StepResult:
        playbook = run.playbook
        # The code the node runs is part of its identity: a module changed under the same
        # app version must not be served the old module's results.
        sources = [
            run.modules.get(name) or ""
            for name in (node.data.get("script"), node.data.get("module"))
            if isinstance(name, str) and name
        ]
        metrics = engine.services.metrics
        return cached(
            engine.step_cache,
            engine.vms.host,
            run.ctx,
            node,
            (playbook.name, playbook.version or playbook.digest, "\n".join(sources)),
            payload,
            functools.partial(step, engine, run, node, payload),
            functools.partial(metrics.step_cache, playbook.name) if metrics is not None else None,
        )

    return through_cache
