"""The job runs alive in this process, so that a claim can tell its own dead run from a live one.

A row that names this process as its worker while no run of it is alive here is an orphan: its run ended
without recording the end (the database was away when it finished, and the task's retry came back here).
Waiting for its heartbeat to go stale (JOB_HEARTBEAT_TIMEOUT, 5 minutes) would hold a finished job for
nothing, so such a job is taken over at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_alive: set[str] = set()
_lock = threading.Lock()


@contextmanager
def running(job_id: str) -> Iterator[None]:
    """Mark ``job_id`` as run by this process for the duration of the block."""
    with _lock:
        _alive.add(job_id)
    try:
        yield
    finally:
        with _lock:
            _alive.discard(job_id)


def is_running(job_id: str) -> bool:
    with _lock:
        return job_id in _alive
