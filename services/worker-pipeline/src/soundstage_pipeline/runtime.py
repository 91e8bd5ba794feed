"""Per-process state of a pipeline worker: its one engine (warm-up only) and the job services."""

from __future__ import annotations

from soundstage.pool import JobServices, PoolRuntime, RuntimeHolder
from soundstage.pools import Queue, pool_for
from soundstage.settings import Settings
from soundstage_pipeline.engine import ENGINE_NAME, MixEngine


def build_runtime(settings: Settings) -> PoolRuntime[MixEngine]:
    return PoolRuntime(
        pool=pool_for(Queue.PIPELINE),
        settings=settings,
        engines={ENGINE_NAME: MixEngine()},
        services=JobServices.build(settings),
    )


_RUNTIME = RuntimeHolder(build_runtime)


def get_runtime(settings: Settings) -> PoolRuntime[MixEngine]:
    """The process's runtime, created on first use (after fork, never at import)."""
    return _RUNTIME.get(settings)
