"""Awaited host calls (`http_get_async` ...): several in flight at once within one step, the
step's limits over them, and errors a script can catch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plugin_support import LocalServer, PluginRuntime, Reply, Seen, json_reply

LOOPBACK_OK = '[http]\nallowed_hosts = ["127.0.0.1"]\n'


class Gate:
    """A peer whose /slow requests wait (up to 5 s) until ``expected`` are in flight at once,
    so a test sees concurrency as an outcome, not as a duration."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.all_in = threading.Event()

    def app(self, seen: Seen) -> Reply:
        if not seen.path.startswith("/slow"):
            return json_reply({"path": seen.path})
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            if self.in_flight >= self.expected:
                self.all_in.set()
        self.all_in.wait(5.0)
        time.sleep(0.1)
        with self.lock:
            self.in_flight -= 1
        return json_reply({"path": seen.path})


@pytest.fixture
def rt(plugin_rt: Callable[..., PluginRuntime]) -> Iterator[PluginRuntime]:
    yield plugin_rt(LOOPBACK_OK)


def test_promise_all_has_five_requests_in_flight_at_once(
    rt: PluginRuntime, local_server: Callable[..., LocalServer]
) -> None:
    gate = Gate(5)
    peer = local_server(gate.app)
    out = rt.run(f"""async function main(){{
  const urls = [1, 2, 3, 4, 5].map(i => "{peer.url}/slow/" + i);
  const rs = await Promise.all(urls.map(u => http_get_async(u)));
  c.JSON(200, {{paths: rs.map(r => JSON.parse(r.body).path), codes: rs.map(r => r.status_code)}});
}}""")
    assert gate.most == 5
    assert out == {"paths": [f"/slow/{i}" for i in range(1, 6)], "codes": [200] * 5}


def delayed(seen: Seen) -> Reply:
    # /wait/<ms>: answers after that many milliseconds (at most 3 s)
    if seen.path.startswith("/wait/"):
        time.sleep(min(int(seen.path.rsplit("/", 1)[1]), 3000) / 1000.0)
    return json_reply({"path": seen.path})


def test_results_reach_the_script_in_the_order_the_calls_return(
    rt: PluginRuntime, local_server: Callable[..., LocalServer]
) -> None:
    peer = local_server(delayed)
    out = rt.run(f"""async function main(){{
  const order = [];
  const slow = http_get_async("{peer.url}/wait/600").then(r => order.push("slow"));
  const fast = http_get_async("{peer.url}/wait/0").then(r => order.push("fast"));
  await Promise.all([slow, fast]);
  c.JSON(200, {{order: order}});
}}""")
    assert out == {"order": ["fast", "slow"]}


def test_a_failed_call_rejects_its_promise_with_the_host_message(rt: PluginRuntime) -> None:
    rt.reconfigure("")  # loopback refused again
    out = rt.run("""async function main(){
  try { await http_get_async("http://127.0.0.1:9/x"); c.JSON(200, {ok: true}); }
  catch (e) { c.JSON(200, {ok: false, error: e.message}); }
}""")
    assert out["ok"] is False
    assert out["error"].startswith("http_get http://127.0.0.1:9/x: "), out


def test_more_calls_in_flight_than_the_limit_throw_a_clear_error(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    rt = plugin_rt("max_concurrent_host_calls = 2\n" + LOOPBACK_OK)
    peer = local_server(delayed)
    out = rt.run(f"""async function main(){{
  const started = [];
  try {{
    for (let i = 0; i < 3; i++) started.push(http_get_async("{peer.url}/wait/50"));
    c.JSON(200, {{ok: true}});
  }} catch (e) {{
    const done = await Promise.all(started);
    c.JSON(200, {{ok: false, error: e.message, done: done.length}});
  }}
}}""")
    assert out["ok"] is False and out["done"] == 2
    assert "more than 2 host calls in flight at once" in out["error"]
    assert "limits.max_concurrent_host_calls" in out["error"]


def test_the_step_time_limit_covers_the_waiting(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    rt = plugin_rt("step_timeout_seconds = 0.3\n" + LOOPBACK_OK)
    peer = local_server(delayed)
    rt.serve(f"""async function main(){{
  await Promise.all([http_get_async("{peer.url}/wait/3000"), http_get_async("{peer.url}/wait/3000")]);
  c.JSON(200, {{late: true}});
}}""")
    response = rt.request("GET", "/t")
    assert response.status == 408, response.text
    body = response.json()
    assert body["node"] == "a" and "time limit" in body["message"]
    # The runtime that timed out serves the next request.
    rt.serve("function main(){ c.JSON(200, {fine: true}) }")
    assert rt.request("GET", "/t").json() == {"fine": True}


def test_sync_and_awaited_forms_give_the_same_result(
    rt: PluginRuntime, local_server: Callable[..., LocalServer]
) -> None:
    peer = local_server(delayed)
    out = rt.run(f"""async function main(){{
  const a = http_get("{peer.url}/same");
  const b = await http_get_async("{peer.url}/same");
  c.JSON(200, {{same: JSON.stringify(a) === JSON.stringify(b), body: b.body}});
}}""")
    assert out == {"same": True, "body": '{"path":"/same"}'}


def test_awaited_redis_calls_keep_the_go_redis_shape(
    plugin_rt: Callable[..., PluginRuntime], redis_prefix: str
) -> None:
    rt = plugin_rt(f'[redis]\nhost = "127.0.0.1:6379"\nprefix = "{redis_prefix}awaited:"\n')
    out = rt.run("""async function main(){
  await Promise.all([redis_set_async("k1", "v1"), redis_set_async("k2", "v2")]);
  const [a, b, gone] = await Promise.all([redis_get_async("k1"), redis_get_async("k2"), redis_get_async("nope")]);
  await redis_del_async("k1", "k2");
  c.JSON(200, {a: a.val(), b: b.val(), gone: gone.err(), after: redis_get("k1").err()});
}""")
    assert out == {"a": "v1", "b": "v2", "gone": "redis: nil", "after": "redis: nil"}


def test_awaited_database_queries(rt: PluginRuntime) -> None:
    store = rt.runtime.store
    rt.loop.run_until_complete(rt.runtime.store_call(store.put_query("answer", "SELECT 42 AS n")))
    out = rt.run("""async function main(){
  const [a, b] = await Promise.all([db_query_async("answer", []), db_query_async("answer", [])]);
  let missing = "";
  try { await db_query_async("nope", []); } catch (e) { missing = e.message; }
  c.JSON(200, {a: a, b: b, missing: missing});
}""")
    assert out["a"] == out["b"] == [{"n": 42}]
    assert "no query named 'nope'" in out["missing"]


def test_a_run_killed_while_awaiting_stops_and_cancels_its_calls(
    rt: PluginRuntime, local_server: Callable[..., LocalServer]
) -> None:
    release = threading.Event()

    def held(seen: Seen) -> Reply:
        release.wait(5.0)
        return json_reply({"path": seen.path})

    peer = local_server(held)
    rt.serve(f"""async function main(){{
  await http_get_async("{peer.url}/held");
  c.JSON(200, {{finished: true}});
}}""")
    answers: list[Any] = []
    request = threading.Thread(target=lambda: answers.append(rt.request("GET", "/t")))
    registry = rt.runtime.services.processes
    try:
        request.start()
        deadline = time.monotonic() + 5.0
        while not peer.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        (running,) = [p for p in registry.list() if p.app.startswith("plugin-app")]
        assert registry.kill(running.wid)
        request.join(5.0)
        finished_while_held = not request.is_alive()
    finally:
        release.set()
        request.join(5.0)
    assert finished_while_held  # the peer had not answered yet
    (response,) = answers
    assert response.status == 499
    assert response.json() == {"error": f"run {running.wid} was killed", "node": "a"}
