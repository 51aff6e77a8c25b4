"""The master process of ``nflow serve``: granian's process manager, with nflow's supervision.

granian's manager spawns the workers, shares the listening address and stops them on SIGTERM;
nflow keeps all of that. What it replaces is the loop that reacts to a dead worker: granian's
gives up (the whole server exits with code 1, silently unless its own log is on) when a worker
dies within 5.5 s of a replacement, a rule with no setting. A worker can die on purpose here
(the watchdog ends one stuck in native code) and hostile traffic can make that repeat, so
this loop never gives up: each death is logged (pid, exit code or signal, and the worker's last
words when it left some) and the worker is replaced, at once the first time and then after a
growing pause while a slot keeps dying young; ``nflow_worker_restarts_total`` counts them.

When a replacement is serving (it says so with SIGUSR1), the master passes SIGUSR1 on to the
other workers, which then close their keep-alive connections for a moment so that clients
reconnect and spread over all workers again (see :mod:`nflow.server._worker`).
"""

from __future__ import annotations

__all__ = ["Supervisor", "backoff_seconds"]

import logging
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from granian.server.mp import MPServer

from nflow.observability import mark_worker_dead
from nflow.observability._directory import record_worker_restart
from nflow.watchdog import EXIT_CODE as WATCHDOG_EXIT_CODE
from nflow.watchdog import EXIT_NOTES_ENV

log = logging.getLogger("nflow.server")

# A worker that lived this long before dying starts its slot's backoff afresh.
_HEALTHY_SECONDS = 30.0
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
# How long a replacement may take to say it serves before survivors stop waiting for it.
_READY_WAIT = 120.0


def backoff_seconds(deaths_in_a_row: int) -> float:
    """Pause before replacing a worker: none for the first death, then 0.5 s doubling to 30 s."""
    if deaths_in_a_row <= 1:
        return 0.0
    return float(min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (deaths_in_a_row - 2)))


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    if exitcode == WATCHDOG_EXIT_CODE:
        return f"exit code {exitcode} (ended by the watchdog)"
    return f"exit code {exitcode}"


class Supervisor(MPServer):
    """granian's multi-process server whose master never stops because workers die."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._master_pid = os.getpid()
        self._deaths_in_a_row: dict[int, int] = {}
        self._respawn_at: dict[int, float] = {}  # slot -> monotonic time of its replacement
        self._awaiting_ready: dict[int, float] = {}  # slot -> when its replacement started
        self._ready_notices = 0

    # The worker loop -------------------------------------------------------------------------
    def startup(self, spawn_target: Any, target_loader: Any) -> None:
        # Before any worker exists: SIGUSR1's default action would end the master.
        signal.signal(signal.SIGUSR1, self._on_ready_notice)
        super().startup(spawn_target, target_loader)  # type: ignore[no-untyped-call]

    def _serve_loop(self, spawn_target: Any, target_loader: Any) -> None:
        while True:
            wait = None
            if self._respawn_at:
                wait = max(0.0, min(self._respawn_at.values()) - time.monotonic())
            self.main_loop_interrupt.wait(wait)
            # Cleared before the lists are read: a death reported meanwhile wakes us again.
            self.main_loop_interrupt.clear()
            if self.interrupt_signal:
                break
            while self.interrupt_children:
                self._worker_died(self.interrupt_children.pop(0))
            now = time.monotonic()
            due = sorted(slot for slot, at in self._respawn_at.items() if at <= now)
            for slot in due:
                del self._respawn_at[slot]
                self._replace(slot, spawn_target, target_loader)
            if self._ready_notices:
                self._ready_notices = 0
                self._spread_connections()
            if self.reload_signal:
                self._reload(spawn_target, target_loader)  # type: ignore[no-untyped-call]

    def _worker_died(self, slot: int) -> None:
        worker = self.wrks[slot]
        pid = worker.inner.pid
        lived = time.monotonic() - worker.birth
        deaths = 1 if lived >= _HEALTHY_SECONDS else self._deaths_in_a_row.get(slot, 0) + 1
        self._deaths_in_a_row[slot] = deaths
        delay = backoff_seconds(deaths)
        note = _read_exit_note(pid)
        log.error(
            "worker %d (pid %s) died after %.1fs, %s%s; replacing it %s",
            slot + 1,
            pid,
            lived,
            _how(worker.inner.exitcode),
            f" ({note})" if note else "",
            f"in {delay:g}s ({deaths} deaths in a row)" if delay else "now",
            extra={"worker_pid": pid, "exit_code": worker.inner.exitcode},
        )
        if isinstance(pid, int):
            mark_worker_dead(pid)
        self._awaiting_ready.pop(slot, None)
        self._respawn_at[slot] = time.monotonic() + delay

    def _replace(self, slot: int, spawn_target: Any, target_loader: Any) -> None:
        old = self.wrks[slot].inner.pid
        # granian's own respawn: spawns the new worker in the same slot, reaps the old one.
        self._respawn_workers([slot], spawn_target, target_loader)
        new = self.wrks[slot].inner.pid
        record_worker_restart()
        self._awaiting_ready[slot] = time.monotonic()
        log.warning(
            "worker %d replaced: pid %s took over from pid %s",
            slot + 1,
            new,
            old,
            extra={"worker_pid": new},
        )

    # Spreading keep-alive connections after a replacement ---------------------------------
    def _on_ready_notice(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._master_pid:
            return  # a freshly forked worker, before it set its own handler
        self._ready_notices += 1
        self.main_loop_interrupt.set()

    def _spread_connections(self) -> None:
        now = time.monotonic()
        fresh = {s for s, at in self._awaiting_ready.items() if now - at < _READY_WAIT}
        if not fresh:
            return  # the first workers starting, or a late notice
        # The notice does not say which replacement is up; with several at once, the others
        # are nearly there and get their share from the next clients.
        self._awaiting_ready.clear()
        survivors = [w for w in self.wrks if w.idx not in fresh and w.inner.is_alive()]
        for worker in survivors:
            try:
                os.kill(worker.inner.pid, signal.SIGUSR1)
            except ProcessLookupError:
                continue
        if survivors:
            log.info(
                "asked %d surviving worker(s) to close their keep-alive connections so that "
                "clients spread over the replaced worker too",
                len(survivors),
            )


def _read_exit_note(pid: int | None) -> str:
    directory = os.environ.get(EXIT_NOTES_ENV)
    if not directory or pid is None:
        return ""
    path = Path(directory, f"exit-{pid}")
    try:
        text = path.read_text(errors="replace").strip()
        path.unlink()
    except OSError:
        return ""
    return text[:500]
