"""Per-process state of a MusicGen worker: one engine per served model (loaded once), and the job services."""

from __future__ import annotations

from soundstage.pool import JobServices, PoolRuntime, RuntimeHolder
from soundstage.pools import Queue, pool_for
from soundstage.settings import Settings
from soundstage_musicgen.engine import MusicgenEngine


def build_runtime(settings: Settings) -> PoolRuntime[MusicgenEngine]:
    engines = {
        ref: MusicgenEngine(
            ref,
            settings.resolved_model_cache_dir,
            settings.device,
            mode=settings.musicgen.engine,
            max_batch=settings.musicgen.max_batch,
        )
        for ref in settings.musicgen.served_models
    }
    return PoolRuntime(
        pool=pool_for(Queue.MUSICGEN), settings=settings, engines=engines, services=JobServices.build(settings)
    )


_RUNTIME = RuntimeHolder(build_runtime)


def get_runtime(settings: Settings) -> PoolRuntime[MusicgenEngine]:
    """The process's runtime, created on first use (after fork, never at import)."""
    return _RUNTIME.get(settings)
