"""Quarantine of routes that keep hitting limits (``limits.quarantine_after_hits``).

Limits stop one hostile run, but each run still burns its whole time budget: a client that
found a route with an endless loop can keep a worker busy at will. After N limit hits of one
route (app version + starter) within ``quarantine_seconds``, that route answers ``503`` at
once for ``quarantine_seconds``, and then gets a fresh chance. Counted per worker process,
so nothing is shared and nothing waits.
"""

from __future__ import annotations

__all__ = ["Quarantine"]

import threading
import time
from collections import deque


class Quarantine:
    def __init__(self, *, hits: int, seconds: float) -> None:
        self.hits = hits
        self.seconds = seconds
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.hits > 0

    def blocked(self, key: tuple[str, str]) -> float:
        """Seconds left in quarantine for ``key`` (0.0 when it may run)."""
        if not self._until:  # the common case: one falsy check per request
            return 0.0
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left > 0:
            return left
        with self._lock:
            self._until.pop(key, None)
        return 0.0

    def record(self, key: tuple[str, str]) -> bool:
        """Count one limit hit of ``key``; True when this hit puts the route in quarantine."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - self.seconds:
                recent.popleft()
            if len(recent) < self.hits:
                return False
            recent.clear()
            self._until[key] = now + self.seconds
            if len(self._recent) > 10_000:  # routes come from loaded apps; stay bounded anyway
                self._recent.clear()
            return True
