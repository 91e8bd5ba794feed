"""Celery app factory and entry point of the pipeline pool.

`soundstage-pipeline-worker [celery worker options]` builds the settings and the app, then runs
`celery worker` on the `pipeline` queue with two tasks:

- `pipeline.step` runs one CPU step of a multi-step job (a job of kind `mix`) through the job runner, like
  any pool's job: claimed, heartbeat, retried, outputs recorded;
- `pipeline.advance` moves a multi-step job on: a step finished (or the job was just submitted, or
  cancelled), so it creates the next steps on the pools that own them, or finishes the job.

By default it runs PIPELINE_MAX_JOBS prefork processes: the steps are CPU-bound numpy/librosa work, and a
process per step keeps one step's crash from taking the others with it.
"""

from __future__ import annotations

import sys

from celery import Celery

from soundstage.logs import configure_logging
from soundstage.pool import PlainTask, create_pool_app, pool_from_args, worker_argv
from soundstage.pools import Queue, TaskName, pool_for
from soundstage.settings import Settings
from soundstage_pipeline.advance import advance_task, give_up
from soundstage_pipeline.runtime import get_runtime
from soundstage_pipeline.steps import run_step


def create_app(settings: Settings, *, in_process_pool: bool = False) -> Celery:
    """`in_process_pool`: tasks run in the worker's main process (threads/solo pools); otherwise in
    prefork children, which warm up after the fork."""
    return create_pool_app(
        settings,
        pool=pool_for(Queue.PIPELINE),
        runtime=lambda: get_runtime(settings),
        jobs={TaskName.PIPELINE_STEP: run_step},
        tasks={
            TaskName.PIPELINE_ADVANCE: PlainTask(
                run=lambda task, payload: advance_task(get_runtime(settings), payload),
                give_up=lambda payload: give_up(get_runtime(settings).services, payload.job_id),
            )
        },
        in_process_pool=in_process_pool,
    )


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    args = list(sys.argv[1:] if argv is None else argv)
    execution_pool = pool_from_args(args) or "prefork"
    concurrency = settings.pipeline.max_jobs if execution_pool in ("prefork", "threads") else 1
    app = create_app(settings, in_process_pool=execution_pool in ("solo", "threads"))
    argv = worker_argv(
        pool_for(Queue.PIPELINE), execution_pool=execution_pool, concurrency=concurrency, settings=settings, extra=args
    )
    app.worker_main(argv=argv)


if __name__ == "__main__":
    main()
