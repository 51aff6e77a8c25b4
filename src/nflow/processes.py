"""Runs in flight: each execution has a wid, is listed while it runs and can be killed."""

from __future__ import annotations

__all__ = ["Process", "ProcessRegistry"]

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Process:
    wid: str
    app: str
    endpoint: str
    started: float = field(default_factory=time.time)
    state: str = "wait"  # wait, run, end, error, killed
    current: str = ""
    current_type: str = ""
    fork: bool = False
    killed: bool = False

    def as_dict(self) -> dict[str, Any]:
        # Field names of the original's JSON (Go struct names), plus a few of ours.
        return {
            "UUID": self.wid,
            "UUIDBoxCurrent": self.current,
            "State": self.state,
            "Type": self.current_type,
            "Killeable": self.state == "run",
            "app": self.app,
            "endpoint": self.endpoint,
            "started": self.started,
            "fork": self.fork,
        }


class ProcessRegistry:
    """Thread-safe map of wid → Process, holding only runs in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, Process] = {}
        self.total = 0

    # start/finish are on every request's path: single dict operations are atomic under the
    # GIL, so they take no lock; list() and kill() copy or read under it.
    def start(self, process: Process) -> Process:
        self._procs[process.wid] = process
        self.total += 1
        return process

    def finish(self, wid: str) -> None:
        self._procs.pop(wid, None)

    def get(self, wid: str) -> Process | None:
        with self._lock:
            return self._procs.get(wid)

    def list(self) -> list[Process]:
        with self._lock:
            return list(self._procs.copy().values())

    def kill(self, wid: str) -> bool:
        """Mark a run killed; it stops at its next step boundary or host call."""
        with self._lock:
            process = self._procs.get(wid)
            if process is None:
                return False
            process.killed = True
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._procs)
