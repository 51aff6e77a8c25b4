"""One worker's part in the cluster: its instance's heartbeat, and the change notices it
passes on to the worker's reloader.

Both run as tasks on the runtime's I/O loop (where the store lives), never on the request
path. A database that goes away is logged once, when it goes and when it is back; the
worker keeps serving what it has, and its reloader keeps polling.
"""

from __future__ import annotations

__all__ = ["Presence"]

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from nflow._io import IoLoop
from nflow.cluster._members import Me, forget_instances, mark_stopped, write_heartbeat
from nflow.config import ClusterConfig
from nflow.store import Store

log = logging.getLogger("nflow.cluster")

# A lost listening connection is opened again after this, doubling up to the maximum.
_RETRY_FIRST = 1.0
_RETRY_MAX = 10.0
# How often a listening connection is checked (a cut network is not noticed otherwise).
_CHECK_EVERY = 5.0
# What a worker's stop waits at most for its tasks, and then for the stop record.
_STOP_SECONDS = 2.0
# Rows of long-gone instances are deleted about this often (by every live worker).
_FORGET_EVERY = 300.0


class Presence:
    """Heartbeats for instance ``me`` and, on PostgreSQL, change notices to ``on_change``.

    ``on_change(kind)`` is called on the I/O thread with a kind of ``nflow.store``
    (``CHANGE_KINDS``), and with ``"resync"`` after a lost listening connection is back
    (notices sent meanwhile are lost: look for every kind of change once).
    """

    def __init__(
        self,
        *,
        store: Store,
        io: IoLoop,
        config: ClusterConfig,
        me: Me,
        on_change: Callable[[str], None],
    ) -> None:
        self.store = store
        self.io = io
        self.config = config
        self.me = me
        self.on_change = on_change
        # Set from any thread through the I/O loop (an Event binds to a loop at first wait).
        self._stop = asyncio.Event()
        self._future: Future[None] | None = None
        self._errors: dict[str, str] = {}

    def start(self) -> None:
        self._future = self.io.submit(self._main())

    def stop(self, *, stopped: bool) -> None:
        """End both tasks; with ``stopped`` (the server stops cleanly) record the stop."""
        future = self._future
        if future is None:
            return
        self._future = None
        self.io.loop.call_soon_threadsafe(self._stop.set)
        # Best effort, and short: a server's stop must not wait on a slow database (without
        # the record, the instance is listed dead instead of stopped).
        with contextlib.suppress(Exception):
            future.result(timeout=_STOP_SECONDS)
        if stopped:
            try:
                self.io.call(mark_stopped(self.store, self.me.id), timeout=_STOP_SECONDS)
            except Exception as exc:
                log.warning("could not record this instance's stop: %s", exc)

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(self._beat())]
        if self.config.notify and self.store.dialect == "postgresql":
            tasks.append(asyncio.ensure_future(self._listen()))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sleep(self, seconds: float, *also: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, *also)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _note(self, what: str, error: str) -> None:
        # One line when a part fails and one when it works again, not one per attempt.
        before = self._errors.get(what, "")
        if error and not before:
            log.error("cluster %s failed: %s; retrying", what, error)
        elif before and not error:
            log.info("cluster %s works again", what)
        self._errors[what] = error

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        forget_at = loop.time() + _FORGET_EVERY
        while not self._stop.is_set():
            try:
                await write_heartbeat(self.store, self.me)
                if loop.time() >= forget_at:
                    forget_at = loop.time() + _FORGET_EVERY
                    await forget_instances(
                        self.store, forget_after=self.config.forget_after_seconds
                    )
                self._note("heartbeat", "")
            except Exception as exc:
                self._note("heartbeat", f"{type(exc).__name__}: {exc}")
            await self._sleep(self.config.heartbeat_seconds)

    async def _listen(self) -> None:
        delay = _RETRY_FIRST
        first = True
        while not self._stop.is_set():
            try:
                subscription = await self.store.subscribe(self._notice)
            except Exception as exc:
                self._note("change listener", str(exc))
                await self._sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)
                continue
            if subscription is None:
                return
            self._note("change listener", "")
            if not first:
                self._notice("resync")
            first = False
            delay = _RETRY_FIRST
            try:
                while not self._stop.is_set() and await subscription.alive():
                    await self._sleep(_CHECK_EVERY, subscription.lost)
            finally:
                await subscription.close()
            if not self._stop.is_set():
                self._note("change listener", "the listening connection was lost")

    def _notice(self, kind: Any) -> None:
        try:
            self.on_change(str(kind))
        except Exception:  # a listener's failure must not end the listening
            log.exception("handling a change notice failed")
