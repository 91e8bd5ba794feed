"""Running jobs put back in their queue without waiting for the broker's visibility timeout.

- **hand_back**: a worker that stops in order (SIGTERM, Ctrl-C) gives back every job it is running, at
  once. Its runs notice at their next progress report (the row no longer names them) and end quietly.
  The run does not count as an attempt: a stop is not the job's fault.
- **requeue_abandoned**: the reaper (soundstage.reaper) gives back a job whose worker died (no registry
  entry in Redis) and whose row has not been written for a while. That run does count, so a job that
  kills its worker every time fails with ``attempts_exhausted`` at its MAX_JOB_ATTEMPTS-th claim.
- **send_again**: the reaper publishes once more a queued job whose message the broker lost
  (soundstage.broker_contents); its row is untouched but for when it was sent.

For the first two the row goes back to ``queued`` and a new message is published inside the same transaction:
a worker that receives it at once waits on the row's lock and then finds the job queued (if publishing
fails, nothing changed). The old message, still unacknowledged, is delivered again after the visibility
timeout and finds the job running or finished, as any duplicate delivery does.

Pipeline parents are never given back: no worker runs them as one unit (their steps advance them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soundstage.db.models import Job, utcnow
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


def unsent_candidates(session: Session, sent_before: datetime, limit: int) -> list[tuple[str, str]]:
    """Queued jobs (id, queue) last sent before ``sent_before`` (a queued row's ``heartbeat_at`` is when it
    was last published; a new row's is empty and its ``created_at`` stands in), oldest first."""
    sent_at = func.coalesce(Job.heartbeat_at, Job.created_at)
    rows = session.execute(
        select(Job.id, Job.queue)
        .where(Job.status == JobStatus.QUEUED.value, sent_at < sent_before)
        .order_by(sent_at)
        .limit(limit)
    ).all()
    return [(row.id, row.queue) for row in rows]


def send_again(session: Session, job_id: str, sent_before: datetime, publish: Publish) -> bool:
    """Publish queued job ``job_id`` once more if it is still queued and was last sent before ``sent_before``."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.status != JobStatus.QUEUED.value or (job.heartbeat_at or job.created_at) >= sent_before:
        return False
    job.heartbeat_at = utcnow()
    publish(job)
    return True


def _queue_again(job: Job, message: str) -> None:
    job.status = JobStatus.QUEUED.value
    job.worker = None
    job.heartbeat_at = utcnow()  # when it was sent again: the reaper's clock for a message the broker loses
    job.started_at = None
    job.progress = 0.0
    job.progress_detail = {"message": message}
