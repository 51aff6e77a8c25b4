"""Memory of the whole ``nflow serve`` server, idle and after a bounded c256 load, beside Node-RED.

    .venv/bin/python bench/memory.py [--workers 2] [--duration 10s] [--conns 256] [--no-peer]

Starts ``nflow serve --app bench/apps/bench.json --workers N`` from a throwaway directory on a
free 127.0.0.1 port, waits until ``/hello`` answers and the workers settle, and prints the RSS
(``ps -o rss``, which counts shared pages in every process) and the PSS (``/proc/PID/smaps_rollup``,
which splits shared pages between the processes sharing them) of the master, of each worker and
their sums. Then it runs ``wrk -t2 -cCONNS -dDURATION http://127.0.0.1:PORT/hello`` and prints
the same rows again. When the Node-RED peer can start (``../shared/bench/peer-nodered.sh``, a
Node-RED installed under ``~/.cache/nflow-peers``), it does the same for it, side by side.
Everything it starts is stopped by PID. Not a test: nothing checks these numbers.

``--cached-bytecode`` measures nflow as a regular install runs it: with ``PYTHONDONTWRITEBYTECODE``
set and an editable install (a development checkout), every process compiles nflow's modules
from source at each start, and the compiler's garbage stays in each process's RSS (about 3 MB
a worker). The flag lets the server write its bytecode to a cache in the work directory (the
start-up check, which imports what the workers will, writes it before they start).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "bench" / "apps" / "bench.json"
PEER = REPO.parent / "shared" / "bench" / "peer-nodered.sh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


def wait_ready(url: str, pid: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answers(url):
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise SystemExit(f"{url}: the server (PID {pid}) exited during start-up") from None
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


def descendants(pid: int) -> list[int]:
    """The children of ``pid``, their children and so on (the workers and their helpers)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in task.read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


def rss_kb(pid: int) -> int:
    out = subprocess.run(
        ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()
    return int(out) if out else 0


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _mb(rss_kb: int, pss_kb: int) -> str:
    return f"RSS {rss_kb / 1024:7.1f} MB  PSS {pss_kb / 1024:7.1f} MB"


def snapshot(label: str, root: int, with_children: bool) -> tuple[int, int]:
    """Print one row per process and the sums; return the summed (RSS, PSS) in kB."""
    pids = [root] + (descendants(root) if with_children else [])
    total_rss = total_pss = 0
    for i, pid in enumerate(pids):
        rss, pss = rss_kb(pid), pss_kb(pid)
        total_rss += rss
        total_pss += pss
        role = "master" if i == 0 and with_children else ("worker" if with_children else "node")
        print(f"  {label:<22} {role:<7} pid {pid:<8} {_mb(rss, pss)}")
    print(f"  {label:<22} {'TOTAL':<7} {len(pids)} proc     {_mb(total_rss, total_pss)}")
    return total_rss, total_pss


def wrk(url: str, conns: int, duration: str) -> str:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{duration}", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return f"{float(rps.group(1)) if rps else 0:.0f} req/s, {errors} errors"


def stop(pid: int, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            time.sleep(0.1)
        else:
            print(f"{name} (PID {pid}) still running after 15 s; sending SIGKILL", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def nflow_server(workers: int, port: int, cached_bytecode: bool) -> Iterator[int]:
    nflow = shutil.which("nflow", path=str(Path(sys.executable).parent)) or "nflow"
    with tempfile.TemporaryDirectory(prefix="nflow-memory.") as work:
        env = dict(os.environ)
        if cached_bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(work) / "pycache")
        (Path(work) / "config.toml").write_text("[logging]\naccess = false\n")
        log = open(Path(work) / "nflow.log", "wb")  # noqa: SIM115 - closed below
        command = [nflow, "serve", "--app", str(APP), "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            [*command, "--workers", str(workers)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/hello", proc.pid)
            yield proc.pid
        finally:
            stop(proc.pid, "nflow")
            proc.wait(timeout=30)
            log.close()


@contextlib.contextmanager
def nodered_server(port: int) -> Iterator[int]:
    out = subprocess.run(
        [str(PEER)], env={**os.environ, "PORT": str(port)}, capture_output=True, text=True
    )
    pid = out.stdout.strip()
    if out.returncode != 0 or not pid.isdigit():
        raise RuntimeError(f"peer-nodered.sh failed: {out.stderr.strip()[-300:]}")
    try:
        yield int(pid)
    finally:
        stop(int(pid), "node-red")


def measure(name: str, root: int, url: str, args: argparse.Namespace, tree: bool) -> list[str]:
    # A few requests so that both the lazy first-request work and the steady idle state count.
    for _ in range(8):
        answers(url)
    time.sleep(args.settle)
    rss0, pss0 = snapshot(f"{name} idle", root, tree)
    result = wrk(url, args.conns, args.duration)
    time.sleep(args.settle)
    rss1, pss1 = snapshot(f"{name} after c{args.conns}", root, tree)
    after = f"after c{args.conns} {args.duration}"
    return [f"{name:<8} idle {_mb(rss0, pss0)} | {after} {_mb(rss1, pss1)} | {result}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--conns", type=int, default=256)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each reading")
    parser.add_argument("--no-peer", action="store_true", help="measure nflow only")
    parser.add_argument(
        "--cached-bytecode",
        action="store_true",
        help="let nflow write its bytecode (to the work directory), as an installed package has",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")

    rows: list[str] = []
    port = free_port()
    bytecode = (
        "cached"
        if args.cached_bytecode or not os.environ.get("PYTHONDONTWRITEBYTECODE")
        else ("compiled at each start (PYTHONDONTWRITEBYTECODE is set; see --cached-bytecode)")
    )
    with nflow_server(args.workers, port, args.cached_bytecode) as pid:
        print(f"nflow serve --workers {args.workers} on 127.0.0.1:{port} (master PID {pid})")
        print(f"nflow bytecode: {bytecode}")
        rows += measure("nflow", pid, f"http://127.0.0.1:{port}/hello", args, tree=True)
    if not args.no_peer:
        port = free_port()
        try:
            with nodered_server(port) as pid:
                print(f"node-red on 127.0.0.1:{port} (PID {pid})")
                rows += measure("node-red", pid, f"http://127.0.0.1:{port}/hello", args, tree=False)
        except (RuntimeError, OSError) as exc:
            print(f"node-red peer not measured: {exc}", file=sys.stderr)
    print()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
