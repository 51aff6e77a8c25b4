"""Per-request cost of a custom Python step next to an equivalent js node (in process).

    .venv/bin/python bench/custom_steps.py [N]

Runs N requests (default 2000) through ``Runtime.handle`` for three one-node flows: a js node,
a sync Python step and an async Python step, each followed by the same js reply node, on a
throwaway SQLite file. Prints requests per second and microseconds per request. Not a test.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

import nflow


@nflow.step("bench_sync")
def bench_sync(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"n": int(data.get("n", 0)) + 1}


@nflow.step("bench_async")
async def bench_async(ctx: nflow.StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"n": int(data.get("n", 0)) + 1}


def _app() -> dict[str, Any]:
    def link(target: str | None) -> dict[str, Any]:
        return {
            "output_1": {"connections": [{"node": target, "output": "input_1"}] if target else []}
        }

    nodes: dict[str, Any] = {
        "reply": {
            "id": "reply",
            "data": {"type": "js", "code": "function main(){ c.JSON(200, payload) }"},
            "outputs": link(None),
        },
        "js": {
            "id": "js",
            "data": {
                "type": "js",
                "code": "function main(){ payload.n = Number(payload.n || 0) + 1 }",
            },
            "outputs": link("reply"),
        },
        "sync": {"id": "sync", "data": {"type": "bench_sync"}, "outputs": link("reply")},
        "async": {"id": "async", "data": {"type": "bench_async"}, "outputs": link("reply")},
    }
    for kind in ("js", "sync", "async"):
        nodes[f"s_{kind}"] = {
            "id": f"s_{kind}",
            "data": {"type": "starter", "method": "GET", "urlpattern": f"/{kind}"},
            "outputs": link(kind),
        }
    return {"drawflow": {"Home": {"data": nodes}}}


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench.json"
        app.write_bytes(orjson.dumps(_app()))
        config = nflow.Config.model_validate({"logging": {"access": False}})
        runtime = nflow.Runtime(
            config, app_files=[app], database_url=f"sqlite+aiosqlite:///{tmp}/b.db"
        )
        async with runtime:
            for kind in ("js", "sync", "async"):
                request = nflow.Request.from_url("GET", f"/{kind}?n=1")
                for _ in range(200):  # warm-up
                    await runtime.handle(request)
                started = time.perf_counter()
                for _ in range(n):
                    response = await runtime.handle(request)
                elapsed = time.perf_counter() - started
                assert response.status == 200 and response.json() == {"n": 2}, response.text
                print(f"{kind:<6} {n / elapsed:8.0f} req/s  {elapsed / n * 1e6:7.0f} us/request")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
