"""The reaper: a running job whose worker died is queued again within about a minute, in every mode.

Without it such a job waits for the broker to deliver its unacknowledged message again, which happens only
after the visibility timeout (JOB_TIMEOUT_SECONDS + 300 s: over an hour by default).

Every worker process sweeps after each heartbeat (soundstage.workers.Heartbeat). Every SWEEP_SECONDS one of them
(whichever takes the Redis lock first) reads which workers are alive from the worker registry
(soundstage.workers: entries refreshed every 10 s, gone 30 s after their process stopped) and gives back
(soundstage.db.handback) every running job whose worker has no entry and whose row has not been written for
JOB_REAP_AFTER_SECONDS. A job that killed its worker each time fails with ``attempts_exhausted`` at its
next claim once it has used MAX_JOB_ATTEMPTS.

The same sweep sends again every queued job that was last sent JOB_REAP_AFTER_SECONDS ago and whose
message the broker holds nowhere (soundstage.broker_contents): Redis lost it in a crash between a
consumer's BRPOP and its bookkeeping, or all of them in a restart without persistence. A duplicate is
harmless (a claim takes a job once); a lost message would leave its job queued for good.

The registry is trusted only when it lists the sweeping process itself: right after Redis lost its data
(a restart without persistence) every worker looks dead for up to 10 s, and nothing is reaped then.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from soundstage.broker_contents import held_jobs
from soundstage.db.handback import Publish
from soundstage.db.models import utcnow
from soundstage.db.repository import JobRepository
from soundstage.pools import Queue
from soundstage.workers import REFRESH_SECONDS, list_workers

logger = logging.getLogger(__name__)

SWEEP_SECONDS = REFRESH_SECONDS  # one sweep per heartbeat period, by whichever process comes first
LOCK_KEY = "soundstage:reaper"


def sweep(repo: JobRepository, redis: Any, publish: Publish, *, sweeper: str, idle_seconds: float) -> list[str] | None:
    """One sweep by worker ``sweeper``: the ids of the jobs it queued again, or None when it did not sweep
    (another process holds this period's lock, or the registry cannot be trusted right now)."""
    if not redis.set(LOCK_KEY, sweeper, nx=True, ex=SWEEP_SECONDS):
        return None
    live = {worker.hostname for worker in list_workers(redis)}
    if sweeper not in live:
        logger.info("reaper: this worker is not in the registry yet; not sweeping")
        return None
    idle_before = utcnow() - timedelta(seconds=idle_seconds)
    requeued = repo.requeue_abandoned(live, idle_before, publish)
    for job_id in requeued:
        logger.warning("reaper: job %s lost its worker; queued again", job_id)
    resent = repo.send_unsent(lambda queues: _held(redis, queues), idle_before, publish)
    for job_id in resent:
        logger.warning("reaper: job %s was queued but the broker held no message for it; sent again", job_id)
    return requeued + resent


def _held(redis: Any, queues: set[str]) -> tuple[set[str], set[str]]:
    """The jobs the broker holds a message for (in ``queues`` or delivered), and the queues not looked
    into: too long, or unknown to this version (their jobs are left alone)."""
    known = {Queue(name) for name in queues if name in set(Queue)}
    held, unscanned = held_jobs(redis, known)
    return held, {queue.value for queue in unscanned} | (queues - {queue.value for queue in known})
