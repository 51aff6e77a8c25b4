"""Durable runs on a two-instance cluster: throughput, kill -9 recovery, runs lost.

    .venv/bin/python bench/durable.py [--runs 1000] [--workers 1] [--concurrency 16]
                                      [--clients 32] [--lease 6] [--keep]

Creates a PostgreSQL database of its own (on ``NFLOW_BENCH_PG``, default
``postgresql://postgres@127.0.0.1:5432/test``), starts two ``nflow serve`` instances on it
(``[durable] enabled``, free 127.0.0.1 ports, throwaway directories), and measures:

1. **Throughput**: ``--runs`` async starts of a 4-node flow (trivial js nodes), sent by
   ``--clients`` concurrent HTTP clients to both instances in turn. Prints the accept rate
   (``202`` answers per second) and the end-to-end rate: runs / (last run ended − first run
   accepted), read from the queue table.
2. **Kill -9**: ``--runs`` async starts of a 4-node flow whose nodes each log their execution
   in a table (``db_exec``) and work 20 ms. Once a third have completed, while runs are still
   being sent, every process of one instance gets SIGKILL (by PID); its clients then send to
   the other instance (a run without a ``202`` was not accepted). Prints how long after the
   kill the first run of the dead instance resumed on the survivor and when the last one
   did, the runs lost (accepted but not completed 120 s after the kill), and how many node
   executions were repeated (only nodes that were running when the instance died may run
   twice).

Also prints the CPU time per run of the nflow processes and of their PostgreSQL backends
during the throughput phase: other work on a shared machine lowers runs/s, not that.

Everything it starts is stopped by PID; the database is dropped unless ``--keep``. Not a
test: nothing checks these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN = os.environ.get("NFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tree(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        found.extend(tree(int(child)))
    found.append(pid)
    return found


def kill_tree(pid: int) -> list[int]:
    pids = tree(pid)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def js(node_id: str, code: str, target: str | None) -> dict[str, Any]:
    conns = [{"node": target, "output": "input_1"}] if target else []
    return {
        "id": node_id,
        "data": {"type": "js", "name_box": node_id, "code": code},
        "inputs": {},
        "outputs": {"output_1": {"connections": conns}},
    }


def flow(prefix: str, pattern: str, body: str, last: str) -> dict[str, dict[str, Any]]:
    names = [f"{prefix}{i}" for i in range(4)]
    nodes: dict[str, dict[str, Any]] = {
        f"{prefix}s": {
            "id": f"{prefix}s",
            "data": {"type": "starter", "method": "POST", "urlpattern": pattern, "async": True},
            "inputs": {},
            "outputs": {"output_1": {"connections": [{"node": names[0], "output": "input_1"}]}},
        }
    }
    for i, name in enumerate(names):
        final = i == len(names) - 1
        code = body.replace("NODE", name) + (last if final else " next = 'output_1';")
        nodes[name] = js(name, "function main(){ " + code + " }", None if final else names[i + 1])
    return nodes


def app() -> dict[str, Any]:
    fast = flow("f", "/fast", "payload.n = (payload.n || 0) + 1;", " c.JSON(200, payload);")
    work = flow(
        "w",
        "/work",
        "db_exec('log_node', [run_info().run_id, 'NODE', wid]); sleep(20);",
        " c.JSON(200, {ok: true});",
    )
    return {"drawflow": {"Home": {"data": {**fast, **work}}}}


class Instance:
    def __init__(self, root: Path, name: str, dsn: str, args: argparse.Namespace) -> None:
        self.dir = root / name
        self.dir.mkdir()
        (self.dir / "app.json").write_text(json.dumps(app()))
        (self.dir / "config.toml").write_text(
            f'[database_nflow]\ndriver = "postgres"\ndsn = "{dsn}"\n'
            f"[durable]\nenabled = true\nconcurrency = {args.concurrency}\n"
            f"lease_seconds = {args.lease}\n"
            '[databases.nflow]\nread_only = false\n[logging]\naccess = false\nlevel = "error"\n'
            '[history]\nmode = "off"\n'
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        nflow = Path(sys.executable).with_name("nflow")
        command = [str(nflow), "serve", "--app", "app.json", "--port", str(self.port)]
        command.extend(("--workers", str(args.workers)))
        self.proc = subprocess.Popen(
            command,
            cwd=self.dir,
            stdout=(self.dir / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"instance exited: {(self.dir / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(self.url + "/health", timeout=1)
                return
            time.sleep(0.2)
        sys.exit("instance did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                self.proc.wait(5)


def libpq(database: str) -> str:
    base, _, _ = ADMIN.rpartition("/")
    return f"{base}/{database}"


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare(database: str) -> None:
    from nflow.store import Store

    url = libpq(database).replace("postgresql://", "postgresql+asyncpg://", 1)
    store = Store(url)
    await store.open()
    try:
        await store.put_query(
            "log_node", "INSERT INTO node_runs (run_id, node, wid) VALUES ($1, $2, $3)"
        )
    finally:
        await store.close()
    conn = await asyncpg.connect(libpq(database), timeout=10)
    try:
        await conn.execute(
            "CREATE TABLE node_runs (run_id text NOT NULL, node text NOT NULL, wid text NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
    finally:
        await conn.close()


async def submit(instances: list[Instance], path: str, runs: int, clients: int) -> list[str]:
    ids: list[str] = []
    counter = iter(range(runs))

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            target = instances[i % len(instances)]
            try:
                r = await http.post(f"{target.url}{path}", json={"i": i})
            except httpx.TransportError:
                # That instance is gone (the kill test): a client that got no 202 has had
                # nothing accepted, and sends the run to the other one, as a balancer would.
                target = instances[(i + 1) % len(instances)]
                r = await http.post(f"{target.url}{path}", json={"i": i})
            if r.status_code != 202:
                raise SystemExit(f"run {i} refused: {r.status_code} {r.text}")
            ids.append(r.json()["run_id"])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return ids


async def completed(conn: asyncpg.Connection, ids: list[str]) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM nflow_durable_runs WHERE status = 'completed' AND id = ANY($1)",
            ids,
        )
    )


async def throughput(instances: list[Instance], database: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(libpq(database), timeout=10)
    try:
        # Warm up (JS runtimes, pools, compiled statements) before measuring.
        warm = await submit(instances, "/fast", 64, args.clients)
        while await completed(conn, warm) < len(warm):
            await asyncio.sleep(0.05)
        nflow_pids = [p for i in instances for p in tree(i.proc.pid)]
        backends = [
            int(r[0])
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        ]
        nflow_cpu, pg_cpu = cpu_seconds(nflow_pids), cpu_seconds(backends)
        started = time.monotonic()
        ids = await submit(instances, "/fast", args.runs, args.clients)
        accepted = time.monotonic() - started
        deadline = time.monotonic() + 300
        while await completed(conn, ids) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        first, last, done = await conn.fetchrow(
            "SELECT min(created_at), max(ended_at), count(*) FILTER (WHERE status='completed')"
            " FROM nflow_durable_runs WHERE id = ANY($1)",
            ids,
        )
        nflow_cpu = cpu_seconds(nflow_pids) - nflow_cpu
        pg_cpu = cpu_seconds(backends) - pg_cpu
    finally:
        await conn.close()
    seconds = (last - first) / 1e6
    print(f"throughput: {len(ids)} async runs of a 4-node flow, {args.clients} clients")
    print(f"  accepted (202)      {len(ids) / accepted:8.0f} runs/s  ({accepted:.2f} s)")
    print(f"  completed end-to-end {done / seconds:7.0f} runs/s  ({done} in {seconds:.2f} s)")
    per_run = (nflow_cpu + pg_cpu) / len(ids) * 1000
    print(
        f"  CPU per run          {per_run:7.2f} ms  (nflow {nflow_cpu / len(ids) * 1000:.2f} ms, "
        f"PostgreSQL backends {pg_cpu / len(ids) * 1000:.2f} ms): at most "
        f"{(os.cpu_count() or 1) * 1000 / per_run:.0f} runs/s on {os.cpu_count()} idle CPUs"
    )
    print(f"  load average now     {os.getloadavg()[0]:.1f} (other work on this machine)")


async def kill_test(instances: list[Instance], database: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(libpq(database), timeout=10)
    try:
        victim = instances[0]
        count = "SELECT count(*) FROM nflow_durable_runs WHERE status = 'completed'"
        before = int(await conn.fetchval(count))
        # The kill comes while runs are still being sent: once a third have completed.
        sending = asyncio.create_task(submit(instances, "/work", args.runs, args.clients))
        while int(await conn.fetchval(count)) - before < args.runs // 3:
            await asyncio.sleep(0.02)
        done_at_kill = int(await conn.fetchval(count)) - before
        killed_at = time.time()
        killed = kill_tree(victim.proc.pid)
        ids = await sending
        victim.proc.wait(10)
        deadline = time.monotonic() + 120
        while await completed(conn, ids) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        done = await completed(conn, ids)
        resumed = await conn.fetch(
            "SELECT run_id, min(at) AS first FROM node_runs WHERE wid LIKE '%.%' GROUP BY run_id"
        )
        executions = await conn.fetchval("SELECT count(*) FROM node_runs")
        checkpoints = await conn.fetchval(
            "SELECT count(*) FROM nflow_durable_steps WHERE run_id = ANY($1)", ids
        )
    finally:
        await conn.close()
    print(
        f"kill -9: {len(killed)} processes of one instance killed with {done_at_kill} runs "
        f"completed, while runs were still being sent; {len(ids)} accepted in all"
    )
    if resumed:
        times = sorted(r["first"].timestamp() - killed_at for r in resumed)
        print(f"  runs taken over      {len(resumed)}")
        print(f"  first resumed        {times[0]:.2f} s after the kill")
        print(f"  last resumed         {times[-1]:.2f} s after the kill")
    else:
        print("  no run was in flight on the killed instance")
    print(f"  runs lost            {len(ids) - done} of {len(ids)}")
    print(
        f"  node executions      {executions} for {checkpoints} committed nodes "
        f"({executions - checkpoints} repeated: nodes interrupted by the kill)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="nflow serve --workers")
    parser.add_argument("--concurrency", type=int, default=16, help="durable.concurrency")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--lease", type=float, default=6.0, help="durable.lease_seconds")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    database = f"nflow_bench_durable_{secrets.token_hex(4)}"
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    root = Path(tempfile.mkdtemp(prefix="nflow-durable-bench-"))
    instances: list[Instance] = []
    try:
        asyncio.run(prepare(database))
        dsn = libpq(database).replace("postgresql://", "postgres://", 1)
        instances = [Instance(root, name, dsn, args) for name in ("a", "b")]
        for instance in instances:
            instance.wait_ready()
        print(
            f"two instances x {args.workers} worker(s), durable.concurrency {args.concurrency}, "
            f"lease {args.lease:g} s, PostgreSQL, {os.cpu_count()} CPUs"
        )
        asyncio.run(throughput(instances, database, args))
        asyncio.run(kill_test(instances, database, args))
    finally:
        for instance in instances:
            instance.stop()
        shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
