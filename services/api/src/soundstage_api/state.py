"""Per-process resources of the API, built once by the app factory and reached through dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from redis import Redis
from sqlalchemy import Engine

from soundstage.db import ApiKeyStore, JobRepository, create_db_engine, create_session_factory
from soundstage.queue import create_celery_app
from soundstage.settings import Settings
from soundstage.storage import ObjectStore, open_store
from soundstage_api.capabilities import CapabilityCache
from soundstage_api.jam_sessions import JamSessions
from soundstage_api.key_ring import KeyRing
from soundstage_api.rate_limits import RateLimits
from soundstage_api.waiting import JobWaiter

JAM_MAX_CONNECTIONS = 512
"""Redis connections one API process's jams use at once (each waiting `next` and each socket's relay hold one)."""


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    repo: JobRepository
    store: ObjectStore
    celery: Celery
    redis: Redis[bytes]
    capabilities: CapabilityCache
    keys: KeyRing
    limits: RateLimits
    waiter: JobWaiter
    """Waits for jobs to finish (`Prefer: wait`, the compatibility APIs); its Redis pool is closed on shutdown."""
    jams: JamSessions
    """Jam sessions' Redis (soundstage_api.jam_sessions), an asynchronous pool of its own."""
    metrics_registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        """Create clients; none of them connects until first used."""
        engine = create_db_engine(settings.resolved_database_url)
        redis_url = settings.require_redis_url()
        redis = Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)
        sessions = create_session_factory(engine)
        return cls(
            settings=settings,
            engine=engine,
            repo=JobRepository(sessions),
            store=open_store(
                settings.resolved_storage_url,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_region=settings.s3_region,
            ),
            celery=create_celery_app(settings, "soundstage-api"),
            redis=redis,
            capabilities=CapabilityCache(redis),
            keys=KeyRing(settings, ApiKeyStore(sessions)),
            limits=RateLimits(settings),
            waiter=JobWaiter(redis_url, settings.sync_wait_max_connections),
            jams=JamSessions(redis_url, JAM_MAX_CONNECTIONS),
        )

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()
        self.celery.close()


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.soundstage
    return state


State = Annotated[AppState, Depends(get_state)]
