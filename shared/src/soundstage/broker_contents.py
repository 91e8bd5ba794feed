"""Which jobs the broker holds a message for: waiting in a queue, or delivered and not yet acknowledged.

The job row is the truth and the message only a wake-up call, so a message can be lost without losing the
job, but the job then waits for good. Kombu's Redis transport loses one when Redis goes away between a
consumer's BRPOP (the message leaves the list) and its bookkeeping of the delivery (the `unacked` hash),
or when Redis restarts without persistence. The reaper (soundstage.reaper) sends such a job again once it
finds it in neither place.

Kombu's layout, read as it stores it: each queue is a list of JSON envelopes under the queue's name
(soundstage.queue.queue_key), the `unacked` hash maps delivery tags to `[envelope, exchange, routing_key]`,
and an envelope's body is the base64 JSON `[args, kwargs, embed]` of the task call.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from typing import Any

from soundstage.pools import Queue
from soundstage.queue import queue_key
from soundstage.schemas.tasks import JobTaskPayload

logger = logging.getLogger(__name__)

UNACKED_KEY = "unacked"
MAX_SCANNED = 20_000
"""Messages read from one queue at most in one look; a longer queue is not looked into (its jobs are taken
for held: a backlog that long is worked off before a lost message matters)."""
_PAGE = 1_000


def job_of(envelope: Any) -> str | None:
    """The job id a Kombu envelope (its JSON text, or the decoded object) carries, or None for a message
    that is not a job's (or cannot be read)."""
    try:
        message = envelope if isinstance(envelope, dict) else json.loads(envelope)
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        return JobTaskPayload.from_task_arguments(tuple(args), dict(kwargs)).job_id
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):  # ValidationError is a ValueError
        return None


def held_jobs(redis: Any, queues: Iterable[Queue]) -> tuple[set[str], set[Queue]]:
    """The ids of the jobs the broker holds a message for, and the queues too long to look into."""
    held: set[str] = set()
    unscanned: set[Queue] = set()
    for queue in queues:
        key = queue_key(queue)
        if int(redis.llen(key)) > MAX_SCANNED:
            unscanned.add(queue)
            continue
        for start in range(0, MAX_SCANNED, _PAGE):
            page = redis.lrange(key, start, start + _PAGE - 1)
            held.update(job_id for job_id in map(job_of, page) if job_id)
            if len(page) < _PAGE:
                break
    for value in redis.hvals(UNACKED_KEY):
        try:
            envelope = json.loads(value)[0]
        except (ValueError, TypeError, KeyError, IndexError):
            continue
        job_id = job_of(envelope)
        if job_id:
            held.add(job_id)
    return held, unscanned
