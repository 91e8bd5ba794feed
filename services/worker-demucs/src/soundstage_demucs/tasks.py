"""Celery tasks of the Demucs pool: thin, like web views."""

from __future__ import annotations

from celery import Celery, Task

from soundstage.jobrunner import transient_errors
from soundstage.pool import job_task_base, run_delivered_job
from soundstage.queue import TaskName
from soundstage.settings import Settings
from soundstage_demucs.job import run_separate
from soundstage_demucs.runtime import get_runtime


def register_tasks(app: Celery, settings: Settings) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name=TaskName.DEMUCS_SEPARATE.value,
        base=job_task_base(lambda: get_runtime(settings).services.runner),
        autoretry_for=transient_errors(),
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=5,
        bind=True,
    )
    def separate(task: Task, job_id: str) -> None:
        runtime = get_runtime(settings)
        store = runtime.services.store
        run_delivered_job(
            task,
            runtime.services.runner,
            job_id,
            lambda job, report: run_separate(job, runtime.engine_for(job.model), store, report),
        )
