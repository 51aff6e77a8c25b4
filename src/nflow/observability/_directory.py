"""The directory of the multiprocess metric files, and what the master of ``nflow serve`` does
with it: create it, count replaced workers, drop a dead worker's gauges, remove it.

Apart from :mod:`nflow.observability.metrics` (and prometheus_client with it), so that the
master process, which records no metric itself, does not load either.
"""

from __future__ import annotations

__all__ = [
    "ENV_DIR",
    "mark_worker_dead",
    "multiprocess_dir",
    "record_worker_restart",
    "remove_multiprocess_dir",
    "setup_multiprocess_dir",
]

import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
_STARTED_FILE = "nflow-started"
# Written by the server's master process only: how many dead workers it replaced.
_RESTARTS_FILE = "nflow-worker-restarts"
_TEMP_PREFIX = "nflow-metrics-"


def setup_multiprocess_dir(path: str | os.PathLike[str] | None = None) -> str:
    """Prepare the metrics directory for one server run and export it to child processes.

    With ``path`` the directory is created if needed and emptied of earlier runs' metric
    files (only ``*.db`` files and nflow's own marker are removed); without it a fresh
    temporary directory is made. Call once in the parent before starting workers.
    """
    if path is None:
        _remove_orphaned_dirs()
        # The owner's pid in the name lets a later start remove it if that process was killed.
        directory = tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-")
    else:
        directory = os.fspath(path)
        os.makedirs(directory, exist_ok=True)
        for name in glob.glob(os.path.join(glob.escape(directory), "*.db")):
            os.remove(name)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, _RESTARTS_FILE))
    Path(directory, _STARTED_FILE).write_text(repr(time.time()))
    os.environ[ENV_DIR] = directory
    return directory


def _remove_orphaned_dirs() -> None:
    """Delete the temporary directories of servers whose master was killed (SIGKILL)."""
    pattern = os.path.join(glob.escape(tempfile.gettempdir()), f"{_TEMP_PREFIX}*-*")
    for directory in glob.glob(pattern):
        owner = os.path.basename(directory)[len(_TEMP_PREFIX) :].partition("-")[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue  # someone else's process
        remove_multiprocess_dir(directory)


def record_worker_restart(path: str | os.PathLike[str] | None = None) -> None:
    """Count one replaced worker (``nflow_worker_restarts_total``); the master calls this."""
    directory = os.fspath(path) if path is not None else multiprocess_dir()
    if not directory:
        return
    file = Path(directory, _RESTARTS_FILE)
    file.write_text(str(_worker_restarts(directory) + 1))


def _worker_restarts(directory: str | None) -> int:
    if directory:
        try:
            return int(Path(directory, _RESTARTS_FILE).read_text())
        except (OSError, ValueError):
            pass
    return 0


def multiprocess_dir() -> str | None:
    """The directory metrics are written to, or None before :func:`setup_multiprocess_dir`."""
    return os.environ.get(ENV_DIR) or None


def remove_multiprocess_dir(path: str | os.PathLike[str]) -> None:
    """Delete a directory made by :func:`setup_multiprocess_dir` (at server shutdown)."""
    directory = os.fspath(path)
    for name in [
        *glob.glob(os.path.join(glob.escape(directory), "*.db")),
        os.path.join(directory, _STARTED_FILE),
        os.path.join(directory, _RESTARTS_FILE),
        *glob.glob(os.path.join(glob.escape(directory), "exit-*")),
    ]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
    # Left alone when not empty (someone else's files) or already gone.
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def mark_worker_dead(pid: int, path: str | os.PathLike[str] | None = None) -> None:
    """Drop the gauges of an exited worker; its counters and histograms stay in the totals."""
    directory = os.fspath(path) if path is not None else multiprocess_dir()
    if directory:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
