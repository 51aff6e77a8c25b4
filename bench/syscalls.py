#!/usr/bin/env python3
"""System calls per request under load, by configuration (strace -c), not req/s.

bench/instructions.py counts what the features cost in instructions on one thread; it
cannot see what they cost between threads. Under load a worker's threads (granian's, the
event loop's, the JS runs', and any background writer) take turns at the interpreter lock,
and a thread that has to wait for it sleeps in ``futex``: more futex calls per request
means more handing over and waiting, which shows in req/s but hides in the noise of a
shared machine. This script serves ``bench/apps/bench.json`` from one nflow worker per
configuration (``off``, ``on`` and one feature at a time, as in instructions.py), loads it
with wrk and counts the worker's system calls with ``strace -c -f`` over the load, ROUNDS
times, and prints the median calls per request of each kind next to ``off``.

The counts move by ~10 % from round to round (they depend on how the threads happen to
meet), far less than the differences they are for: a background thread waking up to work
every 20 ms added ~0.3 futex calls to every request.

Usage: bench/syscalls.py [CONFIG ...]   (default: off on metrics access ratelimit)
Env: NFLOW (default .venv/bin/nflow), PATH_ (/hello), PORT (8095; one port per
configuration from there), CONNS (32), DURATION (5, seconds), ROUNDS (3). Needs strace,
wrk and curl; loopback only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import APP, CONFIGS, REPO, config_toml, configurations

KINDS = ("futex", "write", "writev", "epoll_wait", "recvfrom", "sendto", "read")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def worker_pid(parent: int) -> int | None:
    found = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    return pids[0] if pids else None


def strace_counts(text: str) -> dict[str, int]:
    """The calls column of ``strace -c`` per syscall name."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        name = fields[-1] if len(fields) >= 5 else ""
        if re.fullmatch(r"[a-z_0-9]+", name) and fields[3].isdigit() and name != "total":
            counts[name] = int(fields[3])
    return counts


def measure(url: str, pid: int, conns: int, duration: int, work: Path) -> dict[str, float]:
    """Calls per request of the worker ``pid`` while wrk loads ``url``."""
    subprocess.run(["wrk", "-t1", f"-c{conns}", "-d2s", url], capture_output=True, timeout=60)
    out = work / f"strace-{pid}-{time.monotonic_ns()}.txt"
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # attached to every thread before the load starts
        done = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", url],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        time.sleep(0.3)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    match = re.search(r"(\d+) requests in", done.stdout)
    if done.returncode != 0 or match is None or "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk failed on {url}:\n{done.stdout}{done.stderr}")
    requests = int(match.group(1))
    counts = strace_counts(out.read_text())
    per_request = {kind: counts.get(kind, 0) / requests for kind in KINDS}
    per_request["all"] = sum(counts.values()) / requests
    return per_request


def main(argv: list[str]) -> int:
    names = configurations(argv or list(CONFIGS))
    if names is None:
        return 2
    for tool in ("strace", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is required (apt-get install -y {tool})")
            return 2
    nflow = os.environ.get("NFLOW") or str(REPO / ".venv" / "bin" / "nflow")
    path = os.environ.get("PATH_", "/hello")
    port = int(os.environ.get("PORT", "8095"))
    conns = int(os.environ.get("CONNS", "32"))
    duration = int(os.environ.get("DURATION", "5"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    servers: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="nflow-syscalls-") as tmp:
        work = Path(tmp)
        try:
            for i, name in enumerate(names):
                url = f"http://127.0.0.1:{port + i}{path}"
                if answers(url):
                    print(f"something already answers port {port + i}; pick another PORT")
                    return 2
                directory = work / name
                directory.mkdir()
                (directory / "config.toml").write_text(config_toml(**CONFIGS[name]))
                log = open(directory / "nflow.log", "wb")  # noqa: SIM115
                command = [nflow, "serve", "--config", "config.toml", "--app", str(APP)]
                command += ["--host", "127.0.0.1", "--port", str(port + i), "--workers", "1"]
                servers[name] = subprocess.Popen(
                    command,
                    cwd=directory,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            for i, name in enumerate(names):
                url = f"http://127.0.0.1:{port + i}{path}"
                deadline = time.monotonic() + 30
                while not answers(url):
                    if servers[name].poll() is not None or time.monotonic() > deadline:
                        print(f"nflow ({name}) did not start; see its log:")
                        print((work / name / "nflow.log").read_text()[-2000:])
                        return 3
                    time.sleep(0.1)
            for round_ in range(rounds):
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    i = names.index(name)
                    pid = worker_pid(servers[name].pid)
                    if pid is None:
                        print(f"nflow ({name}) has no worker process")
                        return 3
                    url = f"http://127.0.0.1:{port + i}{path}"
                    counts = measure(url, pid, conns, duration, work)
                    results[name].append(counts)
                    futex = counts["futex"]
                    print(
                        f"  round {round_ + 1} {name}: {futex:.3f} futex/request", file=sys.stderr
                    )
        finally:
            for server in servers.values():
                if server.poll() is None:
                    server.terminate()
                    try:
                        server.wait(10)
                    except subprocess.TimeoutExpired:
                        server.kill()
    load = f"1 worker, wrk -c{conns} {duration} s, median of {rounds} rounds"
    print(f"== system calls per request: {path}, {load}")
    columns = ("all", *KINDS)
    print(f"{'config':<10}" + "".join(f"{kind:>11}" for kind in columns) + f"{'futex vs off':>14}")
    off = statistics.median(r["futex"] for r in results["off"])
    for name in names:
        medians = {kind: statistics.median(r[kind] for r in results[name]) for kind in columns}
        row = "".join(f"{medians[kind]:>11.3f}" for kind in columns)
        print(f"{name:<10}{row}{medians['futex'] - off:>+14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
