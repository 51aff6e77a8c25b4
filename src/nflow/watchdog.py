"""Last line of defence against a script stuck where the JS interrupt cannot reach.

jsbox interrupts the interpreter loop at the deadline, and the prelude refuses the native
operations found to run unbounded (huge string searches). Anything still running well past its
deadline is stuck inside native code; no Python thread can stop it. The watchdog then ends the
worker process (exit code 70) so the server replaces it with a fresh one, instead of letting
one script hold a worker forever. The other requests of that worker fail with a connection
error; every other worker is untouched.
"""

from __future__ import annotations

__all__ = ["EXIT_CODE", "EXIT_NOTES_ENV", "Watchdog", "leave_exit_note"]

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("nflow.watchdog")

EXIT_CODE = 70
# A directory where a worker about to end itself leaves ``exit-<pid>``, the reason, for the
# master's log line about its death (set by ``nflow serve``).
EXIT_NOTES_ENV = "NFLOW_EXIT_NOTES"


class Watched(Protocol):
    deadline: float  # time.monotonic() value; 0 when idle
    label: str


def leave_exit_note(message: str) -> None:
    """Tell the master why this process is about to exit (best effort)."""
    directory = os.environ.get(EXIT_NOTES_ENV)
    if directory:
        try:
            with open(os.path.join(directory, f"exit-{os.getpid()}"), "w") as note:
                note.write(message)
        except OSError:
            pass


def _exit_worker(message: str) -> None:
    log.critical("%s; ending this worker so it is replaced", message)
    leave_exit_note(message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_CODE)


class Watchdog:
    def __init__(
        self,
        *,
        grace: float = 5.0,
        interval: float = 0.25,
        on_stuck: Callable[[str], None] = _exit_worker,
    ) -> None:
        self.grace = grace
        self._interval = interval
        self._on_stuck = on_stuck
        self._watched: weakref.WeakSet[Watched] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nflow-watchdog", daemon=True)
        self._thread.start()
        self.fired = 0

    def watch(self, item: Watched) -> None:
        with self._lock:
            self._watched.add(item)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            with self._lock:
                items = list(self._watched)
            for item in items:
                deadline = item.deadline
                if deadline and now > deadline + self.grace:
                    self.fired += 1
                    item.deadline = 0.0
                    self._on_stuck(
                        f"{item.label} has run {now - deadline:.1f}s past its time limit "
                        "inside an operation the JS engine cannot interrupt"
                    )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
