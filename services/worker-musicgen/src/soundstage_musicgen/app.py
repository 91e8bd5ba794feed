"""Celery app factory and entry point of the MusicGen pool.

`soundstage-musicgen-worker [celery worker options]` builds the settings and the app,
then runs `celery worker` on the `musicgen` queue. The model loads once per worker
process, after the worker started (never at import).
"""

from __future__ import annotations

import sys

from celery import Celery

from soundstage.logs import configure_logging
from soundstage.pool import create_pool_app, pool_from_args, worker_argv
from soundstage.pools import Queue, TaskName, pool_for
from soundstage.settings import Settings
from soundstage_musicgen.job import run_generate
from soundstage_musicgen.runtime import get_runtime


def create_app(settings: Settings, *, in_process_pool: bool = False) -> Celery:
    """`in_process_pool`: tasks run in the worker's main process (threads/solo pools); otherwise in
    prefork children, which load the model after the fork."""
    return create_pool_app(
        settings,
        pool=pool_for(Queue.MUSICGEN),
        runtime=lambda: get_runtime(settings),
        jobs={TaskName.MUSICGEN_GENERATE: run_generate},
        in_process_pool=in_process_pool,
    )


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    args = list(sys.argv[1:] if argv is None else argv)
    # Default: the threads pool, one thread per job the model decodes at once, so that jobs
    # waiting at the same time share the model's batches. `--pool=prefork --concurrency=1`
    # (one job at a time, crash isolation per process) and `--pool=solo` also work.
    batched = settings.musicgen.engine == "batched"
    execution_pool = pool_from_args(args) or ("threads" if batched else "prefork")
    concurrency = settings.musicgen.max_batch if execution_pool == "threads" else 1
    app = create_app(settings, in_process_pool=execution_pool in ("solo", "threads"))
    argv = worker_argv(
        pool_for(Queue.MUSICGEN), execution_pool=execution_pool, concurrency=concurrency, settings=settings, extra=args
    )
    app.worker_main(argv=argv)


if __name__ == "__main__":
    main()
