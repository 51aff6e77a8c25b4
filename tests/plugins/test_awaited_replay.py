"""A run whose step awaited several host calls at once is recorded in the order the calls
started, with the order they returned in, and replays identical without calling anything."""

from __future__ import annotations

import time
from pathlib import Path

from plugin_support import LocalServer, Reply, Seen, json_reply

from harness import Harness, app_doc, js, starter
from nflow.history import HistoryReader, RunRecord
from nflow.replay import replay

CONFIG = (
    '[session]\nbackend = "cookie"\nsecret = "' + "k" * 40 + '"\n'
    '[history]\nmode = "all"\nflush_interval_ms = 20\n'
    '[http]\nallowed_hosts = ["127.0.0.1"]\n'
)


def delayed(seen: Seen) -> Reply:
    time.sleep(int(seen.path.rsplit("/", 1)[1]) / 1000.0)
    return json_reply({"path": seen.path})


def test_out_of_order_returns_replay_identical(db_url: str, tmp_path: Path) -> None:
    peer = LocalServer(delayed)
    h = Harness(db_url, tmp_path, toml=CONFIG)
    try:
        code = f"""async function main(){{
  const order = [];
  const slow = http_get_async("{peer.url}/wait/500").then(r => order.push("slow"));
  const fast = http_get_async("{peer.url}/wait/0").then(async r => {{
    order.push("fast");
    const again = await http_get_async("{peer.url}/wait/10");
    order.push("again " + again.status_code);
  }});
  await Promise.all([slow, fast]);
  payload.order = order;
  c.JSON(200, {{order: order}});
}}"""
        h.serve(app_doc(s=starter("s", "/t", "a"), a=js("a", code)), "awaited")
        response = h.request("GET", "/t")
        assert response.json() == {"order": ["fast", "again 200", "slow"]}
        assert len(peer.seen) == 3
        history = h.runtime.history
        assert history is not None and history.flush(20.0)

        async def runs() -> list[RunRecord]:
            reader = HistoryReader(h.runtime.store)
            found = await reader.list_runs(app="awaited", limit=10)
            return [r for r in [await reader.get_run(s.id) for s in found] if r is not None]

        (run,) = h.run(h.runtime.store_call(runs()))
        (step,) = run.steps
        calls = [(c.function, c.args or c.result) for c in step.host_calls]
        assert calls == [
            ("http_get", [f"{peer.url}/wait/500"]),
            ("http_get", [f"{peer.url}/wait/0"]),
            ("nflow.settled", [2]),
            ("http_get", [f"{peer.url}/wait/10"]),
            ("nflow.settled", [3]),
            ("nflow.settled", [1]),
        ]
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None and result.identical, result
        assert len(peer.seen) == 3  # the replay called nothing
    finally:
        h.close()
        peer.close()
