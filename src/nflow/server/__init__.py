"""HTTP serving: granian with RSGI for ``nflow serve``; an ASGI app for embedding."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
from collections.abc import Sequence

import orjson

from nflow.server._apps import AsgiApp, RsgiApp, dispatch
from nflow.server._worker import SPEC_ENV, worker_runtime

__all__ = [
    "SPEC_ENV",
    "AsgiApp",
    "RsgiApp",
    "dispatch",
    "ensure_port_free",
    "serve",
    "worker_app",
    "worker_runtime",
]


def ensure_port_free(host: str, port: int) -> None:
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
            raise ConfigError(
                f"{host}:{port} is already in use by another process (another nflow serve?); "
                "stop it or choose another port (--port)",
                key="server.port",
            ) from None


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
) -> None:
    """Run granian in the foreground with ``workers`` processes, each its own Runtime."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from nflow.observability import remove_multiprocess_dir, setup_multiprocess_dir

    ensure_port_free(host, port)
    # Workers write their metrics to files in one directory; /metrics sums them.
    metrics_dir = setup_multiprocess_dir()

    os.environ[SPEC_ENV] = orjson.dumps(
        {
            "config": config_path,
            "apps": [os.path.abspath(p) for p in app_files],
            "example": example_if_empty,
            "verbose": verbose,
            # Without [session] secret every worker must still seal cookies with one key.
            "session_secret": session_secret,
        }
    ).decode()
    server = Granian(
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
        # A worker the watchdog ended (a script stuck in native code) is replaced.
        respawn_failed_workers=True,
        respawn_interval=0.5,
    )
    # SIGHUP: check the config once here, then let each worker apply what can change live.
    from nflow.config import load_config
    from nflow.server._reload import forward_sighup

    server.on_startup(
        forward_sighup(server, config_path=config_path, config=load_config(config_path))
    )
    try:
        server.serve()
    finally:
        remove_multiprocess_dir(metrics_dir)


def worker_app() -> RsgiApp:
    """granian's factory: one Runtime per worker process, from the spec ``serve`` left."""
    from nflow.server._isolation import Isolator
    from nflow.server._reload import Reloader

    spec = orjson.loads(os.environ[SPEC_ENV])
    runtime = worker_runtime()
    limits = runtime.config.limits
    if limits.isolate_seconds > 0:
        runtime.isolator = Isolator(seconds=limits.isolate_seconds)
    app = RsgiApp(runtime)
    # Changed app files and stored apps are picked up without a restart (hot reload).
    app.reloader = Reloader(runtime, config_path=spec["config"], verbose=bool(spec.get("verbose")))
    return app
