"""Releases at serving time: which version of an app a request runs, and automatic rollback.

An app with a release (a row of ``nflow_releases``) serves one or more versions by weight.
A new client is assigned a version by smooth weighted round robin (exact shares, whatever the
order clients arrive in) and gets a signed cookie per app naming it, so it stays on that
version while the version has weight; a form wizard's resume request keeps its version even
after the release moved on, as long as the worker still holds it. Apps without a release are
served as before: their one loaded version, no cookie.

:class:`Releases` is refreshed off the request path (the worker's reload poll reads every
release), and swaps in a new immutable plan with one assignment, so a request reads one plan.

Automatic rollback: the requests and failures (5xx answers and limit hits) of every version of
a release with several versions are counted per worker and added to ``nflow_version_counts``
right after they happen (one flush at a time on the I/O loop, so a burst is one statement);
after each flush the worker reads the shared totals since the window began (or the release
did) and gives a canary that failed too often weight 0 at once, in its own plan and in the
database, where a sequence number lets only one worker write the event.
"""

from __future__ import annotations

__all__ = ["Releases", "VersionCookies"]

import base64
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nflow._http import Request
from nflow._io import IoLoop
from nflow.catalog import Catalog, is_blocking
from nflow.config import ReleasesConfig
from nflow.playbook import parse_playbook
from nflow.router import Match, Router
from nflow.store import ReleaseRecord, Store, VersionRecord

log = logging.getLogger("nflow.releases")

_BUCKET_SECONDS = 1  # the shared counts' time resolution
_RETIRED = 32  # versions kept loaded after they left a release, for clients mid-wizard
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,60}$")


class VersionCookies:
    """The per-app cookie naming a client's version, signed with the session secret."""

    def __init__(self, secret: str, *, max_age: int, secure: bool) -> None:
        self._key = hashlib.sha256(b"nflow-version-cookie-v1\x00" + secret.encode()).digest()
        self._max_age = max_age
        self._secure = secure
        self._names: dict[str, str] = {}

    def name(self, app: str) -> str:
        found = self._names.get(app)
        if found is None:
            found = "nflow_v_" + (
                app if _COOKIE_NAME.match(app) else hashlib.sha256(app.encode()).hexdigest()[:16]
            )
            self._names[app] = found
        return found

    def _mac(self, app: str, version: str) -> str:
        digest = hmac.new(self._key, f"{app}\x00{version}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def read(self, request: Request, app: str) -> str:
        """The version the client's cookie names for ``app``, or "" (none, or forged)."""
        value = request.cookies.get(self.name(app), "")
        version, _, mac = value.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(app, version)):
            return ""
        return version

    def set_cookie(self, app: str, version: str) -> str:
        parts = [
            f"{self.name(app)}={version}.{self._mac(app, version)}",
            "Path=/",
            f"Max-Age={self._max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self._secure:
            parts.append("Secure")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class _Choice:
    version: str
    weight: int
    catalog: Catalog | None  # None: the head version, served from the worker's catalog


@dataclass(frozen=True, slots=True)
class _AppPlan:
    app: str
    seq: int
    record: ReleaseRecord
    choices: tuple[_Choice, ...]
    canaries: frozenset[str]
    started: float  # when the release was made (epoch seconds): counts before it do not count


@dataclass(frozen=True, slots=True)
class Picked:
    """What a request of a released app runs: the match and catalog of its version, and the
    cookie to set when the client was (re)assigned."""

    match: Match
    catalog: Catalog
    cookie: str = ""


@dataclass(slots=True)
class _Counts:
    requests: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Pending:
    counts: dict[tuple[str, str], _Counts] = field(default_factory=dict)


def _canaries(weights: Mapping[str, int], head: str) -> frozenset[str]:
    """Every version with weight but the base: the one with the most weight (the head
    version on a tie, as the one its source says)."""
    if len(weights) < 2:
        return frozenset()
    base = max(weights, key=lambda v: (weights[v], v == head))
    return frozenset(v for v in weights if v != base)


class Releases:
    """One worker's releases: its plan per app, the variant versions it holds, the counts."""

    def __init__(
        self,
        *,
        store: Store,
        io: IoLoop,
        config: ReleasesConfig,
        cookies: VersionCookies,
        on_version: Any = None,
    ) -> None:
        self.store = store
        self.io = io
        self.config = config
        self.cookies = cookies
        self.plans: dict[str, _AppPlan] = {}
        self._variants: dict[str, tuple[int, Catalog]] = {}  # version -> (modules id, catalog)
        self._retired: dict[str, Catalog] = {}
        self._rr: dict[str, dict[str, int]] = {}
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._flushing = False
        self._flush_future: Any = None
        self._last_prune = 0.0
        # Called with (app, version, ok) for each counted request (metrics).
        self._on_version = on_version

    # refresh (off the request path) ------------------------------------------------------
    def refresh(self, catalog: Catalog) -> None:
        """Read every release and load the versions they serve; blocking (a poll thread)."""
        rows = self.io.call(self.store.list_releases(), timeout=30.0)
        heads = {p.name: p for p in catalog.playbooks}
        plans: dict[str, _AppPlan] = {}
        for row in rows:
            head = heads.get(row.app)
            if head is None:
                continue
            old = self.plans.get(row.app)
            if (
                old is not None
                and old.seq == row.seq
                and old.record.head == row.head
                and all(c.catalog is None or c.version in self._variants for c in old.choices)
                and self._head_of(old) == head.version
            ):
                plans[row.app] = old
                continue
            weights = row.serving(head.version)
            choices: list[_Choice] = []
            for version, weight in sorted(weights.items()):
                if version == head.version:
                    choices.append(_Choice(version, weight, None))
                    continue
                variant = self._variant(version, row.app, catalog)
                if variant is not None:
                    choices.append(_Choice(version, weight, variant))
            if not choices:
                choices.append(_Choice(head.version, 100, None))
            served = {c.version: c.weight for c in choices}
            plans[row.app] = _AppPlan(
                app=row.app,
                seq=row.seq,
                record=row,
                choices=tuple(choices),
                canaries=_canaries(served, head.version),
                started=row.updated_at.timestamp(),
            )
        for app, old in self.plans.items():
            kept = {c.version for c in plans[app].choices} if app in plans else set()
            for choice in old.choices:
                if choice.catalog is not None and choice.version not in kept:
                    self._retire(choice.version, choice.catalog)
        self.plans = plans

    @staticmethod
    def _head_of(plan: _AppPlan) -> str:
        for choice in plan.choices:
            if choice.catalog is None:
                return choice.version
        return plan.record.head or ""

    def _retire(self, version: str, catalog: Catalog) -> None:
        self._retired.pop(version, None)
        self._retired[version] = catalog
        while len(self._retired) > _RETIRED:
            self._retired.pop(next(iter(self._retired)))

    def _variant(self, version: str, app: str, catalog: Catalog) -> Catalog | None:
        cached = self._variants.get(version)
        if cached is not None and cached[0] == id(catalog.modules):
            return cached[1]
        try:
            record = self.io.call(self.store.get_version(version, app), timeout=30.0)
        except Exception as exc:
            log.error("version %s of app %r cannot be read: %s", version[:12], app, exc)
            return None
        if record is None:
            log.error(
                "the release of app %r names version %s, which is not stored; "
                "serving its other versions",
                app,
                version[:12],
                extra={"app": app},
            )
            return None
        variant = variant_catalog(record, catalog)
        if variant is None:
            return None
        self._variants[version] = (id(catalog.modules), variant)
        return variant

    # the request path --------------------------------------------------------------------
    def pick(
        self, request: Request, match: Match, catalog: Catalog, *, resuming: bool
    ) -> Picked | None:
        """The version this request runs, when its app has a release; None otherwise."""
        plan = self.plans.get(match.playbook.name)
        if plan is None:
            return None
        app = plan.app
        pinned = self.cookies.read(request, app) if request.has_cookies else ""
        choice: _Choice | None = None
        held: Catalog | None = None
        if pinned:
            for candidate in plan.choices:
                if candidate.version == pinned:
                    choice = candidate
                    break
            if choice is None and resuming:
                # A wizard that started on a version finishes on it.
                if pinned == match.playbook.version:
                    return Picked(match, catalog)
                held = self._retired.get(pinned) or self._cached(pinned)
        if choice is None and held is None:
            choice = self._next(plan)
        cookie = ""
        if choice is not None:
            if choice.version != pinned:
                cookie = self.cookies.set_cookie(app, choice.version)
            held = choice.catalog
        if held is None:
            return Picked(match, catalog, cookie)
        found = held.router.match(request.method, match.endpoint)
        if found is None or found.playbook.name != app:
            # A route the version does not have: served by the loaded version.
            return Picked(match, catalog, cookie)
        return Picked(found, held, cookie)

    def _cached(self, version: str) -> Catalog | None:
        cached = self._variants.get(version)
        return cached[1] if cached is not None else None

    def _next(self, plan: _AppPlan) -> _Choice:
        """Smooth weighted round robin: over any run of clients, shares follow the weights."""
        choices = plan.choices
        if len(choices) == 1:
            return choices[0]
        state = self._rr.get(plan.app)
        if state is None or state.keys() != {c.version for c in choices}:
            state = self._rr[plan.app] = {c.version: 0 for c in choices}
        total = 0
        best = choices[0]
        for choice in choices:
            state[choice.version] += choice.weight
            total += choice.weight
            if state[choice.version] > state[best.version]:
                best = choice
        state[best.version] -= total
        return best

    def record(self, app: str, version: str, status: int, limit: str) -> None:
        """Count one answered request of ``app`` at ``version`` (only apps with a release of
        several versions are counted); cheap: the database work is on the I/O loop."""
        plan = self.plans.get(app)
        if plan is None or len(plan.choices) < 2:
            return
        failed = status >= 500 or bool(limit)
        if self._on_version is not None:
            self._on_version(app, version, not failed)
        with self._lock:
            counts = self._pending.counts.get((app, version))
            if counts is None:
                counts = self._pending.counts[(app, version)] = _Counts()
            counts.requests += 1
            counts.errors += failed
            if self._flushing:
                return
            self._flushing = True
        self._flush_future = self.io.submit(self._flush())

    # counting and automatic rollback (on the I/O loop) -----------------------------------
    async def _flush(self) -> None:
        try:
            while True:
                with self._lock:
                    pending = self._pending
                    if not pending.counts:
                        self._flushing = False
                        return
                    self._pending = _Pending()
                await self._flush_once(pending)
        except Exception as exc:
            with self._lock:
                self._flushing = False
            log.error("version counts not shared: %s", exc)

    async def _flush_once(self, pending: _Pending) -> None:
        now = time.time()
        bucket = int(now // _BUCKET_SECONDS)
        rows = [
            (app, version, bucket, c.requests, c.errors)
            for (app, version), c in pending.counts.items()
        ]
        await self.store.add_version_counts(rows)
        window = self.config.window_seconds
        if now - self._last_prune > window:
            self._last_prune = now
            await self.store.prune_version_counts(int((now - 2 * window) // _BUCKET_SECONDS))
        if not self.config.auto_rollback:
            return
        for app in {app for app, _ in pending.counts}:
            plan = self.plans.get(app)
            if plan is None or not plan.canaries:
                continue
            since = int(max(now - window, plan.started) // _BUCKET_SECONDS)
            totals = await self.store.version_counts(app, since)
            for canary in sorted(plan.canaries):
                requests, errors = totals.get(canary, (0, 0))
                if requests < self.config.canary_min_requests:
                    continue
                if errors / requests > self.config.canary_max_error_rate:
                    await self._roll_back(plan, canary, requests, errors)
                    break

    async def _roll_back(self, plan: _AppPlan, canary: str, requests: int, errors: int) -> None:
        config = self.config
        current = self.plans.get(plan.app)
        if current is None or canary not in current.canaries:
            return
        # This worker stops sending clients to the canary now, whoever writes the event.
        choices = tuple(c for c in current.choices if c.version != canary)
        self.plans = {
            **self.plans,
            plan.app: replace(current, choices=choices, canaries=current.canaries - {canary}),
        }
        weights = dict(current.record.weights)
        weights[canary] = 0
        rate = errors / requests
        detail = {
            "version": canary,
            "requests": requests,
            "errors": errors,
            "error_rate": round(rate, 4),
            "canary_max_error_rate": config.canary_max_error_rate,
            "canary_min_requests": config.canary_min_requests,
            "window_seconds": config.window_seconds,
        }
        written = await self.store.set_release(
            plan.app,
            weights,
            head=current.record.head,
            kind="auto_rollback",
            detail=detail,
            expect_seq=current.seq,
        )
        if written is not None:
            log.warning(
                "canary version %s of app %r rolled back automatically: %d of its %d requests "
                "failed (%.0f%%, more than releases.canary_max_error_rate %.0f%%); it has "
                "weight 0 now",
                canary[:12],
                plan.app,
                errors,
                requests,
                rate * 100,
                config.canary_max_error_rate * 100,
                extra={"app": plan.app, "version": canary},
            )


def variant_catalog(record: VersionRecord, catalog: Catalog) -> Catalog | None:
    """A catalog serving one stored version: its document with its own modules, templates and
    queries, over the loaded ones (for names it reaches at run time only)."""
    try:
        playbook = parse_playbook(
            record.playbook, name=record.app, source=f"version {record.id[:12]}"
        )
    except Exception as exc:
        log.error("version %s of app %r cannot be served: %s", record.id[:12], record.app, exc)
        return None
    playbook = replace(playbook, version=record.id)
    modules: dict[str, str | None] = {**catalog.modules, **record.modules}
    blocking = {
        (playbook.digest, starter.node.id): is_blocking(playbook, starter, modules)
        for starter in playbook.starters
    }
    return Catalog(
        router=Router([playbook]),
        blocking=blocking,
        modules=modules,
        templates={**catalog.templates, **record.templates},
        queries={**catalog.queries, **record.queries},
        plans={},
    )
