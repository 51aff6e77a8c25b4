#!/usr/bin/env python3
"""What each operational feature costs a request, in CPU instructions (valgrind), not req/s.

On this 2-CPU machine a wrk figure moves by 10 % between runs, as much as the features
target allows (bench/features.sh needs five interleaved rounds to say anything). An
instruction count does not move: it is the same to within a fraction of a percent from run
to run, so a change of 1 % is visible at once. This script serves ``bench/apps/bench.json``
in-process (the request pipeline the server runs, without granian and wrk) under
``valgrind --tool=callgrind`` and counts the instructions of N requests in each
configuration:

  off      metrics off, access log off, rate limit off          (features.sh "off")
  on       metrics, JSON access log, rate limit that never triggers (features.sh "on")
  metrics, access, ratelimit   one feature at a time
  recorded, unrecorded         the execution history recording every run (none written), and
                               the history off
  sampled                      the history's default policy (every run recorded lightly,
                               failed runs and sample_rate 0.01 of the rest written)
  all                          mode "all": every run recorded in full and written

Only the requests are counted: callgrind dumps its counters when the script calls
``os.getppid()`` right before them and ``os.getpgrp()`` right after (calls nothing else
makes meanwhile), and of two batches in a row the second is reported. The access log writes
to /dev/null and both the access log and the metrics are flushed inside the counted part,
so the background threads' work per request is counted too.

Prints instructions per request, the difference from ``off`` and ``off / config``: the
req/s ratio the configuration would get if the server's time were all in this pipeline
(granian, the kernel and wrk dilute it, so features.sh's ratio is usually a little
closer to 1). Not a test: a tool to compare changes with.

Usage: bench/instructions.py [PATH (/hello)] [N (2000)] [CONFIG ...]
Env: NFLOW_PYTHON (the interpreter with nflow; default .venv/bin/python). Needs valgrind
(apt-get install -y valgrind). Takes about half a minute per configuration.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "bench" / "apps" / "bench.json"
WARMUP = 3000

CONFIGS = {
    "off": {"monitor": False, "access": False, "rate_limit": False},
    "on": {"monitor": True, "access": True, "rate_limit": True},
    "metrics": {"monitor": True, "access": False, "rate_limit": False},
    "access": {"monitor": False, "access": True, "rate_limit": False},
    "ratelimit": {"monitor": False, "access": False, "rate_limit": True},
    # The execution history: every run recorded as outside its sample and none written
    # (sample_rate 0), against history off; the other configurations keep the default.
    "recorded": {"monitor": False, "access": False, "rate_limit": False, "history": "recorded"},
    "unrecorded": {"monitor": False, "access": False, "rate_limit": False, "history": "off"},
    # The history's two targets, writing included: the writer thread's encoding and inserts
    # are counted (it is flushed inside the counted part; callgrind counts every thread).
    "sampled": {"monitor": False, "access": False, "rate_limit": False, "history": "sampled"},
    "all": {"monitor": False, "access": False, "rate_limit": False, "history": "all"},
}
_HISTORY = {
    "": "",
    "recorded": "[history]\nsample_rate = 0.0\nflush_interval_ms = 60000\n",
    "off": '[history]\nmode = "off"\n',
    "sampled": '[history]\nmode = "sampled"\n',
    "all": '[history]\nmode = "all"\n',
}


def config_toml(monitor: bool, access: bool, rate_limit: bool, history: str = "") -> str:
    text = (
        _HISTORY[history] + f"[monitor]\nenabled = {str(monitor).lower()}\n"
        f'[logging]\nformat = "json"\naccess = {str(access).lower()}\n'
        f"[rate_limit]\nenabled = {str(rate_limit).lower()}\n"
    )
    if rate_limit:  # as features.sh: a limit that never triggers
        text += "ip_rate_limit = 1000000000\nip_window_minutes = 1\nip_burst_size = 1000000000\n"
    return text


# --- the measured process -------------------------------------------------------------------


def serve_requests(config_path: str, path: str, count: int) -> None:
    """Warm up, then dispatch ``count`` requests and flush what they queued."""
    import gc

    import nflow._ids
    import nflow.logs
    from nflow._http import Request
    from nflow.config import load_config
    from nflow.logs import AccessLog
    from nflow.observability.metrics import setup_multiprocess_dir
    from nflow.runtime import Runtime
    from nflow.server._apps import dispatch

    # The same run ids every time: the history's sample is drawn from them, and a run drawn
    # into it (recorded in full) costs several times one outside, so random ids made the
    # count move by a few percent between runs of one commit.
    nflow._ids._random.seed(0)
    setup_multiprocess_dir(tempfile.mkdtemp(prefix="nflow-instructions-"))
    access = nflow.logs._access = AccessLog(stream=open(os.devnull, "wb"))  # noqa: SIM115

    def request(i: int) -> Request:
        # 64 client connections, as wrk -c64 makes
        return Request("GET", path, headers=[("host", "x")], client=f"127.0.0.1:{40000 + i % 64}")

    def flush(runtime: Runtime) -> None:
        access.flush()
        if runtime.metrics is not None:
            runtime.metrics.flush()
        if runtime.history is not None:
            runtime.history.flush(timeout=600.0)

    async def main() -> None:
        runtime = Runtime(load_config(config_path), app_files=[APP])
        await runtime.open()
        try:
            for i in range(WARMUP):
                response = await dispatch(runtime, request(i))
                if response.status != 200:
                    raise SystemExit(f"{path} answered {response.status} during the warm-up")
            flush(runtime)
            # Twice, and the second is the one reported: the first after gc.freeze() also
            # holds one-off work (~50 M instructions: about 25 k a request at N = 2000).
            for _ in range(2):
                batch = [request(i) for i in range(count)]
                gc.collect()
                gc.freeze()  # as the server does after start-up
                os.getppid()  # callgrind: a dump here starts the counted part
                for r in batch:
                    await dispatch(runtime, r)
                flush(runtime)
                os.getpgrp()  # callgrind: and a dump here ends it
            if runtime.history is not None:  # a dropped run's writing would not be counted
                history = runtime.history
                print(
                    f"history: {history.written} written, {history.dropped} dropped",
                    file=sys.stderr,
                )
        finally:
            await runtime.close()

    asyncio.run(main())


# --- the driver -------------------------------------------------------------------------------


def instructions(python: str, config_path: str, path: str, count: int, work: str) -> int:
    """Instructions of serve_requests(count)'s requests under callgrind."""
    out = Path(work, "callgrind.out")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "--dump-before=getppid",
        "--dump-before=getpgrp",
        python,
        __file__,
        "--serve",
        config_path,
        path,
        str(count),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    # Dumps: .1 start-up, .2 the first batch, .3 between, .4 the second batch.
    dump = Path(f"{out}.4")
    match = re.search(r"^summary: (\d+)", dump.read_text(), re.M) if dump.exists() else None
    for leftover in Path(work).glob("callgrind.out*"):
        leftover.unlink()
    for line in done.stderr.splitlines():
        if line.startswith("history: "):
            print(f"  {line}", file=sys.stderr)
    if done.returncode != 0 or match is None:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"the measured run failed (exit {done.returncode})")
    return int(match.group(1))


def configurations(names: list[str]) -> list[str] | None:
    """``names`` with ``off`` first (added if missing), or None after saying which is unknown."""
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        print(f"unknown configuration {unknown[0]!r}; choose from {', '.join(CONFIGS)}")
        return None
    return names if "off" in names else ["off", *names]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve_requests(argv[1], argv[2], int(argv[3]))
        return 0
    path = argv[0] if argv else "/hello"
    count = int(argv[1]) if len(argv) > 1 else 2000
    names = configurations(argv[2:] or list(CONFIGS))
    if names is None:
        return 2
    python = os.environ.get("NFLOW_PYTHON") or str(REPO / ".venv" / "bin" / "python")
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode != 0:
        print("valgrind is required (apt-get install -y valgrind)")
        return 2
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"== instructions per request: {path}, {count} requests, commit {commit or '?'}")
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nflow-instructions-") as work:
        for name in names:
            config_path = str(Path(work, f"{name}.toml"))
            # Each its own database, out of the checkout (the history writes to it).
            database = f'[database_nflow]\ndsn = "{Path(work, name + ".db")}"\n'
            Path(config_path).write_text(database + config_toml(**CONFIGS[name]))
            per_request[name] = instructions(python, config_path, path, count, work) / count
            print(f"  measured {name}: {per_request[name]:,.0f}", file=sys.stderr)
    off = per_request["off"]
    print(f"{'config':<10} {'instr/request':>14} {'vs off':>10} {'off/config':>11}")
    for name in names:
        cost = per_request[name]
        print(f"{name:<10} {cost:>14,.0f} {cost - off:>+10,.0f} {off / cost:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
