"""Hot reload for ``nflow serve``: changed apps without a restart, SIGHUP for the config.

Each worker runs one :class:`Reloader` thread. Every ``[server] reload_interval_seconds`` it
asks :func:`~nflow.catalog.build_catalog` for the next version (app files by time, size and
digest; the database by its change marker) and installs it with one assignment, so requests
already running finish on the version they started with.

SIGHUP goes to granian's main process, which checks the config file once, logs which changed
keys apply live and which need a restart, and forwards the signal to every worker; each
worker then reads the file again and applies the live keys. (granian's own SIGHUP handling
would respawn every worker: cold caches, lost rate-limit buckets, and a crash loop when the
new file is invalid.)
"""

from __future__ import annotations

__all__ = ["ConfigChange", "Reloader", "forward_sighup", "prepare_config"]

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from nflow.errors import ConfigError, NflowError

if TYPE_CHECKING:
    from nflow.config import Config
    from nflow.runtime import Runtime

log = logging.getLogger("nflow.reload")


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A re-read config file: what to run with, and which changed keys apply live."""

    config: Config  # new values for live keys, the running values for restart-only keys
    live: list[str]
    restart: list[str]


def _set(data: dict[str, Any], key: str, source: dict[str, Any]) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
        source = source.get(part, {})
    if leaf in source:
        data[leaf] = source[leaf]
    else:
        data.pop(leaf, None)


def prepare_config(running: Config, path: str | None) -> ConfigChange:
    """Read ``path`` (or defaults and environment) again and compare it with ``running``.

    Raises :class:`ConfigError` naming the key when the new file is invalid.
    """
    # Imported here: the master process keeps this module for SIGHUP, and loads the
    # configuration's models (pydantic) only when one arrives.
    from pydantic import ValidationError

    from nflow.config import Config, changed_keys, load_config, restart_required_keys

    new = load_config(path)
    restart = restart_required_keys(running, new)
    live = [key for key in changed_keys(running, new) if key not in restart]
    if not restart:
        return ConfigChange(new, live, restart)
    data = new.model_dump(by_alias=True)
    before = running.model_dump(by_alias=True)
    for key in restart:
        _set(data, key, before)
    try:
        merged = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "the new values cannot be combined with the running ones until a restart: "
            + "; ".join(str(e["msg"]) for e in exc.errors())
        ) from None
    return ConfigChange(merged, live, restart)


def _configure_logging(config: Config, verbose: bool) -> None:
    from nflow.logs import configure_logging

    configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        verbose=verbose,
        security=config.security,
    )


class Reloader:
    """One worker's watcher: polls for changed apps, applies SIGHUP config reloads."""

    def __init__(
        self, runtime: Runtime, *, config_path: str | None = None, verbose: bool = False
    ) -> None:
        self.runtime = runtime
        self.config_path = config_path
        self.verbose = verbose
        self._wake = threading.Event()
        self._config_requested = False
        self._stopping = False
        self._store_error = ""
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start polling; with ``loop`` (the worker's), SIGHUP also requests a config reload."""
        if loop is not None:
            # Only a main thread's Unix event loop can take signals: an embedding program
            # may start a worker elsewhere (RuntimeError / ValueError), and Windows loops have
            # no signal support (NotImplementedError). App polling still runs; only SIGHUP
            # config reload is off, and the warning says so.
            try:
                loop.add_signal_handler(signal.SIGHUP, self.request_config_reload)
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                log.warning("SIGHUP cannot be handled here (%s): config reload is off", exc)
        self._thread = threading.Thread(target=self._run, name="nflow-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def notice(self, kind: str) -> None:
        """A change notice from another instance (any thread): the config file and secrets
        for a configuration change, else apps and releases, looked for at once."""
        from nflow.store import CHANGED_CONFIG

        if kind == CHANGED_CONFIG:
            self.request_config_reload()
        else:
            self._wake.set()

    def request_config_reload(self) -> None:
        """Re-read the config file soon (and look for app changes); safe in a signal handler."""
        self._config_requested = True
        self._wake.set()

    def _interval(self) -> float | None:
        seconds = self.runtime.config.server.reload_interval_seconds
        return seconds if seconds > 0 else None

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval())
            self._wake.clear()
            if self._stopping:
                return
            try:
                recheck = False
                if self._config_requested:
                    self._config_requested = False
                    recheck = self.reload_config()
                self.check(full=recheck)
            except Exception:  # the watcher must outlive any single failure
                log.exception("hot reload failed; still serving the previous version")
            try:
                # Release changes ride on the same poll: every worker of every instance
                # sharing the database serves them within one interval.
                self.runtime.refresh_releases()
            except Exception as exc:
                self._note_store(f"releases not read: {exc}")

    # apps --------------------------------------------------------------------------------
    def check(self, *, full: bool = False) -> bool:
        """Look for changes once; True when a new version of some app, module, template or
        query was installed.

        ``full`` reloads and analyzes every app again (new ``[security]`` rules).
        """
        # Here, not at the top: the master process imports this module for SIGHUP only.
        from nflow.catalog import build_catalog

        runtime = self.runtime
        with runtime.reload_lock:
            current = runtime.catalog
            try:
                rebuild = build_catalog(runtime.catalog_sources(), None if full else current)
            except NflowError as exc:  # only a full reload raises: a broken file or database
                log.error("apps not reloaded: %s; still serving the previous version", exc)
                return False
            self._note_store(rebuild.store_error)
            if rebuild.catalog is current:
                return False
            runtime.install(rebuild.catalog)
        if full:
            routes = ", ".join(
                f"{s.method} {s.pattern} ({p.name})" for p, s in rebuild.catalog.router.routes()
            )
            log.info("reloaded every app for the new configuration; routes: %s", routes)
        elif rebuild.changes:
            log.info("reloaded: %s", "; ".join(rebuild.changes))
        return full or bool(rebuild.changes)

    def _note_store(self, error: str) -> None:
        # One line when the database goes away and one when it is back, not one a second.
        if error and not self._store_error:
            log.error(
                "cannot look for changed stored apps: %s; still serving the loaded version",
                error,
            )
        elif self._store_error and not error:
            log.info("database reachable again: looking for changed stored apps")
        self._store_error = error

    # config ------------------------------------------------------------------------------
    def reload_config(self) -> bool:
        """Apply the config file's live keys; True when the [security] rules changed."""
        runtime = self.runtime
        try:
            change = prepare_config(runtime.config, self.config_path)
            runtime.apply_config(change.config, change.live)
        except NflowError as exc:
            log.error("configuration not reloaded: %s; keeping the running configuration", exc)
            return False
        _configure_logging(change.config, self.verbose)
        log.debug(
            "configuration reloaded in worker %d: %s",
            os.getpid(),
            ", ".join(change.live) or "no live key changed",
        )
        return any(key.startswith("security.") for key in change.live)


def forward_sighup(server: Any, *, config_path: str | None, pickled: bytes) -> Callable[[], None]:
    """A granian startup hook for the main process: SIGHUP checks the config file, logs the
    outcome once, and is forwarded to every worker when the file is valid.

    ``pickled`` is the running configuration, unpickled (with the configuration's models
    imported) at the first SIGHUP rather than at start.
    """
    main_pid = os.getpid()
    running: list[Config] = []

    def reload_in_main() -> None:
        if not running:
            import pickle

            running.append(pickle.loads(pickled))
        try:
            change = prepare_config(running[0], config_path)
        except NflowError as exc:
            log.error("configuration not reloaded: %s; keeping the running configuration", exc)
            return
        running[0] = change.config
        if change.restart:
            log.warning("changed keys need a restart: %s", ", ".join(change.restart))
        log.info(
            "configuration reloaded: %s",
            "applied " + ", ".join(change.live) if change.live else "no live key changed",
        )
        for worker in list(getattr(server, "wrks", ())):
            pid = getattr(getattr(worker, "inner", None), "pid", None)
            if isinstance(pid, int):
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:  # a worker being replaced
                    continue

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != main_pid:
            return  # a freshly forked worker, before it installed its own handler
        # Off the signal handler: reading files and logging must not run inside it.
        threading.Thread(target=reload_in_main, name="nflow-sighup", daemon=True).start()

    def install() -> None:
        signal.signal(signal.SIGHUP, on_sighup)

    return install
