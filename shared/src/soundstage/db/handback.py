"""Running jobs put back in their queue without waiting for the broker's visibility timeout.

- **hand_back**: a worker that stops in order (SIGTERM, Ctrl-C) gives back every job it is running, at
  once. Its runs notice at their next progress report (the row no longer names them) and end quietly.
  The run does not count as an attempt: a stop is not the job's fault.
- **requeue_abandoned**: the reaper (soundstage.reaper) gives back a job whose worker died (no registry
  entry in Redis) and whose row has not been written for a while. That run does count, so a job that
  kills its worker every time fails with ``attempts_exhausted`` at its MAX_JOB_ATTEMPTS-th claim.

Either way the row goes back to ``queued`` and a new message is published inside the same transaction:
a worker that receives it at once waits on the row's lock and then finds the job queued (if publishing
fails, nothing changed). The old message, still unacknowledged, is delivered again after the visibility
timeout and finds the job running or finished, as any duplicate delivery does.

Pipeline parents are never given back: no worker runs them as one unit (their steps advance them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from soundstage.db.models import Job
from soundstage.pools import ADVANCED_KINDS
from soundstage.schemas.common import JobStatus

Publish = Callable[[Job], None]
"""Sends a job's task again (to its pool's queue)."""

_ADVANCED = sorted(kind.value for kind in ADVANCED_KINDS)


def hand_back(session: Session, worker: str, publish: Publish) -> list[str]:
    """Queue every job ``worker`` is running again; returns their ids."""
    jobs = session.scalars(
        select(Job)
        .where(Job.worker == worker, Job.status == JobStatus.PROCESSING.value, Job.kind.notin_(_ADVANCED))
        .with_for_update()
    ).all()
    for job in jobs:
        _queue_again(job, "handed back: its worker stopped")
        job.attempts = max(job.attempts - 1, 0)
        publish(job)
    return [job.id for job in jobs]


def abandoned_candidates(session: Session, idle_before: datetime, limit: int) -> list[tuple[str, str]]:
    """Running jobs (id, worker) whose rows were last written before ``idle_before``, oldest first."""
    rows = session.execute(
        select(Job.id, Job.worker)
        .where(
            Job.status == JobStatus.PROCESSING.value,
            Job.worker.is_not(None),
            Job.heartbeat_at < idle_before,
            Job.kind.notin_(_ADVANCED),
        )
        .order_by(Job.heartbeat_at)
        .limit(limit)
    ).all()
    return [(row.id, row.worker) for row in rows]


def requeue_abandoned(session: Session, job_id: str, worker: str, idle_before: datetime, publish: Publish) -> bool:
    """Queue job ``job_id`` again if it is still run by ``worker`` and still idle since ``idle_before``."""
    job = session.get(Job, job_id, with_for_update=True)
    if (
        job is None
        or job.status != JobStatus.PROCESSING.value
        or job.worker != worker
        or job.heartbeat_at is None
        or job.heartbeat_at >= idle_before
    ):
        return False
    _queue_again(job, f"queued again: its worker {worker} stopped answering")
    publish(job)
    return True


def _queue_again(job: Job, message: str) -> None:
    job.status = JobStatus.QUEUED.value
    job.worker = None
    job.heartbeat_at = None
    job.started_at = None
    job.progress = 0.0
    job.progress_detail = {"message": message}
