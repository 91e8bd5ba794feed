"""Queue and task names, and the Celery app factory with Soundstage's defaults.

The API never imports worker code: it calls tasks by name through :func:`enqueue_job`,
and the names and queues are defined here, once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from soundstage.settings import Settings


class Queue(StrEnum):
    """One queue per model pool; a worker pool consumes only its own."""

    MUSICGEN = "musicgen"
    MAGENTA = "magenta"
    DEMUCS = "demucs"


class TaskName(StrEnum):
    """Explicit dotted task names: `<pool>.<action>`."""

    MUSICGEN_GENERATE = "musicgen.generate"
    DEMUCS_SEPARATE = "demucs.separate"


TASK_QUEUES: dict[TaskName, Queue] = {
    TaskName.MUSICGEN_GENERATE: Queue.MUSICGEN,
    TaskName.DEMUCS_SEPARATE: Queue.DEMUCS,
}


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
        task_routes={name.value: {"queue": queue.value} for name, queue in TASK_QUEUES.items()},
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


def enqueue_job(app: Celery, task: TaskName, job_id: str) -> None:
    """Send a job to its pool by task name (payload: the job id only)."""
    app.send_task(task.value, args=[job_id], queue=TASK_QUEUES[task].value)


# Module of each pool's worker entry point (`python -m <module>`); the embedded
# launcher starts one worker for every pool whose package is installed.
WORKER_MODULES: dict[Queue, str] = {
    Queue.MUSICGEN: "soundstage_musicgen.app",
    Queue.MAGENTA: "soundstage_magenta.app",
    Queue.DEMUCS: "soundstage_demucs.app",
}
