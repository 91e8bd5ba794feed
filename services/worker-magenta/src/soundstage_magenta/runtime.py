"""Per-process state of a Magenta worker: one engine per served model (loaded and compiled once), and the
job services."""

from __future__ import annotations

from soundstage.pool import JobServices, PoolRuntime, RuntimeHolder
from soundstage.pools import Queue, pool_for
from soundstage.settings import Settings
from soundstage_magenta.engine import MagentaEngine


def build_runtime(settings: Settings) -> PoolRuntime[MagentaEngine]:
    engines = {
        ref: MagentaEngine(ref, cache_dir=settings.resolved_model_cache_dir, magenta_home=settings.magenta.home)
        for ref in settings.magenta.served_models
    }
    return PoolRuntime(
        pool=pool_for(Queue.MAGENTA), settings=settings, engines=engines, services=JobServices.build(settings)
    )


_RUNTIME = RuntimeHolder(build_runtime)


def get_runtime(settings: Settings) -> PoolRuntime[MagentaEngine]:
    """The process's runtime, created on first use (after fork, never at import)."""
    return _RUNTIME.get(settings)
