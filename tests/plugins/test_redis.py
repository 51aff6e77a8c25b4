"""The Redis helpers against the real Redis (``NFLOW_TEST_REDIS``, default 127.0.0.1:6379)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
import redis as redis_lib
from plugin_support import PluginRuntime

HOST = os.environ.get("NFLOW_TEST_REDIS", "127.0.0.1:6379")


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}plugins-{secrets.token_hex(3)}:"


@pytest.fixture
def direct() -> Iterator[redis_lib.Redis]:
    host, _, port = HOST.partition(":")
    client = redis_lib.Redis(host=host, port=int(port or 6379), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def rt(plugin_rt: Callable[..., PluginRuntime], prefix: str) -> PluginRuntime:
    return plugin_rt(f'[redis]\nhost = "{HOST}"\nprefix = "{prefix}"\n')


def test_hash_commands_and_prefix(rt: PluginRuntime, prefix: str, direct: redis_lib.Redis) -> None:
    code = """function P(x){ return {val: x.val(), err: x.err()} }
function main(){
  var a = redis_hset("k1", "name", "ana");
  var b = redis_hset("k1", "name", "eva");
  redis_hset("k1", "age", 41);
  var got = redis_hget("k1", "name");
  var age = redis_hget("k1", "age");
  var missing = redis_hget("k1", "nope");
  var e = redis_expire("k1", 30);
  var d = redis_hdel("k1", "age", "nope");
  c.JSON(200, {a: P(a), b: P(b), got: P(got), age: age.val(), missing: P(missing), e: P(e),
               d: P(d), after: redis_hget("k1", "age").val()});
}"""
    out = rt.run(code)
    assert out["a"] == {"val": True, "err": None}
    assert out["b"] == {"val": False, "err": None}  # overwritten, as go-redis reports it
    assert out["got"] == {"val": "eva", "err": None}
    assert out["age"] == "41"
    assert out["missing"] == {"val": "", "err": "redis: nil"}
    assert out["e"] == {"val": True, "err": None}
    assert out["d"] == {"val": 1, "err": None}
    assert out["after"] == ""
    # Stored under the configured prefix, with the time to live in seconds.
    assert direct.hgetall(f"{prefix}k1") == {"name": "eva"}
    assert 28 <= direct.ttl(f"{prefix}k1") <= 30
    assert direct.exists("k1") == 0


def test_string_commands(rt: PluginRuntime, prefix: str, direct: redis_lib.Redis) -> None:
    code = """function P(x){ return {val: x.val(), err: x.err()} }
function main(){
  var s = redis_set("s1", "hello");
  var t = redis_set("s2", 2.5, 60);
  var g = redis_get("s1");
  var d = redis_del("s1", ["s2", "none"]);
  c.JSON(200, {s: P(s), t: P(t), g: P(g), d: P(d), gone: P(redis_get("s1"))});
}"""
    out = rt.run(code)
    assert out == {
        "s": {"val": "OK", "err": None},
        "t": {"val": "OK", "err": None},
        "g": {"val": "hello", "err": None},
        "d": {"val": 2, "err": None},
        "gone": {"val": "", "err": "redis: nil"},
    }
    rt.run('function main(){ redis_set("s3", "x", 60); c.JSON(200, {}) }')
    assert 58 <= direct.ttl(f"{prefix}s3") <= 60


def test_values_are_written_as_go_redis_did(
    rt: PluginRuntime, prefix: str, direct: redis_lib.Redis
) -> None:
    code = """function main(){
  redis_hset("v", "int", 7); redis_hset("v", "float", 1.5); redis_hset("v", "whole", 3.0);
  redis_hset("v", "t", true); redis_hset("v", "f", false); redis_hset("v", "nil", null);
  redis_hset("v", "obj", {a: [1, "b"]});
  c.JSON(200, {});
}"""
    rt.run(code)
    assert direct.hgetall(f"{prefix}v") == {
        "int": "7",
        "float": "1.5",
        "whole": "3",
        "t": "1",
        "f": "0",
        "nil": "",
        "obj": '{"a":[1,"b"]}',
    }


def test_val_method_through_the_prelude_wrapper(rt: PluginRuntime) -> None:
    # The prelude wraps redis_* results as go-redis command objects.
    code = """
function main(){
  redis_hset("w", "f", "v1");
  var r = redis_hget("w", "f");
  var m = redis_hget("w", "missing");
  var thrown = "";
  try { m.result() } catch (e) { thrown = e.message }
  c.JSON(200, {val: r.val(), err: r.err(), str: "" + r, json: JSON.parse(JSON.stringify({x: r})),
               mval: m.val(), merr: m.err(), thrown: thrown,
               expire: redis_expire("w", 5).val()});
}"""
    out = rt.run(code)
    assert out == {
        "val": "v1",
        "err": None,
        "str": "v1",
        "json": {"x": "v1"},
        "mval": "",
        "merr": "redis: nil",
        "thrown": "redis: nil",
        "expire": True,
    }


def test_bad_arguments(rt: PluginRuntime) -> None:
    code = """function main(){
  var errors = [];
  try { redis_expire("k", -1) } catch (e) { errors.push(e.message) }
  try { redis_expire("k", "soon") } catch (e) { errors.push(e.message) }
  try { redis_get({}) } catch (e) { errors.push(e.message) }
  c.JSON(200, errors);
}"""
    assert rt.run(code) == [
        "redis_expire: seconds must be 0 or more",
        "redis_expire: seconds must be a number",
        "redis_get: the key must be a string",
    ]


def test_unreachable_server_is_a_catchable_error(plugin_rt: Callable[..., PluginRuntime]) -> None:
    rt = plugin_rt('[redis]\nhost = "127.0.0.1:1"\n')
    code = """function main(){
  try { redis_hset("k", "f", "v"); c.JSON(200, {ok: true}) }
  catch (e) { c.JSON(200, {ok: false, error: e.message}) }
}"""
    out = rt.run(code)
    assert out["ok"] is False
    assert out["error"].startswith("redis_hset: redis at 127.0.0.1:1: ")


def test_one_client_per_worker(rt: PluginRuntime) -> None:
    from nflow.plugins import _redis

    rt.run('function main(){ redis_set("c", "1"); c.JSON(200, {}) }')
    loop = rt.runtime.services.io.loop
    first = _redis._clients[loop].client
    rt.run('function main(){ redis_get("c"); c.JSON(200, {}) }')
    assert _redis._clients[loop].client is first
    rt.close()
    assert loop not in _redis._clients
