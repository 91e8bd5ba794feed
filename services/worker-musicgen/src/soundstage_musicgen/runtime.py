"""Per-process worker state: the engine (loaded once), repository, storage, Redis and heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from redis import Redis

from soundstage.db import JobRepository, create_db_engine, create_session_factory, utcnow
from soundstage.errors import ModelUnavailableError
from soundstage.jobrunner import JobRunner
from soundstage.queue import Queue
from soundstage.schemas import WorkerInfo
from soundstage.settings import Settings
from soundstage.storage import ObjectStore, open_store
from soundstage.workers import Heartbeat
from soundstage_musicgen.engine import MusicgenEngine

logger = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: MusicgenEngine
    repo: JobRepository
    store: ObjectStore
    redis: Redis[bytes]
    runner: JobRunner
    hostname: str
    heartbeat: Heartbeat | None = None
    load_error: str | None = None

    @classmethod
    def build(cls, settings: Settings) -> WorkerRuntime:
        hostname = f"{socket.gethostname()}:{os.getpid()}"
        repo = JobRepository(create_session_factory(create_db_engine(settings.resolved_database_url)))
        store = open_store(
            settings.resolved_storage_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
        )
        redis = Redis.from_url(settings.require_redis_url(), socket_connect_timeout=2, socket_timeout=5)
        runner = JobRunner(
            repo=repo, store=store, redis=redis, worker_name=hostname, max_attempts=settings.max_job_attempts
        )
        engine = MusicgenEngine(settings.musicgen_model, settings.resolved_model_cache_dir, settings.device)
        return cls(
            settings=settings, engine=engine, repo=repo, store=store, redis=redis, runner=runner, hostname=hostname
        )

    def ensure_loaded(self) -> MusicgenEngine:
        """Load the model if it is not loaded yet; a failure fails the job, not the worker."""
        try:
            self.engine.load()
        except ModelUnavailableError as error:
            self.load_error = error.message
            raise
        self.load_error = None
        return self.engine

    def start_heartbeat(self) -> None:
        self.heartbeat = Heartbeat(self.redis, self.describe)
        self.heartbeat.start()

    def describe(self) -> WorkerInfo:
        info = self.engine.info if self.engine.loaded else None
        return WorkerInfo(
            hostname=self.hostname,
            queue=Queue.MUSICGEN.value,
            model=self.settings.musicgen_model,
            device=info.device if info else "unknown",
            gpu_available=info.gpu_available if info else False,
            random_weights=info.random_weights if info else self.settings.musicgen_model.startswith("random:"),
            model_loaded=info is not None,
            load_error=self.load_error,
            seen_at=utcnow(),
        )


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings) -> WorkerRuntime:
    """The process's runtime, created on first use (after fork, never at import)."""
    global _runtime  # noqa: PLW0603 - one runtime per worker process, created after fork
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime.build(settings)
        return _runtime
