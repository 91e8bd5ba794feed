"""Per-process state of a Demucs worker: one engine per served model (loaded once), and the job services."""

from __future__ import annotations

from soundstage.pool import JobServices, PoolRuntime, RuntimeHolder
from soundstage.pools import Queue, pool_for
from soundstage.settings import Settings
from soundstage_demucs.engine import DemucsEngine


def build_runtime(settings: Settings) -> PoolRuntime[DemucsEngine]:
    engines = {
        ref: DemucsEngine(
            ref,
            model_dir=settings.demucs.model_dir,
            cache_dir=settings.resolved_model_cache_dir,
            device=settings.device,
            batch_segments=settings.demucs.batch_segments,
        )
        for ref in settings.demucs.served_models
    }
    return PoolRuntime(
        pool=pool_for(Queue.DEMUCS), settings=settings, engines=engines, services=JobServices.build(settings)
    )


_RUNTIME = RuntimeHolder(build_runtime)


def get_runtime(settings: Settings) -> PoolRuntime[DemucsEngine]:
    """The process's runtime, created on first use (after fork, never at import)."""
    return _RUNTIME.get(settings)
