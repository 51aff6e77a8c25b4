"""The ``nflow db`` and ``nflow runs`` commands; kept apart from ``cli`` to keep it small.

Heavy imports happen inside the commands, so building the parser stays cheap.
"""

from __future__ import annotations

__all__ = ["add_data_commands"]

import argparse
import asyncio
import sys
from typing import Any


def _store(args: argparse.Namespace, *, migrate: bool) -> Any:
    from nflow.config import find_config
    from nflow.store import Store

    config, _ = find_config(args.config)
    return Store(config.database_url, migrate=migrate)


def cmd_db(args: argparse.Namespace) -> int:
    store = _store(args, migrate=False)

    async def run() -> tuple[str | None, str]:
        await store.open()
        try:
            if args.action == "upgrade":
                result: tuple[str | None, str] = await store.upgrade_schema()
            else:
                result = await store.schema_status()
            return result
        finally:
            await store.close()

    first, second = asyncio.run(run())
    if args.action == "upgrade":
        if first == second:
            print(f"{store.url}: already at revision {second}", flush=True)
        else:
            print(f"{store.url}: upgraded from {first or 'none'} to {second}", flush=True)
        return 0
    state = "up to date" if first == second else f"behind: run `nflow db upgrade` for {second}"
    print(f"{first or 'none'} ({state})", flush=True)
    # Scripts can wait for a database to be upgraded by checking the exit status.
    return 0 if first == second else 3


# runs ---------------------------------------------------------------------------------------
def _when(seconds: float | None) -> str | None:
    from nflow.history import iso_time

    return iso_time(seconds)


def _keyring(config: Any) -> Any:
    from nflow.security import KeyConfigError, KeyRing

    try:
        return KeyRing.load(config=config.security)
    except KeyConfigError:
        # No key anywhere: sealed values show as "[encrypted: …]" instead of failing.
        return None


def _with_history(args: argparse.Namespace, work: Any) -> Any:
    from nflow.config import find_config
    from nflow.history import HistoryReader
    from nflow.store import Store

    config, _ = find_config(args.config)
    store = Store(config.database_url)
    keyring = _keyring(config)

    async def run() -> Any:
        await store.open()
        try:
            return await work(HistoryReader(store, keyring=keyring), config)
        finally:
            await store.close()

    return asyncio.run(run())


def _dump(value: Any) -> str:
    import orjson

    from nflow.history import to_builtins

    return orjson.dumps(to_builtins(value), default=str, option=orjson.OPT_INDENT_2).decode()


def _short_json(value: Any, width: int = 100) -> str:
    import orjson

    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_runs(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _runs_list(args)
    if args.action == "show":
        return _runs_show(args)
    if args.action == "stats":
        return _runs_stats(args)
    if args.action == "replay":
        return _runs_replay(args)
    if args.action == "rerun":
        return _runs_rerun(args)
    if args.action == "retry":
        return _runs_retry(args)
    return _runs_prune(args)


def _runs_retry(args: argparse.Namespace) -> int:
    """A failed durable run, queued again from its last checkpoint (any instance runs it)."""
    from nflow.durable import Queue

    store = _store(args, migrate=True)

    async def run() -> str | None:
        await store.open()
        try:
            result: str | None = await Queue(store).retry(args.run)
            return result
        finally:
            await store.close()

    status = asyncio.run(run())
    if status is None:
        print(f"no durable run {args.run!r}", file=sys.stderr, flush=True)
        return 2
    if status != "queued":
        print(
            f"run {args.run} is {status}: only a failed run can be retried",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"run {args.run} queued again from its last checkpoint", flush=True)
    return 0


def _runs_replay(args: argparse.Namespace) -> int:
    from nflow.config import find_config
    from nflow.replay import replay

    config, _ = find_config(args.config)
    result = replay(config, args.run)
    if result is None:
        print(f"nflow: no run {args.run!r} in the history", file=sys.stderr, flush=True)
        return 2
    divergence = result.divergence
    if args.json:
        data: dict[str, Any] = {
            "run": result.run_id,
            "identical": result.identical,
            "steps": result.steps,
            "divergence": (
                {"step": divergence.step, "node": divergence.node, "what": divergence.what}
                if divergence is not None
                else None
            ),
        }
        print(_dump(data), flush=True)
    elif divergence is None:
        print(f"run {result.run_id}: identical ({result.steps} step(s))", flush=True)
    else:
        print(f"run {result.run_id}: diverged at {divergence}", flush=True)
    return 0 if divergence is None else 1


def _runs_rerun(args: argparse.Namespace) -> int:
    from nflow.config import find_config
    from nflow.replay import rerun

    config, _ = find_config(args.config)
    result = rerun(config, args.run, args.from_step, live=args.live)
    if result is None:
        print(f"nflow: no run {args.run!r} in the history", file=sys.stderr, flush=True)
        return 2
    response = result.response
    if args.json:
        print(
            _dump(
                {
                    "run": result.run_id,
                    "rerun_of": result.parent_id,
                    "from_step": result.from_step,
                    "node": result.node,
                    "status": result.status,
                    "host_calls_from_record": result.served,
                    "host_calls_live": result.live,
                    "response": {
                        "status": response.status,
                        "headers": [list(p) for p in response.headers],
                        "body": response.body.decode("utf-8", "replace"),
                    },
                }
            ),
            flush=True,
        )
    else:
        print(
            f"run {result.run_id}: re-run of {result.parent_id} from step {result.from_step} "
            f"(node {result.node}): {result.status}, HTTP {response.status}; host calls "
            f"{result.served} from the record, {result.live} live",
            flush=True,
        )
        sys.stdout.write(response.body.decode("utf-8", "replace"))
        sys.stdout.flush()
    return 0 if result.status == "ok" else 1


def _runs_list(args: argparse.Namespace) -> int:
    async def work(reader: Any, config: Any) -> Any:
        return await reader.list_runs(
            app=args.app, status=args.status, journey=args.journey, limit=args.limit
        )

    from nflow.history import summary_json

    found = _with_history(args, work)
    if args.json:
        print(_dump([summary_json(r) for r in found]), flush=True)
        return 0
    if not found:
        print("no recorded runs", file=sys.stderr, flush=True)
        return 0
    for r in found:
        status = r.status if r.response_status is None else f"{r.status}/{r.response_status}"
        print(
            f"{r.id}  {_when(r.started_at)}  {r.app}  {status}  {r.duration_ms:.1f} ms  "
            f"{r.steps} step(s)  {r.method} {r.path}".rstrip(),
            flush=True,
        )
    return 0


def _print_step(view: Any) -> None:
    step = view.step
    print(f"step {step.index}: node {step.node_id} ({step.node_type}) {step.node_name}".rstrip())
    print(f"next: {step.next}   duration: {step.duration_ms:.3f} ms")
    print("payload before:")
    print(_dump(step.payload_before))
    if step.error is None:
        print("payload after:")
        print(_dump(step.payload_after))
        print("diff:" if view.diff else "diff: none")
    else:
        print("payload after: none (the step failed)")
    signs = {"added": "+", "removed": "-", "changed": "~"}
    for change in view.diff:
        if change.op == "added":
            detail = _short_json(change.after)
        elif change.op == "removed":
            detail = _short_json(change.before)
        else:
            detail = f"{_short_json(change.before, 48)} -> {_short_json(change.after, 48)}"
        print(f"  {signs[change.op]} {change.key}: {detail}")
    for call in step.host_calls:
        outcome = f"error {call.error}" if call.error else _short_json(call.result)
        print(f"host call {call.function}({_short_json(call.args, 60)}) -> {outcome}")
    for line in step.console:
        print(f"console: {line}")
    for write in step.writes:
        print(f"response write: {_short_json(write)}")
    if step.error is not None:
        where = f" (line {step.error.line})" if step.error.line is not None else ""
        print(f"error{where}: {step.error.message}")
        if step.error.stack:
            print(step.error.stack)
    sys.stdout.flush()


def _runs_show(args: argparse.Namespace) -> int:
    from nflow.history import changes, run_json, step_view_json

    async def work(reader: Any, config: Any) -> Any:
        if args.step is not None:
            return await reader.get_step(args.run, args.step)
        return await reader.get_run(args.run)

    found = _with_history(args, work)
    if found is None:
        what = f"step {args.step} of run" if args.step is not None else "run"
        print(f"nflow: no {what} {args.run!r} in the history", file=sys.stderr, flush=True)
        return 2
    if args.step is not None:
        if args.json:
            print(_dump(step_view_json(found)), flush=True)
        else:
            _print_step(found)
        return 0
    if args.json:
        print(_dump(run_json(found)), flush=True)
        return 0
    run = found
    print(f"run {run.id}  app {run.app}  version {run.version or '-'}  status {run.status}")
    print(
        f"started {_when(run.started_at)}  {run.duration_ms:.1f} ms  "
        f"{run.method} {run.path}{'?' + run.query if run.query else ''} -> {run.response_status}"
    )
    if run.journey or run.parent_id:
        print(f"journey {run.journey or '-'}  parent {run.parent_id or '-'}")
    if run.limit_hit:
        print(f"limit hit: {run.limit_hit}")
    if run.error:
        print(f"error: {run.error}")
    for step in run.steps:
        changed = (
            ", ".join(
                f"{c.op[0]}:{c.key}" for c in changes(step.payload_before, step.payload_after)
            )
            if step.error is None
            else ""
        )
        mark = "  ERROR" if step.error is not None else ""
        print(
            f"  {step.index:>3}  {step.node_id:<8} {step.node_type:<16} -> {step.next or '-':<8} "
            f"{step.duration_ms:8.3f} ms  calls {len(step.host_calls)}  "
            f"{changed}{mark}".rstrip()
        )
    sys.stdout.flush()
    return 0


def _runs_stats(args: argparse.Namespace) -> int:
    from nflow.history import HistoryError, parse_since

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"nflow: --{exc}", file=sys.stderr, flush=True)
        return 2

    async def work(reader: Any, config: Any) -> Any:
        compare = tuple(args.compare) if args.compare else None
        return await reader.stats(args.app, since=since, compare=compare, max_runs=args.max_runs)

    try:
        stats = _with_history(args, work)
    except HistoryError as exc:
        print(f"nflow: {exc}", file=sys.stderr, flush=True)
        return 2
    if args.json:
        print(_dump(stats), flush=True)
        return 0
    if not stats.runs:
        print(f"no recorded runs of app {args.app!r}", file=sys.stderr, flush=True)
        return 0
    print(f"app {stats.app}: {stats.runs} run(s), {stats.total_ms:.1f} ms in nodes", flush=True)
    header = (
        f"{'node':<12} {'type':<10} {'runs':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
        f"{'errors':>7} {'host':>6} {'time':>6}"
    )
    if stats.compare:
        header = f"{'version':<12} " + header
    print(header)
    for n in stats.nodes:
        row = (
            f"{n.node[:12]:<12} {n.type[:10]:<10} {n.runs:>6} {n.p50_ms:>9.3f} {n.p95_ms:>9.3f} "
            f"{n.p99_ms:>9.3f} {n.error_rate:>7.1%} {n.host_share:>6.0%} {n.time_share:>6.0%}"
        )
        print(f"{(n.version or '')[:12]:<12} {row}" if stats.compare else row)
    for v in stats.compare:
        print(
            f"version {v.version}: {v.runs} run(s), {v.total_ms:.1f} ms, "
            f"bottleneck {v.bottleneck or '-'}"
        )
    if stats.bottleneck is not None:
        top = next(n for n in stats.nodes if n.node == stats.bottleneck)
        print(f"bottleneck: node {top.node} ({top.type}) {top.name}".rstrip())
    sys.stdout.flush()
    return 0


def _runs_prune(args: argparse.Namespace) -> int:
    from nflow.history import HistoryPolicy, prune

    async def work(reader: Any, config: Any) -> int:
        policy = HistoryPolicy.from_config(config.history)
        days = args.older_than_days if args.older_than_days is not None else policy.retention_days
        keep = args.keep if args.keep is not None else policy.max_runs
        return await prune(reader.store, retention_days=days, max_runs=keep)

    removed = _with_history(args, work)
    print(f"removed {removed} run(s)", flush=True)
    return 0


def add_data_commands(sub: Any) -> None:
    """Register ``nflow db …`` and ``nflow runs …`` on the CLI's subparsers."""
    p = sub.add_parser("db", help="the database's schema revision (migrations)")
    p.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: apply every newer revision; current: show the revision (exit 3 if behind)",
    )
    p.add_argument("--config")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("runs", help="the execution history: recorded runs, step by step")
    rsub = p.add_subparsers(dest="action", required=True)
    r = rsub.add_parser("list", help="recorded runs, newest first")
    r.add_argument("--app")
    r.add_argument("--status", choices=["ok", "error", "limit"])
    r.add_argument("--journey", help="the runs of one journey (a session's form wizard)")
    r.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    r.add_argument("--json", action="store_true", help="a JSON array")
    r.add_argument("--config")
    r = rsub.add_parser("show", help="one run's timeline, or one step in full")
    r.add_argument("run", help="the run id (or a unique prefix of 6+ characters)")
    r.add_argument("--step", type=int, help="show this step: payloads, diff, host calls, logs")
    r.add_argument("--json", action="store_true", help="a JSON object")
    r.add_argument("--config")
    r = rsub.add_parser(
        "stats", help="per node: runs, p50/p95/p99 duration, error rate, host-call share"
    )
    r.add_argument("app")
    r.add_argument("--since", help="only runs started since: 30m, 2h, 7d, an ISO date or time")
    r.add_argument(
        "--compare",
        nargs=2,
        metavar=("V1", "V2"),
        help="two versions (digests or unique prefixes) side by side",
    )
    r.add_argument(
        "--max-runs", type=int, default=10_000, help="the newest this many runs (default 10000)"
    )
    r.add_argument("--json", action="store_true", help="a JSON object")
    r.add_argument("--config")
    r = rsub.add_parser(
        "replay",
        help="run a recorded run again on its app version, host calls from the record, and "
        "compare step by step (exit 0: identical, 1: diverged, 2: no such run)",
    )
    r.add_argument("run", help="the run id (or a unique prefix of 6+ characters)")
    r.add_argument("--json", action="store_true", help="a JSON object")
    r.add_argument("--config")
    r = rsub.add_parser(
        "rerun",
        help="start a new run from the payload a recorded step started with, on the app's "
        "current version",
    )
    r.add_argument("run", help="the run id (or a unique prefix of 6+ characters)")
    r.add_argument("--from-step", type=int, required=True, help="the step to start from")
    r.add_argument(
        "--live",
        action="store_true",
        help="make every host call live (default: from the record where the call matches)",
    )
    r.add_argument("--json", action="store_true", help="a JSON object")
    r.add_argument("--config")
    r = rsub.add_parser(
        "retry",
        help="queue a failed durable run again from its last checkpoint, its node's attempts "
        "counted afresh (exit 1: the run has not failed, 2: no such run)",
    )
    r.add_argument("run", help="the durable run's id")
    r.add_argument("--config")
    r = rsub.add_parser("prune", help="delete runs beyond history.retention_days / max_runs")
    r.add_argument("--older-than-days", type=float, help="instead of history.retention_days")
    r.add_argument("--keep", type=int, help="instead of history.max_runs (0: no count limit)")
    r.add_argument("--config")
    p.set_defaults(func=cmd_runs)
