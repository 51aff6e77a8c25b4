"""What one worker serves, as one value: apps, routes, module sources, templates, queries.

A :class:`Catalog` is never changed once built. Loading a new version means building a new
catalog (off the request path) and swapping it in with one reference assignment; a request
reads the reference once, so it runs entirely on the version it started with.

:func:`build_catalog` builds the first catalog (start semantics: a broken app file stops the
start) or the next one from the previous (hot semantics: a changed app that fails to load,
gains errors or breaks the ``[security]`` rules keeps its previous version, and the reason is
logged once). What it reads is named by one :class:`CatalogSources` value: the app files, the
database, whether stored apps are served, the bundled example, the ``[security]`` rules.
"""

from __future__ import annotations

__all__ = [
    "Catalog",
    "CatalogSources",
    "Rebuild",
    "Source",
    "build_catalog",
    "version_content",
    "version_record",
]

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from nflow._io import IoLoop
from nflow.appversion import used_sources, version_content
from nflow.check import module_problems, security_problems
from nflow.config import SecurityConfig
from nflow.errors import PlaybookError, Problem
from nflow.playbook import Playbook, Starter, load_playbook
from nflow.router import Router
from nflow.steps import registered_steps
from nflow.store import Store, VersionRecord

log = logging.getLogger("nflow")

# Host functions that wait on I/O or time. A route whose reachable scripts name one runs in
# a worker thread, so the wait does not hold up the server's event loop.
BLOCKING_CALLS = re.compile(
    r"\b(validate_user|get_user|validate_token|get_token|sleep|http_\w+|send_mail\w*|"
    r"openai\w*|ollama\w*|gemini\w*|llm\w*|redis_\w+|send_otp|check_otp|db_\w+|query\w*|rule_run)\b"
)
# A file changed this close to when it was read may change again within the same mtime tick.
_RACY_SECONDS = 2.0
_EXAMPLE = "example"

Plans = dict[tuple[str, str], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Source:
    """One app file or stored app: the text last seen and the version served (if any)."""

    key: str
    name: str
    digest: str = ""
    playbook: Playbook | None = None
    stat: tuple[int, int, int] = (0, 0, 0)
    read_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CatalogSources:
    """Where a catalog's apps, modules, templates and queries come from."""

    store: Store
    io: IoLoop  # the store's calls run on it; the builder blocks on them
    app_files: tuple[Path, ...] = ()
    serve_stored_apps: bool = True
    example_if_empty: bool = False  # serve the bundled example app when no app is found
    security: SecurityConfig = field(default_factory=SecurityConfig)
    keep_versions: int = 50  # stored versions kept per app ([releases] keep_versions)


@dataclass(frozen=True, slots=True)
class Catalog:
    router: Router = field(default_factory=Router)
    blocking: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    modules: dict[str, str | None] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    # Step plans (source, runtime key) by (app digest, node): valid for these modules only.
    plans: Plans = field(default_factory=dict)
    # Compiled flows (nflow.engine's FlowPlan) by app digest: valid for these modules only.
    flows: dict[str, Any] = field(default_factory=dict)
    files: tuple[Source, ...] = ()
    stored: tuple[Source, ...] = ()
    marker: str = ""
    problems: tuple[Problem, ...] = ()

    @property
    def playbooks(self) -> list[Playbook]:
        return self.router.playbooks


@dataclass(frozen=True, slots=True)
class Rebuild:
    """A new catalog and what changed, for the one log line a reload writes."""

    catalog: Catalog
    changes: list[str]
    store_error: str = ""


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _routes(playbook: Playbook) -> str:
    return ", ".join(f"{s.method} {s.pattern}" for s in playbook.starters) or "no routes"


def version_record(
    playbook: Playbook,
    modules: Mapping[str, str | None],
    templates: Mapping[str, str],
    queries: Mapping[str, str],
    *,
    source: str,
    message: str | None = None,
) -> VersionRecord:
    """The version of ``playbook`` served with these sources (only the ones it uses count)."""
    used_modules, used_templates, used_queries = used_sources(playbook, modules, templates, queries)
    document = dict(playbook.document)
    vid, _ = version_content(document, used_modules, used_templates, used_queries)
    return VersionRecord(
        id=vid,
        app=playbook.name,
        created_at=datetime.now(UTC),
        source=source,
        message=message,
        playbook=document,
        modules=used_modules,
        templates=used_templates,
        queries=used_queries,
    )


def is_blocking(playbook: Playbook, starter: Starter, modules: Mapping[str, str | None]) -> bool:
    custom = registered_steps()
    for node_id in playbook.reachable(starter.node.id):
        node = playbook.nodes[node_id]
        if node.type in custom:
            return True  # a Python step's wait must not hold up the server's loop
        if node.type == "parallel" or "cache_ttl_seconds" in node.data:
            return True  # waits for its branches; a cache lookup may wait on Redis
        data = node.data
        for source in (data.get("code"), modules.get(str(data.get("script", "")))):
            if isinstance(source, str) and BLOCKING_CALLS.search(source):
                return True
    return False


@dataclass(slots=True)
class _Stored:
    modules: dict[str, str | None]
    templates: dict[str, str]
    queries: dict[str, str]
    apps: list[tuple[str, str]]  # empty when stored apps are not served
    marker: str


def _same(new: list[Source], old: tuple[Source, ...]) -> bool:
    return len(new) == len(old) and all(a is b for a, b in zip(new, old, strict=True))


class _Builder:
    def __init__(self, sources: CatalogSources, previous: Catalog | None) -> None:
        self.sources = sources
        self.hot = previous is not None
        self.old = previous or Catalog()
        self.security = sources.security
        self.modules: dict[str, str | None] = self.old.modules
        self.problems: list[Problem] = []
        self.changes: list[str] = []
        self.store_error = ""
        self.loaded: set[int] = set()  # id() of the playbooks (re)loaded by this build
        self.new_versions: list[VersionRecord] = []

    # the database part -------------------------------------------------------------------
    def _read_store(self) -> _Stored | None:
        """Modules, templates, queries and stored apps; None when the marker did not move."""
        sources = self.sources
        store = sources.store
        call = sources.io.call
        # The marker is read first: a write that lands during the reads below moves it
        # again, so the next poll reads once more and nothing is missed.
        marker = call(store.catalog_marker())
        if self.hot and marker == self.old.marker:
            return None
        modules = {m.name: m.code for m in call(store.list_modules())}
        templates = {t.name: t.content for t in call(store.list_templates())}
        queries = dict(call(store.list_queries()))
        apps: list[tuple[str, str]] = []
        if sources.serve_stored_apps:
            for name in call(store.list_apps()):
                record = call(store.get_app(name))
                if record is not None:
                    apps.append((name, record.json))
        return _Stored(modules, templates, queries, apps, marker)

    def _stored(self) -> _Stored | None:
        if not self.hot:
            return self._read_store()
        try:
            return self._read_store()
        except Exception as exc:  # the database is down: keep serving what was loaded
            self.store_error = f"{type(exc).__name__}: {exc}"
            return None

    def _blocks(self, modules: Mapping[str, str | None]) -> bool:
        """Would these new modules get a served app blocked by the [security] rules?"""
        for source in (*self.old.files, *self.old.stored):
            playbook = source.playbook
            if playbook is None:
                continue
            found = security_problems(playbook, modules=modules, security=self.security)
            bad = [p for p in found if p.severity == "error"]
            if bad:
                log.error(
                    "modules, templates and stored apps not reloaded: with the new modules "
                    "app %r would break [security] rules (%s); still serving the previous ones",
                    playbook.name,
                    bad[0],
                    extra={"app": playbook.name},
                )
                return True
        return False

    # one source --------------------------------------------------------------------------
    def _refuse(self, source: Source, digest: str, reason: str) -> Source:
        kept = source.playbook
        if kept is not None:
            log.error(
                "app %r not reloaded: %s; still serving the previous version",
                source.name,
                reason,
                extra={"app": source.name},
            )
        else:
            log.error("app %r not served: %s", source.name, reason, extra={"app": source.name})
        return Source(source.key, source.name, digest, kept, source.stat, source.read_at)

    def _load(
        self, prev: Source, text: bytes | str, digest: str, *, where: str, file: bool
    ) -> Source:
        """A new or changed source: its new version if usable, else the previous one."""
        try:
            playbook = load_playbook(text, name=prev.name, source=where)
        except PlaybookError as exc:
            if not self.hot and file:
                raise
            if not self.hot:
                log.error("app %r in the database cannot be served: %s", prev.name, exc)
                self.problems.extend(exc.problems)
                return Source(prev.key, prev.name, digest)
            return self._refuse(prev, digest, str(exc))
        old = prev.playbook
        if self.hot and old is not None:
            # Never trade a working version for a broken one; errors it already had are kept.
            known = {str(p) for p in old.errors}
            new = [str(p) for p in playbook.errors if str(p) not in known]
            if new:
                return self._refuse(prev, digest, "; ".join(new[:5]))
        found = security_problems(playbook, modules=self.modules, security=self.security)
        for problem in found:
            log.warning(
                "app %r: %s",
                playbook.name,
                problem,
                extra={"app": playbook.name, "node": problem.node},
            )
        self.problems.extend(found)
        if any(p.severity == "error" for p in found):
            if self.hot:
                return self._refuse(prev, digest, "its scripts break [security] rules (block mode)")
            log.error(
                "app %r is not served: its scripts break [security] rules (block mode)",
                playbook.name,
            )
            return Source(prev.key, prev.name, digest, None, prev.stat, prev.read_at)
        for problem in playbook.errors:
            log.error("app %r: %s", playbook.name, problem)
        self.loaded.add(id(playbook))
        if self.hot:
            verb = "changed" if old is not None else "added"
            self.changes.append(f"app {playbook.name!r} {verb} ({_routes(playbook)})")
        return Source(prev.key, prev.name, digest, playbook, prev.stat, prev.read_at)

    def _file(self, path: Path) -> Source:
        key = str(path)
        prev = next((s for s in self.old.files if s.key == key), None) or Source(key, path.stem)
        try:
            st = path.stat()
            stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self.hot and prev.stat == stat and prev.read_at - st.st_mtime > _RACY_SECONDS:
                return prev
            read_at = time.time()
            text = path.read_bytes()
        except OSError as exc:
            reason = f"cannot read app file {path}: {exc.strerror}"
            if not self.hot:
                raise PlaybookError(reason) from None
            marker = f"unreadable:{exc.errno}"
            if prev.digest == marker:
                return prev
            return self._refuse(prev, marker, reason)
        digest = _digest(text)
        seen = Source(key, prev.name, prev.digest, prev.playbook, stat, read_at)
        if self.hot and digest == prev.digest:
            return seen
        return self._load(seen, text, digest, where=str(path), file=True)

    def _stored_apps(self, apps: list[tuple[str, str]]) -> list[Source]:
        previous = {s.key: s for s in self.old.stored}
        out: list[Source] = []
        for name, text in apps:
            key = "db:" + name
            prev = previous.pop(key, None) or Source(key, name)
            digest = _digest(text.encode())
            if self.hot and digest == prev.digest:
                out.append(prev)
            else:
                out.append(self._load(prev, text, digest, where=f"app {name!r}", file=False))
        for gone in previous.values():
            if gone.playbook is not None:
                self.changes.append(f"app {gone.name!r} removed")
        return out

    # versions ----------------------------------------------------------------------------
    def _versioned(
        self,
        source: Source,
        origin: str,
        templates: Mapping[str, str],
        queries: Mapping[str, str],
        *,
        sources_changed: bool,
    ) -> Source:
        """``source`` with its playbook's version set for the sources served now."""
        playbook = source.playbook
        if playbook is None:
            return source
        if playbook.version and not sources_changed and id(playbook) not in self.loaded:
            return source
        record = version_record(playbook, self.modules, templates, queries, source=origin)
        if record.id == playbook.version:
            return source
        versioned = replace(playbook, version=record.id)
        if id(playbook) in self.loaded:
            self.loaded.add(id(versioned))
        self.new_versions.append(record)
        return replace(source, playbook=versioned)

    def _save_versions(self) -> None:
        """Store the versions this build served first. Off the request path (builds are);
        a failure is logged and the versions are served all the same."""
        store = self.sources.store
        for record in self.new_versions:
            try:
                if self.sources.io.call(store.put_version(record)):
                    self.sources.io.call(
                        store.prune_versions(record.app, self.sources.keep_versions, [record.id])
                    )
            except Exception as exc:
                log.warning(
                    "version %s of app %r not saved: %s",
                    record.id[:12],
                    record.app,
                    exc,
                    extra={"app": record.app},
                )

    # the whole catalog -------------------------------------------------------------------
    def build(self) -> Rebuild:
        old = self.old
        stored = self._stored()
        templates, queries, marker = old.templates, old.queries, old.marker
        apps = list(old.stored)
        if stored is not None:
            marker = stored.marker
            if not (self.hot and stored.modules != old.modules and self._blocks(stored.modules)):
                self.modules = stored.modules
                templates, queries = stored.templates, stored.queries
                apps = self._stored_apps(stored.apps)
        files = [self._file(path) for path in self.sources.app_files]
        modules_changed = self.hot and self.modules != old.modules
        if self.hot:
            if modules_changed:
                self.changes.append("modules changed")
            if templates != old.templates:
                self.changes.append("templates changed")
            if queries != old.queries:
                self.changes.append("queries changed")
            if not self.changes:
                if marker == old.marker and _same(files, old.files) and _same(apps, old.stored):
                    return Rebuild(old, [], self.store_error)
                # Only bookkeeping moved (file times, a refused version's digest): the same
                # apps, routes and plans, so no rebuild.
                bookkeeping = replace(old, files=tuple(files), stored=tuple(apps), marker=marker)
                return Rebuild(bookkeeping, [], self.store_error)
        sources_changed = (
            not self.hot or modules_changed or templates != old.templates or queries != old.queries
        )
        files = [
            self._versioned(
                s,
                "reload" if self.hot else "file",
                templates,
                queries,
                sources_changed=sources_changed,
            )
            for s in files
        ]
        apps = [
            self._versioned(s, "designer", templates, queries, sources_changed=sources_changed)
            for s in apps
        ]
        playbooks = [s.playbook for s in (*files, *apps) if s.playbook is not None]
        if not playbooks and self.sources.example_if_empty:
            text = resources.files("nflow.examples").joinpath("hello.json").read_bytes()
            example = load_playbook(text, name=_EXAMPLE, source="bundled example")
            record = version_record(example, self.modules, templates, queries, source="example")
            self.new_versions.append(record)
            playbooks.append(replace(example, version=record.id))
        self._save_versions()
        modules = self.modules
        blocking = {
            (playbook.digest, starter.node.id): is_blocking(playbook, starter, modules)
            for playbook in playbooks
            for starter in playbook.starters
        }
        problems = list(self.problems)
        for playbook in playbooks:
            problems.extend(playbook.problems)
            # Modules come and go independently of the apps that name them: checked on
            # every build, told when the app or the modules are new.
            missing = module_problems(playbook, modules)
            problems.extend(missing)
            if not self.hot or modules_changed or id(playbook) in self.loaded:
                for problem in missing:
                    if problem.severity == "error":
                        log.error("app %r: %s", playbook.name, problem)
        catalog = Catalog(
            router=Router(playbooks),
            blocking=blocking,
            modules=modules,
            templates=templates,
            queries=queries,
            # Plans hold module sources: reusable only while the modules stay the same.
            plans=old.plans if self.hot and not modules_changed else {},
            flows=old.flows if self.hot and not modules_changed else {},
            files=tuple(files),
            stored=tuple(apps),
            marker=marker,
            problems=tuple(problems),
        )
        return Rebuild(catalog, self.changes, self.store_error)


def build_catalog(sources: CatalogSources, previous: Catalog | None = None) -> Rebuild:
    """The first catalog (``previous`` None), or the next one after ``previous``.

    Blocking (file and database reads, static analysis): call it off the request path.
    When nothing changed, the result's catalog is ``previous`` itself; when nothing served
    changed (only what was seen of the sources), ``changes`` is empty.
    """
    return _Builder(sources, previous).build()
