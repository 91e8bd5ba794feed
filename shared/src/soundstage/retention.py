"""Retention: finished jobs, their outputs and inputs are removed RETENTION_HOURS after they ended
(24 by default, as musicgen-api keeps its files), and MAX_STORED_FILES keeps at most that many listed
outputs (S.Rocks keeps 100), removing the oldest finished jobs first.

Every worker process offers to sweep after its heartbeat (soundstage.workers.Heartbeat); one of them
per SWEEP_SECONDS sweeps (a Redis lock), so the work is done once however many workers run, and in every
mode. A sweep removes at most BATCH jobs, so a backlog drains over a few sweeps without holding the
database. For each job it deletes the stored objects of the job and of its steps first (names start
with their ids), then the rows (the steps, file rows and idempotency keys go by the foreign keys): a
failure half-way leaves a row whose objects are gone, which the next sweep removes, never objects
nothing refers to.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from soundstage.db.models import utcnow
from soundstage.db.repository import JobRepository
from soundstage.storage import ObjectStore
from soundstage.workers import REFRESH_SECONDS

logger = logging.getLogger(__name__)

SWEEP_SECONDS = REFRESH_SECONDS  # cheap (two indexed queries): a job goes within seconds of its time
LOCK_KEY = "soundstage:retention"
BATCH = 200


def remove_job(repo: JobRepository, store: ObjectStore, job_id: str) -> int:
    """Delete ``job_id``'s stored objects (its steps' too), then its rows; the number of objects."""
    removed = sum(remove_stored(store, member) for member in repo.family_ids(job_id))
    repo.delete(job_id)
    return removed


def remove_stored(store: ObjectStore, job_id: str) -> int:
    """Delete every object stored under ``job_id``'s name (a cancelled job's inputs: it keeps nothing)."""
    names = store.names(f"{job_id}_")
    for name in names:
        store.delete(name)
    return len(names)


def sweep(
    repo: JobRepository,
    store: ObjectStore,
    redis: Any,
    *,
    retention_hours: float,
    max_stored_files: int,
    sweeper: str,
) -> list[str] | None:
    """One sweep: the ids of the jobs removed, or None when another process sweeps this period (or both
    limits are off: 0)."""
    if retention_hours <= 0 and max_stored_files <= 0:
        return None
    if not redis.set(LOCK_KEY, sweeper, nx=True, ex=SWEEP_SECONDS):
        return None
    removed: list[str] = []
    if retention_hours > 0:
        for job_id in repo.expired_jobs(utcnow() - timedelta(hours=retention_hours), BATCH):
            remove_job(repo, store, job_id)
            removed.append(job_id)
    if max_stored_files > 0:
        for job_id in repo.jobs_over_file_cap(max_stored_files, BATCH):
            remove_job(repo, store, job_id)
            removed.append(job_id)
    if removed:
        logger.info("retention: removed %d finished job(s) and their files", len(removed))
    return removed
