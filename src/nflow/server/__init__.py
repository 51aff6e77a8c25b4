"""HTTP serving: granian with RSGI for ``nflow serve``; an ASGI app for embedding."""

from __future__ import annotations

import os
from collections.abc import Sequence

import orjson

from nflow.runtime import Runtime
from nflow.server._apps import AsgiApp, RsgiApp, dispatch

__all__ = ["SPEC_ENV", "AsgiApp", "RsgiApp", "dispatch", "serve", "worker_app", "worker_runtime"]

SPEC_ENV = "NFLOW_SERVE_SPEC"


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
        loop=Loops.auto,
        websockets=False,
        log_enabled=verbose,
        backlog=2048,
        # A worker the watchdog ended (a script stuck in native code) is replaced.
        respawn_failed_workers=True,
        respawn_interval=0.5,
    )
    # SIGHUP: check the config once here, then let each worker apply what can change live.
    from nflow._reload import forward_sighup
    from nflow.config import load_config

    server.on_startup(
        forward_sighup(server, config_path=config_path, config=load_config(config_path))
    )
    try:
        server.serve()
    finally:
        remove_multiprocess_dir(metrics_dir)


def worker_runtime() -> Runtime:
    """A Runtime from the spec ``serve`` left: for a worker, or a worker's isolation child."""
    from nflow.config import load_config
    from nflow.logs import configure_logging

    spec = orjson.loads(os.environ[SPEC_ENV])
    config = load_config(spec["config"])
    configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        verbose=bool(spec.get("verbose")),
        security=config.security,
    )
    return Runtime(
        config,
        app_files=spec["apps"],
        example_if_empty=spec["example"],
        session_secret=spec.get("session_secret") or None,
        log_nodes=bool(spec.get("verbose")),  # -v: one line per executed node
    )


def worker_app() -> RsgiApp:
    """granian's factory: one Runtime per worker process, from the spec ``serve`` left."""
    from nflow._isolation import Isolator
    from nflow._reload import Reloader

    spec = orjson.loads(os.environ[SPEC_ENV])
    runtime = worker_runtime()
    limits = runtime.config.limits
    if limits.isolate_seconds > 0:
        runtime.isolator = Isolator(seconds=limits.isolate_seconds)
    app = RsgiApp(runtime)
    # Changed app files and stored apps are picked up without a restart (hot reload).
    app.reloader = Reloader(runtime, config_path=spec["config"], verbose=bool(spec.get("verbose")))
    return app
