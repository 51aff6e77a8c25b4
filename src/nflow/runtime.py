"""The assembled runtime: config, store, caches, router and engine behind one object.

``Runtime.handle(request)`` is the whole request path; server adapters (RSGI, ASGI), the CLI's
``nflow run`` and embedding programs all call it.
"""

from __future__ import annotations

__all__ = ["RANDOM_SESSION_SECRET", "Isolation", "RunLimits", "Runtime", "Services"]

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nflow._http import BodyLimit, Request, Response, json_response
from nflow._ids import new_wid
from nflow._io import IoLoop
from nflow.applimits import (
    RunLimits,
    effective_limits,
    override_sources,
    raised_limits,
    server_limits,
)
from nflow.catalog import Catalog, CatalogSources, build_catalog
from nflow.config import Config, DurableConfig, secret_references
from nflow.durable import DurableRuns, NewRun, encode_request, encode_sessions, wants_async
from nflow.engine import (
    Breakpoint,
    DebugSession,
    DebugSessions,
    Engine,
    Execution,
    ForkFunction,
    NodeInterceptor,
    StepObserver,
    VMProvider,
    is_auth_entry,
)
from nflow.errors import ConfigError, ExecutionError, Problem, StoreError
from nflow.golang.json import dumps as go_json
from nflow.history import HistoryPolicy, HistoryWriter
from nflow.jsapi import HostTable, Policies, Sessions
from nflow.jsapi._core import core
from nflow.jsapi._durable import durable as waits
from nflow.jsapi._templates import templates
from nflow.jsapi._users import users
from nflow.observability import Metrics, get_metrics
from nflow.playbook import Playbook, flag
from nflow.plugins import PLUGIN_TABLES, close_plugins, plugin_policies
from nflow.plugins._twilio import twilio
from nflow.processes import ProcessRegistry
from nflow.quarantine import Quarantine
from nflow.ratelimit import PeerKeys, RateLimiter, limiter_from_config
from nflow.releases import Releases, VersionCookies
from nflow.router import Match, Router, split_markers
from nflow.sandbox import EngineLimits
from nflow.security import KeyConfigError, KeyRing, resolve_secrets
from nflow.sessions import CookieSessions, LoadedSessions, RedisSessions, SessionBackend
from nflow.steps import discover_steps
from nflow.store import Store
from nflow.tracker import Tracker
from nflow.watchdog import Watchdog

if TYPE_CHECKING:
    from nflow.observability.tracing import Tracing

log = logging.getLogger("nflow")

RANDOM_SESSION_SECRET = (
    "no [session] secret configured: using a random one, so session cookies stop working "
    "when the process ends (set session.secret, 32+ characters)"
)
_warned_random_secret = False

DEFAULT_AUTH_TRIGGER = 'function auth(){ if (!exist_profile()) { next = "login" } }'


class Isolation(Protocol):
    """Where the requests of routes that hit a time or memory limit run for a while.

    ``nflow serve`` workers set one (a child process per worker, see
    ``nflow.server._isolation``); embedded runtimes run every request in place.
    """

    seconds: float

    def isolated(self, key: tuple[str, str]) -> bool: ...

    def isolate(self, key: tuple[str, str]) -> None: ...

    async def run(self, request: Request, *, digest: str, timeout: float) -> Response: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Services:
    """What the engine and host functions share for the life of a worker.

    It is the engine's ``EngineServices`` and host functions' ``HostServices``: each sees only
    what its protocol names.
    """

    config: Config
    limits: RunLimits
    store: Store
    io: IoLoop
    processes: ProcessRegistry
    env: dict[str, str]
    database_url: str
    fork: ForkFunction
    # The plugins' [http], [mail], [llm] policies: this runtime's, not the process's.
    policies: Policies = field(default_factory=Policies)
    modules: dict[str, str | None] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    auth_trigger: str = DEFAULT_AUTH_TRIGGER
    login_path: str = "/nflow_login"
    tracker: Tracker | None = None
    metrics: Metrics | None = None
    keyring: KeyRing | None = None
    # Effective limits of apps with overrides, by (digest, name); the rest use ``limits``.
    app_limits: dict[tuple[str, str], RunLimits] = field(default_factory=dict)

    def limits_for(self, playbook: Playbook) -> RunLimits:
        """The limits a run of ``playbook`` gets: one dict lookup, computed at load."""
        if not self.app_limits:
            return self.limits
        return self.app_limits.get((playbook.digest, playbook.name), self.limits)


@dataclass(frozen=True, slots=True)
class _Route:
    match: Match
    blocking: bool
    resume: str = ""
    catalog: Catalog | None = None
    cookie: str = ""  # the version cookie to set: the client was assigned a version

    @property
    def key(self) -> tuple[str, str]:
        return (self.match.playbook.digest, self.match.starter.node.id)

    @property
    def version(self) -> str:
        """The app version this request runs."""
        return self.match.playbook.version


class Runtime:
    """One worker's nflow: build it, ``await open()``, then ``await handle(request)``."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        app_files: Sequence[str | os.PathLike[str]] = (),
        serve_stored_apps: bool = True,
        example_if_empty: bool = False,
        threads: int | None = None,
        hosts: Iterable[HostTable] = (),
        database_url: str | None = None,
        session_secret: str | None = None,
        watchdog: Mapping[str, Any] | None = None,
        observe: bool = True,
        log_nodes: bool = False,
        rate_table: str | None = None,
        durable_worker: bool = True,
    ) -> None:
        self.config = config or Config()
        # The memory rate limiter's table shared by the workers of ``nflow serve``.
        self.rate_table = rate_table
        self.database_url = database_url or self.config.database_url
        self._session_secret = session_secret
        self._signing_key: str | None = None
        self._watchdog_options = dict(watchdog or {})
        self._observe = observe
        self._log_nodes = log_nodes
        self.tracing: Tracing | None = None
        self.sessions: SessionBackend
        self.metrics: Metrics | None = None
        self.limiter: RateLimiter | None = None
        # Each client connection's bucket key, for the HTTP adapters.
        self.peer_keys = PeerKeys()
        # The HTTP adapters' per-config lookups (nflow.server._apps), rebuilt when config changes.
        self.dispatch_plan: object = None
        self.limiter_on_io = False
        self.app_files = [Path(p) for p in app_files]
        self.serve_stored_apps = serve_stored_apps
        self.example_if_empty = example_if_empty
        self._threads = threads or max(4, min(32, self.config.vm_pool.max_size))
        self.host = core.merged([users, templates, twilio, waits, *PLUGIN_TABLES, *hosts])
        # Everything a request needs from the loaded apps, swapped whole by reload().
        self.catalog = Catalog()
        self.reload_lock = threading.Lock()
        self.problems: list[Problem] = []
        self._io: IoLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._forks: set[Future[Any]] = set()
        self._forks_lock = threading.Lock()
        self.services: Services
        self.engine: Engine
        self.started = time.time()
        self.is_open = False
        self.quarantine = Quarantine(
            hits=self.config.limits.quarantine_after_hits,
            seconds=self.config.limits.quarantine_seconds,
        )
        # Set by ``nflow serve`` workers: routes that hit a time or memory limit run in a child.
        self.isolator: Isolation | None = None
        # Runs paused at breakpoints (the management API's debug sessions).
        self.debug_sessions = DebugSessions()
        # Which version of a released app a request runs; made at open.
        self.releases: Releases | None = None
        self.history: HistoryWriter | None = None
        # The loop requests run on: a new catalog's runtimes are warmed on its thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.warm_on_reload = True  # False: the first requests prepare runtimes (benchmarks)
        self.warmed = 0  # runtimes prepared by the last warm-up (see warm())
        # Async runs, checkpoints and durable waits, when [durable] is enabled. Without the
        # worker (a start-up check, `nflow run`, a replay, an isolation child) runs are
        # accepted here and executed by the server's workers.
        self.durable: DurableRuns | None = None
        self.durable_worker = durable_worker

    # life cycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self.is_open:
            return
        config = self.config
        if config.tracing.enabled:
            _tracing_class()  # a missing optional package stops the start, not the first span
        # Installed packages' custom steps must be known before apps are parsed.
        discover_steps()
        self._io = IoLoop()
        store = Store(self.database_url)
        try:
            await self._io.run(store.open())
            # "secret:NAME" values of the config come from nflow_secrets, before anything
            # (sessions, Redis, mail ...) reads them.
            config = await self._io.run(resolve_secrets(config, store))
        except BaseException:
            await self._io.run(store.close())  # closing a store that did not open is a no-op
            self._io.close()
            raise
        self.config = config
        self.services = Services(
            config=config,
            limits=RunLimits.from_config(config),
            store=store,
            io=self._io,
            processes=ProcessRegistry(),
            env=dict(config.env),
            database_url=self.database_url,
            fork=self.spawn_fork,
            policies=plugin_policies(config),
        )
        limits = EngineLimits(
            memory_bytes=config.vm_pool.max_memory_mb * 1024 * 1024,
            stack_bytes=config.limits.max_stack_kb * 1024,
        )
        self.watchdog = Watchdog(**self._watchdog_options)
        self.engine = Engine(
            services=self.services,
            vms=VMProvider(host=self.host, limits=limits, watchdog=self.watchdog),
        )
        self.engine.compiled_flows = config.vm_pool.compiled_flows
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="nflow-run")
        self.services.auth_trigger = _auth_trigger(config)
        if config.security.encrypt_sensitive_data:
            try:
                self.services.keyring = KeyRing.load(config=config.security)
            except KeyConfigError as exc:
                raise ConfigError(str(exc), key="security.encryption_key") from None
        self.services.login_path = config.auth.login_path
        self.sessions = await self._session_backend()
        self.metrics = get_metrics() if config.monitor.enabled and self._observe else None
        self.services.metrics = self.metrics
        self.engine.interceptors = self._node_interceptors()
        self.history = self._history_writer()
        self.engine.history = self.history
        self.limiter = None
        self.limiter_on_io = False
        if config.rate_limit.enabled:
            redis_client = None
            if config.rate_limit.backend == "redis":
                redis_client = await self._io.run(_redis_client(config))
                self.limiter_on_io = True
            self.limiter = limiter_from_config(
                config.rate_limit,
                redis=redis_client,
                redis_prefix=config.redis.prefix,
                shared_table=self.rate_table,
            )
        if config.tracker.enabled:
            self.services.tracker = Tracker(
                insert=store.insert_tracker,
                loop=self._io.loop,
                batch_size=config.tracker.batch_size,
                flush_interval_ms=config.tracker.flush_interval,
                capacity=config.tracker.channel_buffer,
            )
        session = config.session
        metrics = self.metrics
        self.releases = Releases(
            store=store,
            io=self._io,
            config=config.releases,
            # Signed like session cookies, so every worker of a server reads the others'.
            cookies=VersionCookies(
                self.signing_key,
                max_age=session.max_age_seconds,
                secure=session.cookie_secure,
            ),
            on_version=metrics.version_request if metrics is not None else None,
        )
        self._loop = asyncio.get_running_loop()
        await self.reload()
        if config.durable.enabled:
            durable = DurableRuns(
                url=self.database_url,
                io=self._io,
                host=self,
                config=config.durable,
                keyring=self.services.keyring,
            )
            await self._io.run(durable.open(worker=self.durable_worker))
            self.durable = durable
        self.warm()
        self.is_open = True

    def _history_writer(self) -> HistoryWriter | None:
        """The execution history's writer, started; None when ``[history]`` records no app."""
        history = self.config.history
        if history.mode == "off" and all(
            app.mode in (None, "off") for app in history.apps.values()
        ):
            return None
        writer = HistoryWriter.from_config(
            self.config, keyring=self.services.keyring, url=self.database_url
        )
        writer.start()
        return writer

    def _node_interceptors(self) -> list[NodeInterceptor]:
        """Tracing (outermost, so ``-v`` lines carry the node's span) and ``-v`` node lines."""
        chain: list[NodeInterceptor] = []
        if self.config.tracing.enabled and self._observe:
            # Imported only when on: tracing off costs neither the import nor a span.
            self.tracing = _tracing_class().from_config(self.config.tracing)
            chain.append(self.tracing.node)
        if self._log_nodes:
            from nflow.observability.nodelog import log_node

            chain.append(log_node)
        return chain

    async def _session_backend(self) -> SessionBackend:
        config = self.config
        session = config.session
        io = self._io
        assert io is not None
        if session.backend == "redis":
            redis = await io.run(_redis_client(config))
            return RedisSessions(
                client=redis,
                prefix=config.redis.prefix,
                max_age=session.max_age_seconds,
                secure=session.cookie_secure,
                run_io=io.run,
                keyring=self.services.keyring,
            )
        secret = session.secret or self._session_secret
        if not secret:
            secret = secrets.token_urlsafe(32)
            global _warned_random_secret
            if not _warned_random_secret:  # once per process, however many runtimes it opens
                _warned_random_secret = True
                log.warning(RANDOM_SESSION_SECRET)
        store = self.services.store

        async def is_revoked(sid: str) -> bool:
            result: bool = await io.run(store.is_session_revoked(sid))
            return result

        async def revoke(sid: str, expires: int) -> None:
            await io.run(store.revoke_session(sid, expires=expires))

        return CookieSessions(
            secret=secret,
            max_age=session.max_age_seconds,
            secure=session.cookie_secure,
            is_revoked=is_revoked,
            revoke=revoke,
        )

    async def close(self) -> None:
        if self.isolator is not None:
            self.isolator.close()
        # Paused runs hold threads and JS runtimes: abort them before the pool goes.
        await asyncio.to_thread(self.debug_sessions.close)
        durable = self.durable
        if durable is not None and self._io is not None:
            # Runs still executing are queued again for another instance (or the next start).
            self.durable = None
            await asyncio.to_thread(durable.close, 10.0)
            await self._io.run(durable.close_store())
        if self.is_open:
            await self.sessions.close()
        if self._pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.wait_forks, 10.0)
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None
        history = self.history
        if history is not None:
            # After the last fork: what the runs recorded is written before the store closes.
            self.history = self.engine.history = None
            await asyncio.get_running_loop().run_in_executor(None, history.close, 10.0)
        if self.is_open:
            self.watchdog.close()
            if self.metrics is not None:
                self.metrics.flush()
            if self.tracing is not None:
                self.tracing.shutdown()
                self.tracing = None
        if self._io is not None:
            await close_plugins(self._io)
            tracker = self.services.tracker
            if tracker is not None:
                await tracker.close()
            try:
                await self._io.run(self.services.store.close())
            finally:
                self._io.close()
                self._io = None
        self.is_open = False

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def signing_key(self) -> str:
        """The key this server's workers share to sign cookies (version choice, studio
        login): ``[session] secret``, else the one ``nflow serve`` gave every worker, else a
        random one for this runtime alone."""
        if self._signing_key is None:
            self._signing_key = (
                self.config.session.secret or self._session_secret or secrets.token_urlsafe(32)
            )
        return self._signing_key

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def io(self) -> IoLoop:
        assert self._io is not None
        return self._io

    async def redis_ping(self) -> None:
        async def ping() -> None:
            client = await _redis_client(self.config)
            try:
                await client.ping()
            finally:
                await client.aclose()

        await self.io.run(ping())

    def js_selftest(self) -> None:
        """Evaluate a trivial script in a fresh runtime: proves the JS engine works here."""
        from nflow.sandbox import new_runtime

        rt = new_runtime()
        try:
            if rt.eval("1 + 1", timeout=1.0) != 2:
                raise RuntimeError("JS engine returned a wrong result")
        finally:
            rt.close()

    async def store_call(self, coro: Any) -> Any:
        assert self._io is not None
        return await self._io.run(coro)

    # loading ----------------------------------------------------------------------------
    async def reload(self) -> None:
        """(Re)load modules, templates, queries and apps; build the routing table."""
        await asyncio.to_thread(self._reload_all)

    def _reload_all(self) -> None:
        with self.reload_lock:
            self.install(build_catalog(self.catalog_sources()).catalog)
            self.refresh_releases()

    def refresh_releases(self) -> None:
        """Read every app's release and load the versions it serves (blocking: call it off
        the request path, as the reload poll does)."""
        if self.releases is not None:
            self.releases.refresh(self.catalog)

    def catalog_sources(self) -> CatalogSources:
        """What the next catalog is built from, with the configuration served now."""
        return CatalogSources(
            store=self.services.store,
            io=self.io,
            app_files=tuple(self.app_files),
            serve_stored_apps=self.serve_stored_apps,
            example_if_empty=self.example_if_empty,
            security=self.config.security,
            keep_versions=self.config.releases.keep_versions,
        )

    def install(self, catalog: Catalog) -> None:
        """Serve ``catalog`` from now on: one reference assignment, so requests that already
        started keep the catalog they read."""
        self.catalog = catalog
        self.services.modules = catalog.modules
        self.services.templates = catalog.templates
        self.services.queries = catalog.queries
        self.engine.plans = catalog.plans
        self.problems = list(catalog.problems)
        self.services.app_limits = self._app_limits(catalog.playbooks)
        loop = self._loop
        if self.is_open and loop is not None and self.warm_on_reload:
            # Reloads install from other threads; runtimes belong to the loop's thread. A
            # closed loop (RuntimeError) has nothing left to serve.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._warm, catalog)

    def warm(self) -> None:
        """Prepare this thread's JS runtimes for the catalog served now (call it on the loop's
        thread): one per heap limit the apps use, with their compiled flows defined, so the
        first request after a start or a reload does not pay for them."""
        self._warm(self.catalog)

    def _warm(self, catalog: Catalog) -> None:
        if catalog is not self.catalog:
            return  # a newer reload replaced it meanwhile; its own warm-up follows
        try:
            self.warmed = self.engine.warm(catalog)
        except Exception:  # a warm-up only saves time: requests prepare what they need
            log.exception("warming the JS runtimes failed; requests prepare them instead")

    def apply_config(self, config: Config, changed: Iterable[str] = ()) -> None:
        """Serve with ``config`` from now on, for what can change live (SIGHUP): limits, env,
        auth trigger and login path, rate-limit numbers, plugin policies ([http], [mail],
        [llm]), and everything read per request.

        Keys built into the worker at open (see ``RESTART_REQUIRED_KEYS``) must keep their
        values in ``config``. Raises ConfigError, changing nothing, if the trigger is unusable.
        """
        if secret_references(config):  # read from nflow_secrets again: values may have changed
            config = self.io.call(resolve_secrets(config, self.store), timeout=30.0)
        trigger = _auth_trigger(config)
        limiter = self.limiter
        if limiter is not None and any(k.startswith("rate_limit.ip_") for k in changed):
            # New bucket sizes: buckets in this process start full again, a shared table and
            # Redis keep their state.
            limiter = limiter_from_config(
                config.rate_limit,
                redis=getattr(limiter, "_client", None),
                redis_prefix=config.redis.prefix,
                shared_table=self.rate_table,
            )
        services = self.services
        self.config = config
        services.config = config
        services.limits = RunLimits.from_config(config)
        services.env = dict(config.env)
        services.auth_trigger = trigger
        services.login_path = config.auth.login_path
        self.limiter = limiter
        services.policies = plugin_policies(config)
        services.app_limits = self._app_limits(self.catalog.playbooks)
        if self.history is not None:
            # Which runs are recorded changes live; where and how they are written does not.
            self.history.policy = HistoryPolicy.from_config(config.history)

    @property
    def router(self) -> Router:
        return self.catalog.router

    def _app_limits(self, playbooks: Sequence[Playbook]) -> dict[tuple[str, str], RunLimits]:
        """Per-app overrides resolved once per load; a raise is clamped with a warning."""
        server = self.services.limits
        base = server_limits(self.config)
        found: dict[tuple[str, str], RunLimits] = {}
        for playbook in playbooks:
            sources = override_sources(playbook.name, playbook.limits, self.config)
            if not sources:
                continue
            for source, values in sources:
                for raised in raised_limits(base, values, source=source):
                    log.warning(
                        "app %r: %s; clamped to the server's limit",
                        playbook.name,
                        raised,
                        extra={"app": playbook.name},
                    )
            values = effective_limits(base, *(v for _, v in sources))
            limits = dataclasses.replace(server, **values)  # type: ignore[arg-type]
            if limits != server:
                found[(playbook.digest, playbook.name)] = limits
        names = {p.name for p in playbooks}
        for name in self.config.apps:
            if name not in names:
                log.warning(
                    "config [apps.%s]: no app of that name is served",
                    go_json(name).decode().strip(),
                )
        return found

    def digests(self) -> set[str]:
        """The versions (digests) of the apps served now."""
        return {playbook.digest for playbook in self.catalog.playbooks}

    # requests ---------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        route = self._route(request)
        if isinstance(route, Response):
            return route
        if not route.resume and (
            flag(route.match.starter.node.data.get("async"))
            or (self.durable is not None and wants_async(request))
        ):
            response = await self._accept(request, route)
        else:
            response = await self._handle(request, route)
        version = route.version
        if version:
            response.version = version
            response.headers.append(("nflow-version", version))
            if route.cookie:
                response.headers.append(("set-cookie", route.cookie))
            releases = self.releases
            if releases is not None:
                releases.record(route.match.playbook.name, version, response.status, response.limit)
        return response

    async def _handle(self, request: Request, route: _Route) -> Response:
        quarantine = self.quarantine
        if quarantine.enabled:
            left = quarantine.blocked(route.key)
            if left:
                return self._quarantined(route, left)
        isolator = self.isolator
        if isolator is not None and isolator.isolated(route.key):
            # The child loads and saves sessions itself, like any worker.
            isolated = await isolator.run(
                request,
                digest=route.match.playbook.digest,
                timeout=self.services.limits_for(route.match.playbook).request_timeout_seconds,
            )
            if isolated.limit:  # hit in the child, or the child stuck past it
                self._limit_hit(route, isolated.limit, isolated.wid)
            return isolated
        # Most API requests carry no cookie and change no session: skip the backend then.
        loaded = (
            await self.sessions.load(request) if request.has_cookies else LoadedSessions(Sessions())
        )
        if route.blocking:
            assert self._pool is not None
            loop = asyncio.get_running_loop()
            # In the caller's context, so the run's spans and log lines join its trace.
            execution = await loop.run_in_executor(
                self._pool,
                contextvars.copy_context().run,
                self._execute,
                request,
                route,
                loaded.sessions,
            )
        else:
            execution = self._execute(request, route, loaded.sessions)
        limit = execution.error.limit if execution.error is not None else None
        if limit is not None:
            self._limit_hit(route, limit, execution.wid)
        response = execution.response
        response.app = route.match.playbook.name
        response.route = route.match.starter.pattern
        response.wid = execution.wid
        response.limit = limit or ""
        if not loaded.sessions.dirty and not loaded.original:
            return response
        try:
            cookies = await self.sessions.save(loaded)
        except ExecutionError as exc:
            log.error("sessions not saved: %s", exc.message, extra={"wid": execution.wid})
            return json_response(500, {"error": exc.message, "wid": execution.wid})
        for cookie in cookies:
            response.headers.append(("set-cookie", cookie))
        return response

    async def _accept(self, request: Request, route: _Route) -> Response:
        """An async start: the run is committed to the durable queue, then answered 202."""
        match = route.match
        playbook = match.playbook
        durable = self.durable
        if durable is None:
            response = json_response(
                503,
                {
                    "code": 503,
                    "message": f"starter {match.starter.pattern} of app {playbook.name!r} is "
                    "async (data.async) but durable runs are off: set [durable] enabled = true",
                },
            )
            response.app = playbook.name
            return response
        loaded = (
            await self.sessions.load(request) if request.has_cookies else LoadedSessions(Sessions())
        )
        run = NewRun(
            id=new_wid(),
            app=playbook.name,
            version=playbook.version or playbook.digest,
            kind="request",
            request=encode_request(
                request, endpoint=match.endpoint, auth=is_auth_entry(match.starter.node)
            ),
            vars=orjson.dumps(dict(match.vars)).decode(),
            sessions=encode_sessions(loaded.sessions),
            next_node=match.starter.first,
        )
        try:
            await self.io.run(durable.accept(run))
        except StoreError as exc:
            log.error("async run not accepted: %s", exc, extra={"app": playbook.name})
            response = json_response(
                503, {"code": 503, "message": f"the run was not accepted: {exc}"}
            )
            response.app = playbook.name
            return response
        status_url = f"/_nflow/api/runs/{run.id}"
        response = json_response(202, {"run_id": run.id, "status_url": status_url})
        response.headers.append(("location", status_url))
        response.app = playbook.name
        response.route = match.starter.pattern
        response.wid = run.id
        return response

    # durable runs (nflow.durable.RunHost) -------------------------------------------------
    def durable_config(self) -> DurableConfig:
        return self.config.durable

    def durable_playbook(self, app: str, version: str) -> tuple[Playbook, Catalog | None] | None:
        """The app at ``version``: served now, or still loaded for a release; else the
        version served now (an app changed while the run waited), with a warning."""
        catalogs: list[Catalog] = [self.catalog]
        releases = self.releases
        if releases is not None and app in releases.plans:
            catalogs.extend(c.catalog for c in releases.plans[app].choices if c.catalog)
        current: Playbook | None = None
        for catalog in catalogs:
            for playbook in catalog.playbooks:
                if playbook.name != app:
                    continue
                if version in (playbook.version, playbook.digest):
                    return playbook, catalog
                if catalog is self.catalog:
                    current = playbook
        if current is None:
            return None
        log.warning(
            "durable run of app %r: version %s is no longer loaded; running the version served now",
            app,
            version,
            extra={"app": app},
        )
        return current, self.catalog

    def _limit_hit(self, route: _Route, limit: str, wid: str) -> None:
        """A run of ``route`` ended on ``limit``: isolate the route, count it for quarantine."""
        app = route.match.playbook.name
        isolator = self.isolator
        if isolator is not None and limit in ("time", "memory"):
            isolator.isolate(route.key)
            log.warning(
                "route %s of app %r hit its %s limit: its requests run in a child process "
                "for %gs (limits.isolate_seconds)",
                route.match.starter.pattern,
                app,
                limit,
                isolator.seconds,
                extra={"app": app, "wid": wid},
            )
        quarantine = self.quarantine
        if quarantine.enabled and quarantine.record(route.key):
            log.warning(
                "route %s of app %r quarantined for %gs: %d limit hits (limits.quarantine_*)",
                route.match.starter.pattern,
                app,
                quarantine.seconds,
                quarantine.hits,
                extra={"app": app, "wid": wid},
            )

    def _quarantined(self, route: _Route, left: float) -> Response:
        match = route.match
        response = json_response(
            503,
            {
                "code": 503,
                "message": f"route {match.starter.pattern} of app {match.playbook.name!r} is "
                f"paused for {left:.0f}s after repeated limit hits (limits.quarantine_after_hits)",
            },
        )
        response.headers.append(("retry-after", str(max(1, round(left)))))
        response.app = match.playbook.name
        response.route = match.starter.pattern
        return response

    def handle_sync(self, request: Request) -> Execution | Response:
        """Run one request on this thread (``nflow run``, tests): the Execution, or a 4xx."""
        route = self._route(request)
        if isinstance(route, Response):
            return route
        return self._execute(request, route)

    async def debug_session(
        self, request: Request, breakpoints: Sequence[Breakpoint]
    ) -> DebugSession | Response:
        """Run ``request`` on a thread of its own, paused before each breakpoint; the session
        to inspect and drive it, or the response refusing the request (no route, 413 …).

        The run reads the sessions its cookies name but does not save what it changes in
        them: a debug run leaves a user's session as it was.
        """
        route = self._route(request)
        if isinstance(route, Response):
            return route
        loaded = (
            await self.sessions.load(request) if request.has_cookies else LoadedSessions(Sessions())
        )
        debug = self.config.debug

        def run(session: DebugSession) -> Execution:
            try:
                return self._execute(
                    request, route, loaded.sessions, observer=session, wid=session.wid
                )
            finally:
                # The session's thread ends here: its JS runtime goes with it.
                self.engine.vms.discard()

        return self.debug_sessions.start(
            run=run,
            breakpoints=breakpoints,
            timeout=debug.session_timeout_seconds,
            max_live=debug.max_sessions,
            request={"method": request.method, "path": request.path, "query": request.query_string},
            kill=self.services.processes.kill,
        )

    def body_limit(self, method: str, path: str) -> BodyLimit:
        """The largest body a request to ``method path`` may send (the server adapters read
        no more than this): the server's limit, or its app's when the app lowers it."""
        match = None
        if self.services.app_limits:  # routing only matters when some app lowers the limit
            match = self.catalog.router.match(method.upper(), split_markers(path)[0])
        return self._body_limit(match)

    def _body_limit(self, match: Match | None) -> BodyLimit:
        limits = self.services.limits
        if match is not None:
            app_limits = self.services.limits_for(match.playbook)
            if app_limits is not limits:
                return BodyLimit(
                    app_limits.max_body_bytes, f"the limit of app {match.playbook.name!r}"
                )
        return BodyLimit(limits.max_body_bytes, "limits.max_body_bytes")

    def _route(self, request: Request) -> _Route | Response:
        endpoint, resume = split_markers(request.path)
        catalog = self.catalog  # read once: the whole request uses this version
        match = catalog.router.match(request.method, endpoint)
        if request.body:
            # For a body handed over whole (nflow run, embedding). The server adapters stop
            # reading at this same limit, so the bodies they pass always fit.
            body_limit = self._body_limit(match)
            if len(request.body) > body_limit.max_bytes:
                return body_limit.too_large()
        if match is None:
            return json_response(404, {"code": 404, "message": "not found"})
        if not resume:
            if request.method in ("POST", "PUT"):
                values = request.form.get("nflow_next_node_run")
            elif request.method == "GET":
                values = request.query.get("nflow_next_node_run")
            else:
                values = None
            resume = values[0] if values else ""
        cookie = ""
        releases = self.releases
        if releases is not None and releases.plans:
            picked = releases.pick(request, match, catalog, resuming=bool(resume))
            if picked is not None:
                match, catalog, cookie = picked.match, picked.catalog, picked.cookie
        if resume:
            playbook = match.playbook
            if resume not in playbook.reachable(match.starter.node.id) or (
                resume == match.starter.node.id
            ):
                return json_response(
                    400,
                    {
                        "code": 400,
                        "message": f"cannot resume at node {resume!r}: it is not a step of "
                        f"the flow that starts at {match.starter.pattern}",
                    },
                )
        if request.body and request.json_error:
            refused = self._invalid_json(request, match.playbook.name)
            if refused is not None:
                return refused
        blocking = catalog.blocking.get((match.playbook.digest, match.starter.node.id), False)
        return _Route(match=match, blocking=blocking, resume=resume, catalog=catalog, cookie=cookie)

    def _invalid_json(self, request: Request, app: str) -> Response | None:
        """A JSON body that does not parse: logged; a 400 if the app's setting says reject."""
        config = self.config
        app_config = config.apps.get(app)
        policy = (
            app_config.invalid_json
            if app_config is not None and app_config.invalid_json is not None
            else config.request.invalid_json
        )
        problem = f"invalid JSON body ({request.header('content-type')}): {request.json_error}"
        log.warning(
            "%s %s: %s%s",
            request.method,
            request.path,
            problem,
            "; refused with 400" if policy == "reject" else "; post_data has no body fields",
            extra={"app": app, "path": request.path, "ip": request.client_ip},
        )
        if policy != "reject":
            return None
        response = json_response(400, {"code": 400, "message": problem})
        response.app = app
        return response

    def _execute(
        self,
        request: Request,
        route: _Route,
        sessions: Sessions | None = None,
        *,
        observer: StepObserver | None = None,
        wid: str | None = None,
    ) -> Execution:
        match = route.match
        resume = route.resume
        playbook = match.playbook
        start = resume or match.starter.first
        entry = playbook.nodes[resume] if resume else match.starter.node
        sessions = sessions if sessions is not None else Sessions()
        if (
            self.services.tracker is not None
            and not resume
            and request.method == "GET"
            and flag(match.starter.node.data.get("reset_order_box"))
        ):
            sessions.get("log-session")["order_box"] = 0
            sessions.mark("log-session")
        return self.engine.run(
            playbook=playbook,
            start=start,
            request=request,
            endpoint=match.endpoint,
            vars=match.vars,
            sessions=sessions,
            resume=bool(resume),
            auth=is_auth_entry(entry),
            catalog=route.catalog,
            observer=observer,
            wid=wid,
        )

    # background forks -------------------------------------------------------------------
    def spawn_fork(
        self,
        *,
        playbook: Playbook,
        start: str,
        request: Request,
        endpoint: str,
        vars: Mapping[str, str],
        sessions: Sessions,
        payload: dict[str, Any],
        wid: str,
        catalog: Catalog | None = None,
        parent_run: str | None = None,
    ) -> None:
        durable = self.durable
        if durable is not None:
            self._durable_fork(
                durable,
                playbook,
                start,
                request,
                endpoint,
                vars,
                sessions,
                payload,
                wid,
                parent_run,
            )
            return
        pool = self._pool
        if pool is None:
            log.error("fork %s dropped: the runtime is closed", wid)
            return

        def run() -> None:
            try:
                execution = self.engine.run(
                    playbook=playbook,
                    start=start,
                    request=request,
                    endpoint=endpoint,
                    vars=vars,
                    sessions=sessions,
                    resume=True,
                    wid=wid,
                    payload=payload,
                    isolated=True,
                    catalog=catalog,
                    parent_run=parent_run,
                )
            except Exception:
                log.exception("background branch %s crashed", wid, extra={"wid": wid})
                return
            if execution.error is not None:
                log.error(
                    "background branch %s failed at node %s: %s",
                    wid,
                    execution.error.node,
                    execution.error.message,
                    extra={"wid": wid, "node": execution.error.node},
                )

        # The branch's spans belong to the request that forked it.
        future = pool.submit(contextvars.copy_context().run, run)
        with self._forks_lock:
            self._forks.add(future)
        future.add_done_callback(self._fork_done)

    def _durable_fork(
        self,
        durable: DurableRuns,
        playbook: Playbook,
        start: str,
        request: Request,
        endpoint: str,
        vars: Mapping[str, str],
        sessions: Sessions,
        payload: dict[str, Any],
        wid: str,
        parent_run: str | None,
    ) -> None:
        """A gorutine branch as a durable run, committed before the forking run goes on."""
        run = NewRun(
            id=wid,
            app=playbook.name,
            version=playbook.version or playbook.digest,
            kind="fork",
            parent_id=parent_run,
            request=encode_request(request, endpoint=endpoint, auth=False),
            vars=orjson.dumps(dict(vars)).decode(),
            sessions=encode_sessions(sessions),
            next_node=start,
            payload=orjson.dumps(payload, default=str).decode(),
        )
        try:
            self.io.call(durable.accept(run), timeout=30.0)
        except (StoreError, TimeoutError) as exc:
            raise ExecutionError(f"background branch {wid} not accepted: {exc}") from None

    def _fork_done(self, future: Future[Any]) -> None:
        with self._forks_lock:
            self._forks.discard(future)

    def wait_forks(self, timeout: float | None = None) -> bool:
        """Wait for background branches to finish; False if some are still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._forks_lock:
                pending = list(self._forks)
            if not pending:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            _wait(pending[0], remaining)


def _wait(future: Future[Any], timeout: float | None) -> None:
    try:
        future.result(timeout=timeout)
    except Exception:  # the fork logs its own failure
        return


def _tracing_class() -> type[Tracing]:
    """The tracing module's Tracing; a ConfigError naming the extra when OpenTelemetry is
    not installed (it is the optional ``nflow[otel]``)."""
    try:
        from nflow.observability.tracing import Tracing
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigError(
            f"tracing is enabled but OpenTelemetry is not installed ({exc.name} is missing): "
            "install the extra with `pip install 'nflow[otel]'`, or set tracing.enabled = false",
            key="tracing.enabled",
        ) from None
    return Tracing


def _auth_trigger(config: Config) -> str:
    """The auth trigger's source: configured file, the Go runtime's folder variable, or built-in."""
    path = config.auth.trigger
    where = "auth.trigger"
    folder = os.environ.get("NFLOE_TRIGGERS_FOLD")
    if not path and folder:
        path = os.path.join(folder, "auth.js")
        where = "NFLOE_TRIGGERS_FOLD"
    if not path:
        return DEFAULT_AUTH_TRIGGER
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"auth trigger {path!r} cannot be read ({exc.strerror}); starters with nflow_auth "
            "would not be protected",
            key=where,
        ) from None
    if "auth" not in source:
        raise ConfigError(f"auth trigger {path!r} does not define auth()", key=where)
    return source


async def _redis_client(config: Config) -> Any:
    import redis.asyncio as aioredis

    host, _, port = config.redis.host.partition(":")
    return aioredis.Redis(
        host=host or "127.0.0.1",
        port=int(port or 6379),
        password=config.redis.password or None,
        db=config.redis.db,
        max_connections=config.redis.maxconnectionpool or None,
    )


def app_summary(runtime: Runtime) -> list[dict[str, str]]:
    return [
        {
            "app": playbook.name,
            "method": starter.method,
            "pattern": starter.pattern,
            "tab": starter.node.tab,
        }
        for playbook, starter in runtime.router.routes()
    ]
