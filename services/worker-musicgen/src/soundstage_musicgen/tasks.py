"""Celery tasks of the MusicGen pool: thin, like web views."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from soundstage.errors import ErrorCode
from soundstage.jobrunner import JobBusyError, transient_errors
from soundstage.logs import job_context
from soundstage.queue import TaskName
from soundstage.settings import Settings
from soundstage_musicgen.job import run_generate
from soundstage_musicgen.runtime import get_runtime

logger = logging.getLogger(__name__)


def register_tasks(app: Celery, settings: Settings) -> None:
    class JobTask(Task):  # type: ignore[misc]
        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            # Retries for a platform error ran out: end the job instead of leaving it processing.
            job_id = args[0] if args else kwargs.get("job_id")
            try:
                get_runtime(settings).runner.fail(
                    job_id, ErrorCode.INTERNAL_ERROR, f"The job could not be completed: {type(exc).__name__}: {exc}"
                )
            except Exception:
                logger.exception("job %s: could not record the failure", job_id)

    @app.task(  # type: ignore[untyped-decorator]
        name=TaskName.MUSICGEN_GENERATE.value,
        base=JobTask,
        autoretry_for=transient_errors(),
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=5,
        bind=True,
    )
    def generate(task: Task, job_id: str) -> None:
        runtime = get_runtime(settings)
        with job_context(job_id):
            try:
                runtime.runner.run(
                    job_id, lambda job, report: run_generate(job, runtime.engine_for(job.model), runtime.store, report)
                )
            except JobBusyError as busy:
                # A duplicate delivery while the job runs elsewhere: check again once its
                # heartbeat could have gone stale (it is then finished, or taken over).
                raise task.retry(countdown=busy.retry_in, max_retries=None) from busy
