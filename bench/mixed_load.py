#!/usr/bin/env python3
"""Mixed-load benchmark: good traffic alone, then good traffic beside hostile requests.

Serves bench/apps/bench.json (ANY /bench, ANY /hello) and bench/apps/hostile.json (an endless
loop, a memory bomb and a catastrophic regex, whose document lowers its own time limits with
"nflow_limits") from a throwaway directory, then:

1. loads /bench with wrk alone (after a discarded warm-up): req/s, p99, errors;
2. loads /bench again while a second loader sends hostile requests at a fixed rate of
   HOSTILE_SHARE (10 %) of the rate measured in 1, round-robin over the three hostile routes;
3. samples the RSS of the server (sum over its processes) before, during and after.

Prints a table with PASS/FAIL per target: good req/s mixed >= 80 % of alone, p99 mixed <= 2x
alone, 0 errors on good requests, RSS after within +-20 % of the baseline. This is a benchmark,
not a test; the machine's other load moves every figure.

Env: PORT (8091), WORKERS (2), CONNS (64), DURATION (15, seconds), WARMUP (5),
     HOSTILE_SHARE (0.10), HOSTILE_CONCURRENCY (8, hostile requests in flight at most),
     QUARANTINE (3: limits.quarantine_after_hits; 0 turns the quarantine off),
     SETTLE (8: seconds between the mixed phase and the "after" RSS sample),
     NFLOW (nflow executable; default .venv/bin/nflow), KEEP=1 keeps the work directory.
Exit status: 0 if every target passed, 1 if one failed, 2 on set-up errors.
"""

from __future__ import annotations

import http.client
import itertools
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APPS = [REPO / "bench" / "apps" / "bench.json", REPO / "bench" / "apps" / "hostile.json"]
HOSTILE = ["/hostile/loop", "/hostile/memory", "/hostile/regex"]
HOST = "127.0.0.1"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


PORT = env_int("PORT", 8091)
WORKERS = env_int("WORKERS", 2)
CONNS = env_int("CONNS", 64)
DURATION = env_int("DURATION", 15)
WARMUP = env_int("WARMUP", 5)
SHARE = float(os.environ.get("HOSTILE_SHARE", "0.10"))
CONCURRENCY = env_int("HOSTILE_CONCURRENCY", 8)
QUARANTINE = env_int("QUARANTINE", 3)
SETTLE = float(os.environ.get("SETTLE", "8"))  # seconds before the "after" RSS sample
URL = f"http://{HOST}:{PORT}"


# --- server ---------------------------------------------------------------------------------
def nflow_executable() -> str:
    given = os.environ.get("NFLOW")
    if given:
        return given
    local = REPO / ".venv" / "bin" / "nflow"
    if local.exists():
        return str(local)
    found = shutil.which("nflow")
    if not found:
        sys.exit("nflow executable not found (set NFLOW=...)")
    return found


def answers(path: str) -> bool:
    try:
        with urllib.request.urlopen(URL + path, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_server(work: Path) -> subprocess.Popen[bytes]:
    config = work / "config.toml"
    config.write_text(
        f"[limits]\nquarantine_after_hits = {QUARANTINE}\nquarantine_seconds = 10\n"
        '[logging]\nlevel = "warning"\n'
    )
    command = [nflow_executable(), "serve", "--config", str(config)]
    for app in APPS:
        command += ["--app", str(app)]
    command += ["--host", HOST, "--port", str(PORT), "--workers", str(WORKERS)]
    log = (work / "nflow.log").open("wb")
    server = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if server.poll() is not None:
            sys.stderr.write((work / "nflow.log").read_text()[-2000:])
            sys.exit(2)
        if answers("/hello"):
            return server
        time.sleep(0.1)
    stop(server)
    sys.exit("nflow did not answer /hello within 30 s")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def rss_mib(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kib = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total_kib += int(found.group(1)) if found else 0
    return total_kib / 1024


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self.done.wait(0.2)


# --- load -----------------------------------------------------------------------------------
def unit_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(path: str, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    out = subprocess.run(
        [*command, URL + path], capture_output=True, text=True, timeout=seconds + 60, check=False
    ).stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not rps or not p99:
        sys.exit(f"cannot read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(rps.group(1)), "p99": unit_ms(p99.group(1)), "errors": errors}


class HostileLoader:
    """Fixed-rate requests to the hostile routes, at most CONCURRENCY in flight."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.statuses: Counter[str] = Counter()
        self.sent = 0
        self.skipped = 0
        self.jobs: queue.Queue[str | None] = queue.Queue(maxsize=CONCURRENCY)
        self.lock = threading.Lock()

    def _worker(self) -> None:
        conn = http.client.HTTPConnection(HOST, PORT, timeout=15)
        while (path := self.jobs.get()) is not None:
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(HOST, PORT, timeout=15)
            with self.lock:
                self.statuses[f"{path} {status}"] += 1
        conn.close()

    def run(self, seconds: float) -> None:
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(CONCURRENCY)]
        for worker in workers:
            worker.start()
        paths = itertools.cycle(HOSTILE)
        start = time.monotonic()
        tick = 1.0 / self.rate if self.rate > 0 else seconds
        due = start
        while due < start + seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                self.jobs.put_nowait(next(paths))
                self.sent += 1
            except queue.Full:
                self.skipped += 1
            due += tick
        for _ in workers:
            self.jobs.put(None)
        for worker in workers:
            worker.join(20)


# --- report ---------------------------------------------------------------------------------
def main() -> int:
    if not shutil.which("wrk"):
        sys.exit("wrk is required (apt-get install -y wrk)")
    if answers("/hello"):
        sys.exit(f"something already answers {URL}; set PORT")
    work = Path(tempfile.mkdtemp(prefix="nflow-mixed."))
    server = start_server(work)
    try:
        for path in HOSTILE:  # each route answers as the limits say
            try:
                urllib.request.urlopen(URL + path, timeout=10)
            except urllib.error.HTTPError as exc:
                print(f"GET {path} -> {exc.code}")
        print(f"warm-up {WARMUP}s, then {DURATION}s per phase, wrk -t2 -c{CONNS} on /bench")
        wrk("/bench", WARMUP)
        time.sleep(1)
        rss_base = rss_mib(server.pid)
        alone = wrk("/bench", DURATION)
        rate = SHARE * alone["rps"]
        loader = HostileLoader(rate)
        sampler = RssSampler(server.pid)
        sampler.start()
        hostile = threading.Thread(target=loader.run, args=(DURATION,), daemon=True)
        hostile.start()
        mixed = wrk("/bench", DURATION)
        hostile.join(DURATION + 30)
        sampler.done.set()
        sampler.join()
        # Isolation children (limits.isolate_seconds) stop after 5 s without work.
        time.sleep(SETTLE)
        rss_after = rss_mib(server.pid)
        alive = server.poll() is None
    finally:
        stop(server)
        if os.environ.get("KEEP") == "1":
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ratio = mixed["rps"] / alone["rps"] if alone["rps"] else 0.0
    p99_ratio = mixed["p99"] / alone["p99"] if alone["p99"] else float("inf")
    drift = (rss_after - rss_base) / rss_base if rss_base else float("inf")
    rows = [
        (
            "good req/s",
            f"{alone['rps']:.0f}",
            f"{mixed['rps']:.0f}",
            ">= 80%",
            f"{ratio:.0%}",
            ratio >= 0.8,
        ),
        (
            "good p99 (ms)",
            f"{alone['p99']:.1f}",
            f"{mixed['p99']:.1f}",
            "<= 2x",
            f"{p99_ratio:.2f}x",
            p99_ratio <= 2.0,
        ),
        (
            "good errors",
            f"{alone['errors']:.0f}",
            f"{mixed['errors']:.0f}",
            "0",
            f"{mixed['errors'] + alone['errors']:.0f}",
            mixed["errors"] + alone["errors"] == 0,
        ),
        (
            "server RSS (MiB)",
            f"{rss_base:.0f}",
            f"peak {sampler.peak:.0f}, after {rss_after:.0f}",
            "after +-20%",
            f"{drift:+.0%}",
            abs(drift) <= 0.2,
        ),
    ]
    print()
    print(f"{'':18} {'alone':>8} {'mixed':>22}  {'target':<12} {'value':>7}  result")
    for name, a, m, target, value, ok in rows:
        print(f"{name:18} {a:>8} {m:>22}  {target:<12} {value:>7}  {'PASS' if ok else 'FAIL'}")
    print()
    print(
        f"hostile: {loader.sent} sent at {rate:.0f}/s ({SHARE:.0%} of the good rate alone), "
        f"{loader.skipped} skipped (all {CONCURRENCY} in flight); quarantine_after_hits = "
        f"{QUARANTINE}"
    )
    for key, count in sorted(loader.statuses.items()):
        print(f"  {key}: {count}")
    if not alive:
        print("the server exited during the run")
    passed = all(row[-1] for row in rows) and alive
    print("overall:", "PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
