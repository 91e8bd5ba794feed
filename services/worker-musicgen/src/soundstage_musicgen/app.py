"""Celery app factory and entry point of the MusicGen pool.

`soundstage-musicgen-worker [celery worker options]` builds the settings and the app,
then runs `celery worker` on the `musicgen` queue. The model loads once per worker
process, after the worker started (never at import).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from soundstage.logs import configure_logging
from soundstage.queue import Queue, create_celery_app
from soundstage.settings import Settings
from soundstage_musicgen.runtime import get_runtime
from soundstage_musicgen.tasks import register_tasks

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, in_process_pool: bool = False) -> Celery:
    """`in_process_pool`: tasks run in the worker's main process (`--pool=solo`, GPU workers);
    otherwise in prefork children, which load the model after the fork."""
    app = create_celery_app(settings, "soundstage-musicgen")
    register_tasks(app, settings)

    def warm_up(**_: Any) -> None:
        runtime = get_runtime(settings)
        runtime.start_heartbeat()

        def load() -> None:
            runtime.load_all()
            if runtime.heartbeat:
                runtime.heartbeat.beat()

        # Load in the background: a prefork child must report to its parent within seconds
        # of the fork or it is killed and replaced, and loading takes longer than that (far
        # longer for real weights). A job that arrives first waits on the engine's lock.
        threading.Thread(target=load, name="soundstage-model-load", daemon=True).start()

    def stop(**_: Any) -> None:
        runtime = get_runtime(settings)
        if runtime.heartbeat:
            runtime.heartbeat.stop()

    if in_process_pool:
        worker_ready.connect(warm_up, weak=False)
        worker_shutdown.connect(stop, weak=False)
    else:
        worker_process_init.connect(warm_up, weak=False)
        worker_process_shutdown.connect(stop, weak=False)
    return app


def _pool(args: list[str]) -> str | None:
    """The pool named on the command line, if any."""
    for index, arg in enumerate(args):
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg in ("--pool", "-P") and index + 1 < len(args):
            return args[index + 1]
    return None


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    args = list(sys.argv[1:] if argv is None else argv)
    # Default: the threads pool, one thread per job the model decodes at once, so that jobs
    # waiting at the same time share the model's batches. `--pool=prefork --concurrency=1`
    # (one job at a time, crash isolation per process) and `--pool=solo` also work.
    batched = settings.musicgen_engine == "batched"
    pool = _pool(args) or ("threads" if batched else "prefork")
    concurrency = str(settings.musicgen_max_batch if pool == "threads" else 1)
    app = create_app(settings, in_process_pool=pool in ("solo", "threads"))
    defaults = [
        "worker",
        "--queues",
        Queue.MUSICGEN.value,
        "--pool",
        pool,
        "--concurrency",
        concurrency,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv=[*defaults, *args])


if __name__ == "__main__":
    main()
