"""The step result cache: a node with cache_ttl_seconds serves the same app version, node and
input payload from its cache (a worker's memory, or Redis shared by instances), never caches
a failed step or one with a call that changes something, counts hits and misses, and
replays a served step identical."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_support import LocalServer, Seen, json_reply

from harness import Harness, app_doc, js, starter
from nflow.history import HistoryReader
from nflow.replay import replay

BASE = (
    '[session]\nbackend = "cookie"\nsecret = "' + "k" * 40 + '"\n'
    '[http]\nallowed_hosts = ["127.0.0.1"]\n'
    "[monitor]\nenabled = true\n"
)


@pytest.fixture
def peer() -> Iterator[LocalServer]:
    # Answers {"n": <requests so far>}; /fail/... answers {"fail": true} the first time.
    def app(seen: Seen) -> Any:
        n = len(server.seen)
        if seen.path.startswith("/fail/") and n == 1:
            return json_reply({"fail": True})
        return json_reply({"n": n})

    server = LocalServer(app)
    yield server
    server.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(extra: str = "", *, name: str = "h") -> Harness:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        h = Harness(f"sqlite+aiosqlite:///{folder / 'n.db'}", folder, toml=BASE + extra)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def cached_js(node_id: str, code: str, ttl: float = 60, **data: Any) -> dict[str, Any]:
    node = js(node_id, code)
    node["data"].update({"cache_ttl_seconds": ttl, **data})
    return node


def serve(h: Harness, app: str, code: str, **data: Any) -> None:
    h.serve(app_doc(s=starter("s", "/t", "a"), a=cached_js("a", code, **data)), app)


def counter(h: Harness, name: str, app: str) -> float:
    text = h.request("GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith(f'{name}{{app="{app}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


FETCHING = """function main(){
  var r = http_get("PEER/n");
  c.SetHeader("X-From", "step");
  c.JSON(200, {peer: JSON.parse(r.body).n, q: payload.q});
  payload.seen = JSON.parse(r.body).n;
}"""


def test_same_input_is_served_from_memory_and_counted(
    make: Callable[..., Harness], peer: LocalServer
) -> None:
    h = make()
    serve(h, "cache_mem", FETCHING.replace("PEER", peer.url))
    first = h.request("GET", "/t?q=1")
    again = h.request("GET", "/t?q=1")
    other = h.request("GET", "/t?q=2")
    assert first.json() == again.json() == {"peer": 1, "q": "1"}
    assert again.header("x-from") == "step"
    assert other.json() == {"peer": 2, "q": "2"}
    assert len(peer.seen) == 2
    assert counter(h, "nflow_cache_hits_total", "cache_mem") == 1
    assert counter(h, "nflow_cache_misses_total", "cache_mem") == 2


def test_a_result_expires_after_its_ttl(make: Callable[..., Harness], peer: LocalServer) -> None:
    h = make()
    serve(h, "cache_ttl", FETCHING.replace("PEER", peer.url), cache_ttl_seconds=0.2)
    assert h.request("GET", "/t").json()["peer"] == 1
    assert h.request("GET", "/t").json()["peer"] == 1
    time.sleep(0.4)
    assert h.request("GET", "/t").json()["peer"] == 2


def test_a_new_app_version_does_not_see_the_old_results(
    make: Callable[..., Harness], peer: LocalServer
) -> None:
    h = make()
    serve(h, "cache_ver", FETCHING.replace("PEER", peer.url))
    assert h.request("GET", "/t").json()["peer"] == 1
    serve(h, "cache_ver", FETCHING.replace("step", "step v2").replace("PEER", peer.url))
    changed = h.request("GET", "/t")
    assert changed.json()["peer"] == 2 and changed.header("x-from") == "step v2"


def test_steps_that_change_something_or_fail_are_not_cached(
    make: Callable[..., Harness], peer: LocalServer
) -> None:
    h = make()
    posting = 'function main(){ var r = http_post("PEER/n", "x"); c.JSON(200, {peer: JSON.parse(r.body).n}) }'
    serve(h, "cache_post", posting.replace("PEER", peer.url))
    assert [h.request("GET", "/t").json()["peer"] for _ in range(2)] == [1, 2]

    # The node may say its calls are safe to repeat.
    serve(h, "cache_post", posting.replace("PEER", peer.url), cache_any_calls=True)
    assert [h.request("GET", "/t").json()["peer"] for _ in range(2)] == [3, 3]

    # Reading the request (a header) keeps a step out of the cache: it answers per client.
    serve(
        h,
        "cache_hdr",
        'function main(){ c.JSON(200, {who: header["X-User"] ? header["X-User"][0] : ""}) }',
    )
    assert h.request("GET", "/t", headers=[("X-User", "ana")]).json() == {"who": "ana"}
    assert h.request("GET", "/t", headers=[("X-User", "eva")]).json() == {"who": "eva"}


def test_a_failed_step_is_not_cached(make: Callable[..., Harness], peer: LocalServer) -> None:
    h = make()
    serve(
        h,
        "cache_fail",
        """function main(){
  var r = JSON.parse(http_get("PEER/fail/x").body);
  if (r.fail) throw new Error("peer said no");
  c.JSON(200, {peer: r.n});
}""".replace("PEER", peer.url),
    )
    failed = h.request("GET", "/t")
    assert failed.status == 500 and "peer said no" in failed.text
    assert h.request("GET", "/t").json() == {"peer": 2}
    assert h.request("GET", "/t").json() == {"peer": 2}
    assert len(peer.seen) == 2


def test_redis_backend_is_shared_by_instances(
    make: Callable[..., Harness], peer: LocalServer, redis_prefix: str
) -> None:
    import secrets

    shared = (
        f'[redis]\nhost = "127.0.0.1:6379"\nprefix = "{redis_prefix}{secrets.token_hex(4)}:"\n'
        '[cache]\nbackend = "redis"\n'
    )
    one, two = make(shared, name="one"), make(shared, name="two")
    serve(one, "cache_shared", FETCHING.replace("PEER", peer.url))
    serve(two, "cache_shared", FETCHING.replace("PEER", peer.url))
    assert one.request("GET", "/t?q=r").json() == {"peer": 1, "q": "r"}
    served = two.request("GET", "/t?q=r")
    assert served.json() == {"peer": 1, "q": "r"} and served.header("x-from") == "step"
    assert len(peer.seen) == 1
    assert counter(two, "nflow_cache_hits_total", "cache_shared") >= 1


def test_redis_down_runs_the_step_uncached(make: Callable[..., Harness], peer: LocalServer) -> None:
    h = make('[redis]\nhost = "127.0.0.1:1"\n[cache]\nbackend = "redis"\n')
    serve(h, "cache_down", FETCHING.replace("PEER", peer.url))
    assert [h.request("GET", "/t").json()["peer"] for _ in range(2)] == [1, 2]


def test_a_served_step_replays_identical(
    make: Callable[..., Harness], peer: LocalServer, tmp_path: Path
) -> None:
    h = make('[history]\nmode = "all"\nflush_interval_ms = 20\n')
    serve(h, "cache_replay", FETCHING.replace("PEER", peer.url))
    assert h.request("GET", "/t?q=z").json() == h.request("GET", "/t?q=z").json()
    history = h.runtime.history
    assert history is not None and history.flush(20.0)

    async def ids() -> list[str]:
        return [r.id for r in await HistoryReader(h.runtime.store).list_runs(app="cache_replay")]

    runs = h.run(h.runtime.store_call(ids()))
    assert len(runs) == 2
    url = f"sqlite+aiosqlite:///{tmp_path / 'h' / 'n.db'}"
    for run_id in runs:
        result = replay(h.runtime.config, run_id, database_url=url)
        assert result is not None and result.identical, result
    assert len(peer.seen) == 1
