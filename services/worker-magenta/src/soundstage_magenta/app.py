"""Celery app factory and entry point of the Magenta RealTime pool.

`soundstage-magenta-worker [celery worker options]` builds the settings and the app, then runs
`celery worker` on the `magenta` queue. Models load (and JAX compiles their streaming step) once per
worker process, after it started, so no request pays the compile. By default the worker runs
MAGENTA_MAX_JOBS jobs at once in threads sharing the loaded model; `--pool=solo` also works. Prefork is
refused: JAX does not survive a fork once it has started its threads.
"""

from __future__ import annotations

import sys

from celery import Celery

from soundstage.logs import configure_logging
from soundstage.pool import create_pool_app, pool_from_args, worker_argv
from soundstage.pools import Queue, TaskName, pool_for
from soundstage.settings import Settings
from soundstage_magenta.embed_job import run_embed
from soundstage_magenta.job import run_style
from soundstage_magenta.loop_job import run_loop
from soundstage_magenta.runtime import get_runtime

IN_PROCESS_POOLS = ("threads", "solo")


def create_app(settings: Settings) -> Celery:
    return create_pool_app(
        settings,
        pool=pool_for(Queue.MAGENTA),
        runtime=lambda: get_runtime(settings),
        jobs={TaskName.MAGENTA_GENERATE: run_style, TaskName.MAGENTA_LOOP: run_loop, TaskName.MAGENTA_EMBED: run_embed},
        in_process_pool=True,
    )


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    args = list(sys.argv[1:] if argv is None else argv)
    execution_pool = pool_from_args(args) or "threads"
    if execution_pool not in IN_PROCESS_POOLS:
        sys.exit(f"soundstage-magenta-worker: --pool={execution_pool} is not supported; use threads or solo")
    concurrency = settings.magenta.max_jobs if execution_pool == "threads" else 1
    app = create_app(settings)
    argv = worker_argv(
        pool_for(Queue.MAGENTA), execution_pool=execution_pool, concurrency=concurrency, settings=settings, extra=args
    )
    app.worker_main(argv=argv)


if __name__ == "__main__":
    main()
