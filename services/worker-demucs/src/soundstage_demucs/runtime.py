"""Per-process state of a Demucs worker: one engine per served model (each loaded once), and the job services."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from soundstage.db import utcnow
from soundstage.errors import AppError, ErrorCode, ModelUnavailableError
from soundstage.pool import JobServices
from soundstage.queue import Queue
from soundstage.schemas import WorkerInfo
from soundstage.settings import Settings
from soundstage.workers import Heartbeat
from soundstage_demucs.engine import DemucsEngine

logger = logging.getLogger(__name__)


@dataclass
class DemucsRuntime:
    settings: Settings
    services: JobServices
    engines: dict[str, DemucsEngine]  # one per served model, in DEMUCS_MODELS order
    heartbeat: Heartbeat | None = None
    load_errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> DemucsRuntime:
        engines = {
            ref: DemucsEngine(
                ref,
                model_dir=settings.demucs_model_dir,
                cache_dir=settings.resolved_model_cache_dir,
                device=settings.device,
                batch_segments=settings.demucs_batch_segments,
            )
            for ref in settings.served_models(Queue.DEMUCS)
        }
        return cls(settings=settings, services=JobServices.build(settings), engines=engines)

    def engine_for(self, model: str | None) -> DemucsEngine:
        """The loaded engine serving ``model``; a failure to load fails the job, not the worker."""
        engine = self.engines.get(model or "")
        if engine is None:
            raise AppError(
                ErrorCode.UNKNOWN_MODEL,
                f"This worker serves {', '.join(self.engines)}, not {model!r}.",
                status_code=422,
            )
        self._load(engine)
        return engine

    def load_all(self) -> None:
        for engine in self.engines.values():
            try:
                self._load(engine)
                logger.info("model %s loaded on %s", engine.model_ref, engine.info.device)
            except ModelUnavailableError as error:
                # Keep consuming: its jobs fail fast with model_unavailable and say how to fix it.
                logger.error("model %s unavailable: %s", engine.model_ref, error.message)
        if self.heartbeat:
            self.heartbeat.beat()

    def _load(self, engine: DemucsEngine) -> None:
        try:
            engine.load()
        except ModelUnavailableError as error:
            self.load_errors[engine.model_ref] = error.message
            raise
        self.load_errors.pop(engine.model_ref, None)

    def start_heartbeat(self) -> None:
        self.heartbeat = Heartbeat(self.services.redis, self.describe)
        self.heartbeat.start()

    def stop_heartbeat(self) -> None:
        if self.heartbeat:
            self.heartbeat.stop()

    def describe(self) -> WorkerInfo:
        loaded = [engine for engine in self.engines.values() if engine.loaded]
        info = loaded[0].info if loaded else None
        return WorkerInfo(
            hostname=self.services.hostname,
            queue=Queue.DEMUCS.value,
            model=next(iter(self.engines)),
            models_loaded=[engine.model_ref for engine in loaded],
            device=info.device if info else "unknown",
            gpu_available=info.gpu_available if info else False,
            random_weights=any(engine.info.random_weights for engine in loaded),
            model_loaded=len(loaded) == len(self.engines),
            load_error="; ".join(f"{ref}: {message}" for ref, message in self.load_errors.items()) or None,
            seen_at=utcnow(),
        )


_runtime: DemucsRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings) -> DemucsRuntime:
    """The process's runtime, created on first use (after fork, never at import)."""
    global _runtime  # noqa: PLW0603 - one runtime per worker process, created after fork
    with _lock:
        if _runtime is None:
            _runtime = DemucsRuntime.build(settings)
        return _runtime
