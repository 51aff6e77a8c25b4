"""parallel/join nodes: the branches on a parallel node's outputs run at once (bounded), each
as its own run; their payloads are joined and the flow goes on at the join; errors name the
branch; a recorded run replays without running its branches again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_support import LocalServer, Reply, Seen, json_reply

from harness import Harness, app_doc, js, node, starter
from nflow.history import HistoryReader
from nflow.replay import replay

BASE = (
    '[session]\nbackend = "cookie"\nsecret = "' + "k" * 40 + '"\n'
    '[http]\nallowed_hosts = ["127.0.0.1"]\n'
)


class Peer:
    """Counts requests in flight; with ``gate``, holds each until that many are in at once
    (at most 5 s), so concurrency is seen as an outcome."""

    def __init__(self, gate: int = 0) -> None:
        self.gate = gate
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.all_in = threading.Event()
        self.server = LocalServer(self.app)

    def app(self, seen: Seen) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            if self.in_flight >= self.gate:
                self.all_in.set()
        if self.gate:
            self.all_in.wait(5.0)
        time.sleep(0.05)
        with self.lock:
            self.in_flight -= 1
        return json_reply({"path": seen.path})


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., tuple[Harness, Peer]]]:
    made: list[tuple[Harness, Peer]] = []

    def factory(extra: str = "", gate: int = 0) -> tuple[Harness, Peer]:
        peer = Peer(gate)
        h = Harness(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", tmp_path, toml=BASE + extra)
        made.append((h, peer))
        return h, peer

    yield factory
    for h, peer in made:
        h.close()
        peer.server.close()


def fetching(node_id: str, url: str, to: str | None = "j") -> dict[str, Any]:
    return js(
        node_id,
        f'function main(){{ var r = http_get("{url}/{node_id}"); payload["{node_id}"] = JSON.parse(r.body).path; '
        f'payload.who = "{node_id}"; c.JSON(200, {{dropped: true}}) }}',
        output_1=to,
    )


def fork_app(
    url: str, *, join_data: dict[str, Any] | None = None, **parallel_data: Any
) -> dict[str, Any]:
    par = node("p", "parallel", output_1="b1", output_2="b2", output_3="b3")
    par["data"].update(parallel_data)
    join = node("j", "join", output_1="end")
    join["data"].update(join_data or {})
    return app_doc(
        s=starter("s", "/t", "p"),
        p=par,
        b1=fetching("b1", url),
        b2=fetching("b2", url),
        b3=fetching("b3", url),
        j=join,
        end=js("end", "function main(){ c.JSON(200, payload) }"),
    )


def test_branches_run_at_once_and_their_payloads_are_joined(make: Callable[..., Any]) -> None:
    h, peer = make(gate=3)
    h.serve(fork_app(peer.server.url), "par")
    response = h.request("GET", "/t?x=1")
    assert response.status == 200, response.text
    assert peer.most == 3
    # Later outputs win a shared key; each branch's own keys all arrive; writes in branches
    # are dropped, the node after the join answers.
    assert response.json() == {"x": "1", "b1": "/b1", "b2": "/b2", "b3": "/b3", "who": "b3"}


def test_join_into_a_list_and_bounded_concurrency(make: Callable[..., Any]) -> None:
    h, peer = make()
    h.serve(fork_app(peer.server.url, join_data={"into": "branches"}, max_concurrency=1), "par")
    response = h.request("GET", "/t")
    assert response.status == 200, response.text
    assert peer.most == 1
    body = response.json()
    assert [b["who"] for b in body["branches"]] == ["b1", "b2", "b3"]
    assert "who" not in body


def test_a_failing_branch_is_named(make: Callable[..., Any]) -> None:
    h, peer = make()
    doc = fork_app(peer.server.url)
    doc["drawflow"]["Home"]["data"]["b2"] = js(
        "b2", 'function main(){ throw new Error("no stock") }', output_1="j"
    )
    h.serve(doc, "par")
    response = h.request("GET", "/t")
    assert response.status == 500
    body = response.json()
    assert body["node"] == "p"
    assert "branch output_2 (node b2) of parallel node" in body["error"]
    assert "no stock" in body["error"]


def test_a_branch_over_its_step_limit_answers_408_naming_it(make: Callable[..., Any]) -> None:
    h, peer = make("[limits]\nstep_timeout_seconds = 0.2\n")
    doc = fork_app(peer.server.url)
    doc["drawflow"]["Home"]["data"]["b3"] = js(
        "b3", "function main(){ while(true){} }", output_1="j"
    )
    h.serve(doc, "par")
    response = h.request("GET", "/t")
    assert response.status == 408
    assert "branch output_3 (node b3)" in response.json()["error"]
    # The runtimes are fine afterwards.
    h.serve(fork_app(peer.server.url), "par")
    assert h.request("GET", "/t").status == 200


def test_nested_parallel_and_different_joins_are_refused(make: Callable[..., Any]) -> None:
    h, peer = make()
    doc = fork_app(peer.server.url)
    data = doc["drawflow"]["Home"]["data"]
    data["b1"] = node("b1", "parallel", output_1="b2")
    h.serve(doc, "par")
    response = h.request("GET", "/t")
    assert response.status == 500
    assert "nested parallel nodes are not supported" in response.json()["error"]

    doc = fork_app(peer.server.url)
    data = doc["drawflow"]["Home"]["data"]
    data["b3"] = fetching("b3", peer.server.url, to="j2")
    data["j2"] = node("j2", "join", output_1="end")
    h.serve(doc, "par")
    response = h.request("GET", "/t")
    assert response.status == 500
    assert "reach different join nodes" in response.json()["error"]


def test_a_forked_run_replays_without_running_its_branches(
    make: Callable[..., Any], tmp_path: Path
) -> None:
    h, peer = make('[history]\nmode = "all"\nflush_interval_ms = 20\n')
    h.serve(fork_app(peer.server.url), "par")
    assert h.request("GET", "/t").status == 200
    assert h.runtime.history is not None and h.runtime.history.flush(20.0)

    async def runs() -> list[Any]:
        return list(await HistoryReader(h.runtime.store).list_runs(app="par"))

    found = h.run(h.runtime.store_call(runs()))
    parent = [r for r in found if r.parent_id is None]
    children = [r for r in found if r.parent_id is not None]
    assert len(parent) == 1 and len(children) == 3
    assert {c.parent_id for c in children} == {parent[0].id}
    seen = len(peer.server.seen)
    result = replay(
        h.runtime.config, parent[0].id, database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    )
    assert result is not None and result.identical, result
    assert len(peer.server.seen) == seen
