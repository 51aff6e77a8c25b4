"""Redis helpers: ``redis_hset``, ``redis_hget``, ``redis_hdel``, ``redis_expire``...

The Go runtime exposed go-redis v6 methods, which returned command objects that scripts read
with ``.val()``. Host functions here return plain data, ``{"val": value, "err": null}``, which
already works as ``r.val``; the JS prelude (``redisCmd`` in jsapi/prelude.js) wraps it so that
``redis_hget(k, f).val()`` works as it did in Go.

Differences from Go, on purpose:

* keys get the ``[redis] prefix`` (default ``nflow:``), so playbook keys cannot collide with
  nflow's own (sessions) or another tenant's; set ``prefix = ""`` for the old, bare keys;
* ``redis_expire(key, seconds)`` takes seconds. Go bound ``Expire(key, time.Duration)``, so
  ``redis_expire(key, 30)`` meant 30 ns, which go-redis rounded up to one second;
* a connection failure throws (a script can catch it) instead of hiding in ``.err()``; a
  missing key or field is not a failure: ``val`` is ``""`` and ``err`` is ``"redis: nil"``,
  as in go-redis.

One client per worker: it is created lazily on the worker's I/O loop and cached per loop;
:func:`close_redis` closes it when the runtime shuts down.
"""

from __future__ import annotations

__all__ = ["REDIS_NIL", "close_redis", "redis", "worker_redis"]

import asyncio
import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nflow._io import IoLoop
from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable

if TYPE_CHECKING:
    # The client library is imported by the first script that calls redis: most workers
    # never do, and it weighs several MB (with its OpenTelemetry instruments).
    import redis.asyncio as aioredis

REDIS_NIL = "redis: nil"
_CALL_TIMEOUT = 10.0
_SOCKET_TIMEOUT = 5.0

redis = HostTable()


#: The JavaScript the prelude needs so that Go-era scripts can call ``.val()`` on results.
#: ``cmd`` turns the host's ``{val, err}`` into an object with go-redis's lower-cased methods.
@dataclass(slots=True)
class _Entry:
    settings: tuple[str, str, int]
    client: aioredis.Redis


# Loop → client. Only touched from coroutines running on that loop, so no lock is needed.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = weakref.WeakKeyDictionary()


def _settings(ctx: RunContext) -> tuple[str, str, int]:
    cfg = ctx.services.config.redis
    return (str(cfg.host), str(cfg.password), int(cfg.db))


async def _client(settings: tuple[str, str, int]) -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is not None and entry.settings == settings:
        return entry.client
    if entry is not None:  # the config was reloaded with another server
        await entry.client.aclose()
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    host, password, db = settings
    # Like the Go runtime, an empty [redis] host still gets a client, for the default server.
    name, port = _host_port(host)
    client = aioredis.Redis(
        host=name or "127.0.0.1",
        port=port,
        password=password or None,
        db=db,
        socket_timeout=_SOCKET_TIMEOUT,
        socket_connect_timeout=_SOCKET_TIMEOUT,
        # One quick retry covers a dropped idle connection; the default backs off for
        # seconds, which a script waiting on a dead server would spend blocked.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
    _clients[loop] = _Entry(settings, client)
    return client


async def worker_redis(host: str, password: str, db: int) -> aioredis.Redis:
    """The worker's client for ``host`` (the one scripts use), on the running loop; for
    nflow's own keys beside the scripts' (the step cache)."""
    return await _client((host, password, db))


def _host_port(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, a bare host or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        name, _, port = text.partition(":")
    else:
        name, port = text, ""
    return name, int(port) if port.isdigit() else 6379


async def _close_on_loop() -> None:
    entry = _clients.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry.client.aclose()


async def close_redis(io: IoLoop) -> None:
    """Close the worker's client (call before closing ``io``, from another event loop)."""
    await io.run(_close_on_loop())


def _run(ctx: RunContext, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``client.<method>(*args)`` on the worker's I/O loop, failures as HostError."""
    from redis.exceptions import RedisError

    settings = _settings(ctx)
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError(f"{name}: no time left in this run")
    timeout = min(_CALL_TIMEOUT, remaining)

    async def go() -> Any:
        client = await _client(settings)
        return await getattr(client, method)(*args, **kwargs)

    where = settings[0] or "127.0.0.1:6379"
    try:
        return ctx.services.io.call(go(), timeout=timeout)
    except TimeoutError:
        raise HostError(f"{name}: redis at {where} did not answer in {timeout:.3g} s") from None
    except (RedisError, OSError) as exc:
        raise HostError(f"{name}: redis at {where}: {exc}") from None


def _key(ctx: RunContext, name: str, key: object) -> str:
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise HostError(f"{name}: the key must be a string")
    return f"{ctx.services.config.redis.prefix}{_text(key)}"


def _text(value: object) -> str:
    """A value as go-redis wrote it: numbers without a spurious ``.0``, booleans as 1 and 0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str | int):
        return str(value)
    # go-redis refused maps and slices; storing them as JSON is what scripts then want.
    return orjson.dumps(value).decode()


def _flat(values: tuple[object, ...]) -> list[object]:
    """Variadic arguments, with an array spread as goja spread it into Go's ``...string``."""
    out: list[object] = []
    for value in values:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _seconds(name: str, seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise HostError(f"{name}: seconds must be a number")
    if not math.isfinite(seconds) or seconds < 0:
        raise HostError(f"{name}: seconds must be 0 or more")
    return round(seconds * 1000)


def _decoded(value: bytes | str | None) -> dict[str, Any]:
    if value is None:
        return {"val": "", "err": REDIS_NIL}
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return {"val": text, "err": None}


def _ok(value: object) -> dict[str, Any]:
    return {"val": value, "err": None}


@redis.function("redis_hset")
def redis_hset(ctx: RunContext, key: object, field: object, value: object) -> dict[str, Any]:
    """``{val: true}`` when the field is new, ``false`` when it was overwritten (go-redis)."""
    k = _key(ctx, "redis_hset", key)
    f, v = _text(field), _text(value)
    added = int(_run(ctx, "redis_hset", "hset", k, f, v))
    return _ok(added > 0)


@redis.function("redis_hget")
def redis_hget(ctx: RunContext, key: object, field: object) -> dict[str, Any]:
    k = _key(ctx, "redis_hget", key)
    f = _text(field)
    value = _run(ctx, "redis_hget", "hget", k, f)
    return _decoded(value)


@redis.function("redis_hdel")
def redis_hdel(ctx: RunContext, key: object, *fields: object) -> dict[str, Any]:
    k = _key(ctx, "redis_hdel", key)
    names = [_text(f) for f in _flat(fields)]
    if not names:
        return _ok(0)
    removed = int(_run(ctx, "redis_hdel", "hdel", k, *names))
    return _ok(removed)


@redis.function("redis_expire")
def redis_expire(ctx: RunContext, key: object, seconds: object) -> dict[str, Any]:
    k = _key(ctx, "redis_expire", key)
    ms = _seconds("redis_expire", seconds)
    done = bool(_run(ctx, "redis_expire", "pexpire", k, ms))
    return _ok(done)


@redis.function("redis_get")
def redis_get(ctx: RunContext, key: object) -> dict[str, Any]:
    k = _key(ctx, "redis_get", key)
    value = _run(ctx, "redis_get", "get", k)
    return _decoded(value)


@redis.function("redis_set")
def redis_set(ctx: RunContext, key: object, value: object, seconds: object = 0) -> dict[str, Any]:
    """``redis_set(key, value[, seconds])``: seconds > 0 sets a time to live."""
    k = _key(ctx, "redis_set", key)
    v = _text(value)
    ms = _seconds("redis_set", seconds)
    _run(ctx, "redis_set", "set", k, v, px=ms or None)
    return _ok("OK")


@redis.function("redis_del")
def redis_del(ctx: RunContext, *keys: object) -> dict[str, Any]:
    names = [_key(ctx, "redis_del", k) for k in _flat(keys)]
    if not names:
        return _ok(0)
    removed = int(_run(ctx, "redis_del", "delete", *names))
    return _ok(removed)


# Every redis function waits in IoLoop.call: scripts may also await several at once.
redis.allow_await(*redis.names())
