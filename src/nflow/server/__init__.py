"""HTTP serving: granian with RSGI for ``nflow serve``; an ASGI app for embedding."""

from __future__ import annotations

import errno
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nflow.server._worker import SPEC_ENV, worker_runtime

if TYPE_CHECKING:
    from nflow.server._apps import AsgiApp, RsgiApp, dispatch

__all__ = [
    "SPEC_ENV",
    "AsgiApp",
    "MasterSettings",
    "RsgiApp",
    "dispatch",
    "ensure_port_free",
    "serve",
    "worker_app",
    "worker_runtime",
]


def __getattr__(name: str) -> Any:
    # The serving apps (and the runtime behind them) are imported by the workers that use
    # them, not by the master process, which only starts and watches the workers.
    if name in ("AsgiApp", "RsgiApp", "dispatch"):
        from nflow.server import _apps

        return getattr(_apps, name)
    raise AttributeError(f"module 'nflow.server' has no attribute {name!r}")


def ensure_port_free(host: str, port: int, *, key: str = "server.port") -> None:
    """Raise ConfigError (key ``server.port``) if something already listens on host:port.

    granian binds with SO_REUSEPORT, so a second server on a busy port does not fail: it
    starts, and the kernel splits the connections between the two (an old version left
    running would keep answering some of the requests). A plain bind, which SO_REUSEPORT
    listeners refuse, finds that out first.
    """
    from nflow.errors import ConfigError

    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return  # an unusable host: granian reports it
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return
            hint = "--port" if key == "server.port" else key
            raise ConfigError(
                f"{host}:{port} is already in use by another process (another nflow serve?); "
                f"stop it or choose another port ({hint})",
                key=key,
            ) from None


def _reachable_host(host: str) -> str:
    # A wildcard bind says nothing to another instance: the host name does.
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host


@dataclass(frozen=True, slots=True)
class MasterSettings:
    """What the master process of ``nflow serve`` needs of the configuration, as plain values.

    The master never loads the configuration itself: the models that validate it belong to
    the workers (and to the short-lived child that checked it before the start).
    """

    max_header_bytes: int
    shutdown_timeout_seconds: float
    # [monitor] metrics_port (0: none) and metrics_path: the master answers scrapes there.
    metrics_port: int
    metrics_path: str
    config: bytes  # the checked configuration, pickled: unpickled only to check a SIGHUP
    # The script analyzer's verdicts on the apps, found by the start-up check (JSON): the
    # workers take them instead of loading the parser (nflow.security._findings).
    verdicts: bytes = b""


# glibc's mallopt parameter, and the arenas a process may have: the main one and one more.
_M_ARENA_MAX = -8
_MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """Let every thread of the workers share two malloc arenas.

    glibc gives each thread that allocates an arena of its own, up to eight per CPU, and each
    keeps the memory its thread once used. A worker's threads (granian's, the I/O loop's, the
    history writer's, …) allocate little; with two arenas the three processes of a 2-worker
    server held 1 to 2 MB less RSS idle and 2 MB less after a c256 load. Set here, in
    the master before granian starts any thread or worker, the limit is forked into every
    worker. A ``MALLOC_ARENA_MAX`` in the environment (read by glibc at start) wins.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt(_M_ARENA_MAX, _MALLOC_ARENAS)


def serve(
    *,
    config_path: str | None,
    app_files: Sequence[str],
    example_if_empty: bool,
    host: str,
    port: int,
    workers: int,
    verbose: bool = False,
    session_secret: str = "",
    settings: MasterSettings,
) -> None:
    """Run granian in the foreground with ``workers`` processes, each its own Runtime."""
    import math

    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    from nflow.observability import remove_multiprocess_dir, setup_multiprocess_dir
    from nflow.ratelimit._shared import create_table
    from nflow.server._master import Supervisor
    from nflow.watchdog import EXIT_NOTES_ENV

    _limit_malloc_arenas()
    ensure_port_free(host, port)
    if settings.metrics_port:
        ensure_port_free(host, settings.metrics_port, key="monitor.metrics_port")
    # Where workers meet to pass debug session calls to the worker that owns the session:
    # private to this user (mkdtemp makes it 0700), removed at exit.
    relay_dir = tempfile.mkdtemp(prefix="nflow-relay-")
    verdicts = ""
    if settings.verdicts:
        verdicts = os.path.join(relay_dir, "verdicts.json")
        with open(verdicts, "wb") as f:
            f.write(settings.verdicts)
    # Workers write their metrics to files in one directory; /metrics sums them.
    metrics_dir = setup_multiprocess_dir()
    os.environ[EXIT_NOTES_ENV] = metrics_dir
    # The memory rate limiter's buckets, one table for every worker (removed with the
    # directory): a limit holds per server, not per worker.
    rate_table = os.path.join(metrics_dir, "ratelimit.table")
    create_table(rate_table)

    os.environ[SPEC_ENV] = orjson.dumps(
        {
            "config": config_path,
            "apps": [os.path.abspath(p) for p in app_files],
            "example": example_if_empty,
            "verbose": verbose,
            # A worker that starts after its master died must still know it has no master.
            "master": os.getpid(),
            # Without [session] secret every worker must still seal cookies with one key.
            "session_secret": session_secret,
            "rate_table": rate_table,
            # This instance in the cluster table (nflow.cluster): one id for all its workers.
            "instance": {
                # Random: readiness shows it to anyone, and it must not name the host.
                "id": secrets.token_hex(6),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "address": f"{_reachable_host(host)}:{port}",
                "workers": workers,
                "started_at": time.time_ns() // 1000,
            },
            "relay_dir": relay_dir,
            "verdicts": verdicts,
        }
    ).decode()
    server = Supervisor(
        target="nflow.server:worker_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=workers,
        # uvloop, a dependency wherever it builds, runs each worker's event loop; Loops.auto
        # would prefer any other loop package that happens to be installed.
        loop=Loops.uvloop if importlib.util.find_spec("uvloop") is not None else Loops.asyncio,
        websockets=False,
        log_enabled=verbose,
        backlog=2048,
        # The HTTP parser's buffer holds the request line and headers: past it, a 431.
        http1_settings=HTTP1Settings(max_buffer_size=settings.max_header_bytes),
        # Dead workers are replaced by Supervisor's own loop (with a backoff, never giving up).
        respawn_failed_workers=True,
        respawn_interval=0.5,
        # SIGTERM: workers still running after this are killed.
        workers_kill_timeout=math.ceil(settings.shutdown_timeout_seconds),
    )
    # SIGHUP: check the config once here, then let each worker apply what can change live.
    from nflow.server._reload import forward_sighup

    server.on_startup(forward_sighup(server, config_path=config_path, pickled=settings.config))
    metrics_listener = None
    if settings.metrics_port:
        from nflow.server._metrics_port import MetricsListener

        metrics_listener = MetricsListener(
            host=host, port=settings.metrics_port, path=settings.metrics_path, directory=metrics_dir
        )
        metrics_listener.start()
    try:
        server.serve()
    finally:
        if metrics_listener is not None:
            metrics_listener.close()
        remove_multiprocess_dir(metrics_dir)
        shutil.rmtree(relay_dir, ignore_errors=True)


def worker_app() -> RsgiApp:
    """granian's factory: one Runtime per worker process, from the spec ``serve`` left."""
    # A worker is forked with the master's SIGTERM handler, which only sets a flag in the
    # master's memory: a stop sent while this worker still builds its runtime would be lost,
    # and the worker killed at the shutdown deadline. Until granian installs its own handlers
    # a starting worker has nothing to drain, so the default action (exit) is right.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from nflow.server._apps import RsgiApp
    from nflow.server._isolation import Isolator
    from nflow.server._lifecycle import WorkerLifecycle
    from nflow.server._reload import Reloader

    spec = orjson.loads(os.environ[SPEC_ENV])
    runtime = worker_runtime()
    limits = runtime.config.limits
    if limits.isolate_seconds > 0:
        runtime.isolator = Isolator(seconds=limits.isolate_seconds)
    app = RsgiApp(runtime)
    # Graceful stop, rebalancing after a sibling's replacement, and no life after the master.
    app.lifecycle = WorkerLifecycle(
        app,
        shutdown_timeout=runtime.config.server.shutdown_timeout_seconds,
        master=int(spec.get("master") or os.getppid()),
    )
    # Changed app files and stored apps are picked up without a restart (hot reload).
    app.reloader = Reloader(runtime, config_path=spec["config"], verbose=bool(spec.get("verbose")))
    instance = spec.get("instance")
    if instance:
        from nflow.cluster import Me
        from nflow.server._routes import nflow_version

        app.member = Me(version=nflow_version(), **instance)
    return app
