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

_alive: dict[str, int] = {}  # job id -> deliveries of it being handled here (a duplicate makes two)
_lock = threading.Lock()


@contextmanager
def running(job_id: str) -> Iterator[None]:
    """Count a delivery of ``job_id`` as handled by this process for the duration of the block: from before
    its claim, so that a duplicate delivered to another thread meanwhile never takes it for an orphan."""
    with _lock:
        _alive[job_id] = _alive.get(job_id, 0) + 1
    try:
        yield
    finally:
        with _lock:
            left = _alive[job_id] - 1
            if left:
                _alive[job_id] = left
            else:
                del _alive[job_id]


def others_running(job_id: str) -> bool:
    """Whether a delivery of ``job_id`` other than the caller's (which holds ``running``) is handled here."""
    with _lock:
        return _alive.get(job_id, 0) > 1
