"""Concurrent host I/O, parallel branches and the step cache, in one run (in process, no HTTP
server of nflow's own; a local peer answers the scripts' requests).

    .venv/bin/python bench/io.py [N] [--redis HOST:PORT]

Each row is the mean wall time of one request over N requests (default 10; the best of three
rounds counts, as the machine's other work only ever adds time):

1. Five `http_get`s of a peer endpoint that answers after 100 ms: one after the other in a
   step, under `Promise.all` with `http_get_async`, and as five branches of a `parallel` node.
2. The cost of the awaited path itself: one `http_get` against one `await http_get_async` of
   an endpoint that answers at once (and `redis_get` against `redis_get_async` with --redis).
3. The step cache: a node with `cache_ttl_seconds` whose step fetches the 100 ms endpoint, on
   a miss (a new input each request) and on a hit (the same input); in memory, and in Redis
   with --redis.
4. Why greenlets: the cost of one host call whose I/O does nothing (so only the machinery is
   left), five at a time: made one after the other (the synchronous form), on a thread pool,
   and in greenlets handing their waits back (the mechanism of jsapi/_async.py, without a
   run around it). Not a test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

import nflow
from nflow.engine import Execution

ROUNDS = 3


class _Peer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body in one write: two small writes meet the client's delayed ACK.
    wbufsize = 64 * 1024

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(0.1)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _link(target: str | None) -> dict[str, Any]:
    return {"connections": [{"node": target, "output": "input_1"}] if target else []}


def _js(node_id: str, code: str, to: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "data": {"type": "js", "name_box": node_id, "code": code, **data},
        "inputs": {},
        "outputs": {"output_1": _link(to)},
    }


def _starter(node_id: str, pattern: str, first: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "data": {"type": "starter", "method": "GET", "urlpattern": pattern, "name_box": ""},
        "inputs": {},
        "outputs": {"output_1": _link(first)},
    }


def _app(peer: str) -> dict[str, Any]:
    slow = f"{peer}/slow"
    # Ends each step: answers with the payload's key count.
    answer = "c.JSON(200, {keys: Object.keys(payload).length}) }"
    reply = "function main(){ " + answer
    nodes: dict[str, Any] = {
        "s_seq": _starter("s_seq", "/seq", "seq"),
        "seq": _js(
            "seq",
            f'function main(){{ for (let i = 0; i < 5; i++) http_get("{slow}"); {answer}',
        ),
        "s_all": _starter("s_all", "/all", "all"),
        "all": _js(
            "all",
            "async function main(){ await Promise.all([1,2,3,4,5].map(() => "
            f'http_get_async("{slow}"))); {answer}',
        ),
        "s_one": _starter("s_one", "/one", "one"),
        "one": _js("one", f'function main(){{ http_get("{peer}/fast"); {answer}'),
        "s_one_async": _starter("s_one_async", "/one_async", "one_async"),
        "one_async": _js(
            "one_async", f'async function main(){{ await http_get_async("{peer}/fast"); {answer}'
        ),
        "s_redis": _starter("s_redis", "/redis", "redis"),
        "redis": _js("redis", f'function main(){{ redis_get("k"); {answer}'),
        "s_redis_async": _starter("s_redis_async", "/redis_async", "redis_async"),
        "redis_async": _js(
            "redis_async", f'async function main(){{ await redis_get_async("k"); {answer}'
        ),
        "s_cached": _starter("s_cached", "/cached", "cached"),
        "cached": _js(
            "cached",
            f'function main(){{ payload.got = http_get("{slow}").status_code; {answer}',
            cache_ttl_seconds=600,
        ),
        "s_par": _starter("s_par", "/par", "par"),
        "par": {
            "id": "par",
            "data": {"type": "parallel", "max_concurrency": 5},
            "inputs": {},
            "outputs": {f"output_{i}": _link(f"b{i}") for i in range(1, 6)},
        },
        "join": {
            "id": "join",
            "data": {"type": "join"},
            "inputs": {},
            "outputs": {"output_1": _link("reply")},
        },
        "reply": _js("reply", reply),
    }
    for i in range(1, 6):
        nodes[f"b{i}"] = _js(
            f"b{i}", f'function main(){{ payload.b{i} = http_get("{slow}").status_code }}', "join"
        )
    return {"drawflow": {"Home": {"data": nodes}}}


def _mean_ms(runtime: nflow.Runtime, urls: Callable[[int], str], n: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for i in range(n):
            execution = runtime.handle_sync(nflow.Request.from_url("GET", urls(i)))
            assert isinstance(execution, Execution), execution
            assert execution.response.status == 200, execution.response.body
        best = min(best, (time.perf_counter() - started) / n * 1000.0)
    return best


def _row(label: str, ms: float) -> None:
    print(f"  {label:<58}{ms:>9.2f} ms")


def _measure(runtime: nflow.Runtime, n: int, backend: str, redis: str) -> None:
    if backend == "memory":
        print("1. five 100 ms GETs in one request")
        _row("one after the other (http_get x5)", _mean_ms(runtime, lambda i: "/seq", n))
        _row("Promise.all of http_get_async x5", _mean_ms(runtime, lambda i: "/all", n))
        _row("parallel node, five branches of one http_get", _mean_ms(runtime, lambda i: "/par", n))
        print("2. the awaited path's own cost (an endpoint that answers at once)")
        fast = max(50, n * 20)
        _row("http_get", _mean_ms(runtime, lambda i: "/one", fast))
        _row("await http_get_async", _mean_ms(runtime, lambda i: "/one_async", fast))
        if redis:
            _row("redis_get", _mean_ms(runtime, lambda i: "/redis", fast))
            _row("await redis_get_async", _mean_ms(runtime, lambda i: "/redis_async", fast))
        print("3. step cache (the step fetches the 100 ms endpoint)")
    tag = secrets.token_hex(4)
    # A miss: a new input each request. A hit: one input, stored before the rounds start.
    _row(f"{backend}: miss", _mean_ms(runtime, lambda i: f"/cached?k={tag}{time.time_ns()}", n))
    runtime.handle_sync(nflow.Request.from_url("GET", f"/cached?k={tag}"))
    _row(f"{backend}: hit", _mean_ms(runtime, lambda i: f"/cached?k={tag}", max(50, n * 20)))


def _mechanisms(n: int) -> None:
    import greenlet

    from nflow._io import IO_WAIT, IoLoop

    io = IoLoop(name="bench-io")
    pool = concurrent.futures.ThreadPoolExecutor(16)

    async def nothing() -> None:
        await asyncio.sleep(0)

    def host() -> None:
        io.call(nothing(), timeout=5)

    def one_after_the_other() -> None:
        for _ in range(5):
            host()

    def thread_pool() -> None:
        for future in [pool.submit(host) for _ in range(5)]:
            future.result()

    def greenlets() -> None:
        parked: dict[concurrent.futures.Future[Any], Any] = {}

        def wait(glet: Any, future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
            parked[future] = glet
            return glet.parent.switch()

        def body() -> None:
            IO_WAIT.set(functools.partial(wait, greenlet.getcurrent()))
            host()

        for _ in range(5):
            glet = greenlet.greenlet(body)
            glet.gr_context = contextvars.copy_context()
            glet.switch()
        while parked:
            done, _ = concurrent.futures.wait(
                list(parked), return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                parked.pop(future).switch(future.result())

    print("4. one host call's machinery (its I/O does nothing), five at a time")
    calls = max(1000, n * 200)
    ways = (
        ("one after the other (synchronous)", one_after_the_other),
        ("thread pool", thread_pool),
        ("greenlets (awaited calls)", greenlets),
    )
    best = {label: float("inf") for label, _ in ways}
    for _ in range(ROUNDS + 2):  # cheap rounds: a few more against the machine's noise
        for label, way in ways:
            started = time.perf_counter()
            for _ in range(calls // 5):
                way()
            best[label] = min(best[label], (time.perf_counter() - started) / calls * 1e6)
    for label, us in best.items():
        print(f"  {label:<58}{us:>9.1f} µs a call")
    pool.shutdown()
    io.close()


def _runtime(tmp: str, app: Path, cache: dict[str, Any], redis: str) -> nflow.Runtime:
    config = nflow.Config.model_validate(
        {
            "logging": {"access": False},
            "session": {"secret": "b" * 32},
            "http": {"allowed_hosts": ["127.0.0.1"]},
            # All five branches at once (the default runs four).
            "limits": {"parallel_branches": 8},
            "cache": cache,
            "redis": {"host": redis, "prefix": f"nflow-bench-{secrets.token_hex(4)}:"},
        }
    )
    return nflow.Runtime(config, app_files=[app], database_url=f"sqlite+aiosqlite:///{tmp}/b.db")


def main(n: int, redis: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peer = f"http://127.0.0.1:{server.server_address[1]}"
    backends = [("memory", {"backend": "memory"})]
    if redis:
        backends.append(("redis", {"backend": "redis"}))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = Path(tmp) / "io.json"
            app.write_bytes(orjson.dumps(_app(peer)))
            for backend, cache in backends:
                runtime = _runtime(tmp, app, cache, redis)
                loop = asyncio.new_event_loop()
                loop.run_until_complete(runtime.open())
                try:
                    _measure(runtime, n, backend, redis)
                finally:
                    loop.run_until_complete(runtime.close())
                    loop.close()
    finally:
        server.shutdown()
        server.server_close()
    _mechanisms(n)


if __name__ == "__main__":
    args = sys.argv[1:]
    redis_host = ""
    if "--redis" in args:
        at = args.index("--redis")
        redis_host = args[at + 1]
        del args[at : at + 2]
    main(int(args[0]) if args else 10, redis_host)
