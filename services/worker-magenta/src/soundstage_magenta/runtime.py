"""Per-process state of a Magenta worker: one engine per served model (loaded and compiled once), the job
services, and the follower that keeps every engine on the selected checkpoint."""

from __future__ import annotations

from soundstage.pool import JobServices, PoolRuntime, RuntimeHolder
from soundstage.pools import Queue, pool_for
from soundstage.settings import Settings
from soundstage_magenta.engine import MagentaEngine
from soundstage_magenta.finetune import FinetuneFetcher
from soundstage_magenta.follow import SelectionFollower
from soundstage_magenta.jam_host import JamHost


def build_runtime(settings: Settings) -> PoolRuntime[MagentaEngine]:
    fetcher = FinetuneFetcher(settings)
    engines = {
        ref: MagentaEngine(
            ref, cache_dir=settings.resolved_model_cache_dir, magenta_home=settings.magenta.home, fetcher=fetcher
        )
        for ref in settings.magenta.served_models
    }
    services = JobServices.build(settings)
    runtime = PoolRuntime(
        pool=pool_for(Queue.MAGENTA),
        settings=settings,
        engines=engines,
        services=services,
        serving=lambda: [engine.serving() for engine in engines.values() if engine.loaded],
    )

    def beat() -> None:
        if runtime.heartbeat is not None:
            runtime.heartbeat.beat()

    follower = SelectionFollower(services.redis, settings, engines, beat)
    host = JamHost(
        services.redis,
        hostname=services.hostname,
        capacity=settings.magenta.sessions_per_worker,
        max_ahead=settings.magenta.max_ahead_chunks,
        engine_for=runtime.engine_for,
        models=lambda: [ref for ref, engine in engines.items() if engine.loaded],
        store=services.store,
        on_change=beat,
    )
    runtime.sessions = host.describe

    def after_load() -> None:
        follower.start()
        host.start()  # the slots open once the models are loaded and serve the selection

    def before_stop() -> None:
        host.stop()
        follower.stop()

    runtime.after_load = after_load
    runtime.before_stop = before_stop
    return runtime


_RUNTIME = RuntimeHolder(build_runtime)


def get_runtime(settings: Settings) -> PoolRuntime[MagentaEngine]:
    """The process's runtime, created on first use (after fork, never at import)."""
    return _RUNTIME.get(settings)
