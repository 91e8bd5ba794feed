"""Job events on Redis pub/sub: a job reached a final status.

Whoever finishes a job (the job runner of any pool, the pipeline pool for a multi-step job, the API when
it cancels a queued one) announces it on the job's own channel. A request that waits for its job (the
synchronous routes, `Prefer: wait`) subscribes to that channel before it looks at the job row once, so it
learns of the end at once without polling the database; the row stays the source of truth, the event
only says when to read it again. Announcing is best effort: a waiter that misses an event reads the row
when its wait runs out.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "soundstage:job-finished:"


def finished_channel(job_id: str) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


def announce_finished(redis: Any, job_id: str, status: str) -> None:
    """Tell anyone waiting that ``job_id`` ended with ``status`` (never raises: a lost event only makes a
    waiter wait until its deadline)."""
    try:
        redis.publish(finished_channel(job_id), status)
    except Exception:
        logger.warning("job %s: could not announce that it %s", job_id, status, exc_info=True)
