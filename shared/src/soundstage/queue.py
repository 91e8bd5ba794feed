"""The Celery app factory with Soundstage's defaults, and how a job is sent to its pool.

The API never imports worker code: it calls tasks by name through :func:`enqueue_job`, with the
names, queues and routes of the pool registry (:mod:`soundstage.pools`) and a typed, versioned
payload (:class:`~soundstage.schemas.tasks.JobTaskPayload`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from soundstage.logs import current_request_id
from soundstage.pools import POOLS, Queue, TaskName, pool_of_task
from soundstage.schemas.tasks import JobTaskPayload

if TYPE_CHECKING:
    from celery import Celery

    from soundstage.settings import Settings


# Kombu's Redis transport keeps each queue as a list under the queue's own name, so
# the queue depth is LLEN of that key.
def queue_key(queue: Queue) -> str:
    return queue.value


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        # A job taken by a worker that died without acknowledging it is delivered again
        # after this many seconds, so it must exceed the longest job.
        "visibility_timeout": settings.resolved_visibility_timeout,
        # How often a consumer looks for such abandoned jobs (kombu's default is ~100 s).
        "unacked_restore_interval": max(1, min(10, settings.resolved_visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
        # Fail fast when Redis is down: the API answers 503 instead of hanging.
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }


def create_celery_app(settings: Settings, main: str = "soundstage") -> Celery:
    """Build a Celery app with the defaults every Soundstage process shares."""
    from celery import Celery
    from kombu.entity import Queue as KombuQueue

    app = Celery(main, broker=settings.require_redis_url(), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        # The job row in the database is the job store, not a result backend.
        task_ignore_result=True,
        result_backend=None,
        # A task is acknowledged only after it finished, and a task whose worker
        # process died is rejected back onto the queue, so crashes redeliver jobs.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[
            KombuQueue(queue.value, routing_key=queue.value)  # type: ignore[no-untyped-call]
            for queue in Queue
        ],
        task_routes={task.value: {"queue": pool.queue.value} for pool in POOLS for task in pool.tasks},
        task_default_queue=Queue.MUSICGEN.value,
        task_time_limit=settings.job_timeout_seconds,
        task_soft_time_limit=max(settings.job_timeout_seconds - 30, 1),
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # Publishing from the API: give up quickly so the client gets a 503.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        # A prefork child that does not report in time is killed; give slow machines slack.
        worker_proc_alive_timeout=30,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


REQUEST_ID_HEADER = "soundstage_request_id"
"""Task message header carrying the X-Request-ID of the API request that made the job."""


def enqueue_job(app: Celery, task: TaskName, job_id: str) -> None:
    """Send a job to the pool that runs ``task``, by name: the payload is the job id, typed and versioned
    (the job row holds everything else)."""
    payload = JobTaskPayload(job_id=job_id)
    request_id = current_request_id()  # the worker's lines for this job carry the request that made it
    app.send_task(
        task.value,
        kwargs={"payload": payload.model_dump()},
        queue=pool_of_task(task).queue.value,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )
