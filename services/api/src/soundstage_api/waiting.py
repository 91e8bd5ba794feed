"""Waiting for a job to finish, for the routes that answer with the result (`Prefer: wait` on
`POST /generate`, the S.Rocks and hosted-API routes).

One mechanism, no database polling: the waiter subscribes to the job's channel
(:func:`soundstage.events.finished_channel`, on which whoever finishes a job announces it) and waits
for the subscription to be confirmed, THEN reads the job row once, so an end that happens in between
is not missed; then it waits for the announcement until its deadline and reads the row once more.
The row stays the source of truth; the event only says when to read it again. A lost event (or Redis
down) only makes the request answer at its deadline with what the row says then.

Each waiting request holds one Redis connection from a pool of SYNC_WAIT_MAX_CONNECTIONS owned by
the app state (closed on shutdown); more requests wait for a free one within their own deadline.
Past the limit (SYNC_WAIT_SECONDS, or less when the client asks for less) the answer is 202 with
`{job_id, status}` and `Location: /jobs/{job_id}`, so the client can poll as with any job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio
import redis.exceptions
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from soundstage.db import Job
from soundstage.events import finished_channel
from soundstage.schemas import JobStatus
from soundstage.schemas.compat import JobPending

logger = logging.getLogger(__name__)

PREFER_WAIT = "wait"
"""RFC 7240's preference: `Prefer: wait=<seconds>`."""

ReadJob = Callable[[], Awaitable[Job | None]]


class JobWaiter:
    """Waits for jobs to reach a final status through Redis pub/sub (see the module docstring)."""

    def __init__(self, redis_url: str, max_connections: int) -> None:
        self._pool: redis.asyncio.ConnectionPool[Any] = redis.asyncio.ConnectionPool.from_url(
            redis_url, max_connections=max_connections, socket_connect_timeout=2, socket_timeout=10
        )
        self._client = redis.asyncio.Redis(connection_pool=self._pool)
        self._slots = asyncio.Semaphore(max_connections)

    async def wait(self, job_id: str, timeout: float, read: ReadJob) -> Job | None:
        """The job row once it is final, or as it is after `timeout` seconds; None for an unknown job."""
        if timeout <= 0:
            return await read()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            logger.warning("job %s: no free wait slot (SYNC_WAIT_MAX_CONNECTIONS) within %g s", job_id, timeout)
            return await read()
        try:
            return await self._wait_subscribed(job_id, deadline, read)
        except (redis.exceptions.RedisError, OSError) as error:
            logger.warning("job %s: cannot wait for its end (Redis: %s); answering with its status now", job_id, error)
            return await read()
        finally:
            self._slots.release()

    async def _wait_subscribed(self, job_id: str, deadline: float, read: ReadJob) -> Job | None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(finished_channel(job_id))
            if await _next_message(pubsub, deadline, "subscribe"):
                job = await read()
                if job is None or is_finished(job):
                    return job
                await _next_message(pubsub, deadline, "message")
            return await read()
        finally:
            await pubsub.aclose()  # type: ignore[attr-defined]  # types-redis 4.6 predates aclose

    async def aclose(self) -> None:
        """Close every connection of the pool (on shutdown)."""
        await self._pool.disconnect()


async def _next_message(pubsub: redis.asyncio.client.PubSub, deadline: float, kind: str) -> bool:
    """Read the subscription until a message of `kind` arrives (True) or the deadline passes (False)."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        message = await pubsub.get_message(timeout=remaining)
        if message is not None and message.get("type") == kind:
            return True
    return False


async def wait_for_job(waiter: JobWaiter, read: Callable[[], Job | None], job_id: str, seconds: float) -> Job | None:
    """:meth:`JobWaiter.wait` with a blocking row reader (`repo.get`), run in a worker thread."""

    async def read_async() -> Job | None:
        return await run_in_threadpool(read)

    return await waiter.wait(job_id, seconds, read_async)


def is_finished(job: Job) -> bool:
    return JobStatus(job.status).is_terminal


def pending_response(job_id: str, status: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """202 `{job_id, status}` with `Location: /jobs/{job_id}`: the job is not finished yet; poll it."""
    body = JobPending(job_id=job_id, status=JobStatus(status))
    return JSONResponse(
        body.model_dump(mode="json"), status_code=202, headers={**(headers or {}), "Location": f"/jobs/{job_id}"}
    )


def requested_wait(prefer: Iterable[str]) -> int | None:
    """The seconds of a `Prefer: wait=<seconds>` (RFC 7240) among the request's Prefer headers, or None.
    Preferences this server does not know, and a wait that is not a number of seconds, are ignored."""
    for header in prefer:
        for preference in header.split(","):
            token, equals, value = preference.split(";", 1)[0].partition("=")
            if token.strip().lower() != PREFER_WAIT or not equals:
                continue
            seconds = value.strip().strip('"')
            if seconds.isdigit():
                return int(seconds)
    return None
