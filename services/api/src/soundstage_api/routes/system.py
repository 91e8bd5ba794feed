"""Health, readiness and metrics. These routes never require an API key (probes and scrapers)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from soundstage import __version__, telemetry
from soundstage.errors import ErrorCode
from soundstage.pools import POOLS, Queue
from soundstage.queue import queue_key
from soundstage.schemas import ErrorDetail, Health, KindTimes, MetricsJson, QueueInfo, Ready, ReadyCheck, WorkerInfo
from soundstage.workers import list_workers
from soundstage_api.auth import ApiKey
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.jam_slots import with_live_slots
from soundstage_api.state import AppState, State

logger = logging.getLogger(__name__)
router = APIRouter(route_class=GuardedRoute, tags=["system"])

_MODEL_QUEUES = {pool.queue.value for pool in POOLS if pool.serves_models}


@router.get("/health", response_model=Health, summary="Liveness and fleet overview")
def health(state: State) -> Health:
    """Always 200 while the API runs; device and models come from the workers' heartbeats."""
    settings = state.settings
    try:
        workers = with_live_slots(state.redis, list_workers(state.redis))
        depths: dict[Queue, int | None] = {q: int(state.redis.llen(queue_key(q))) for q in Queue}
    except Exception as error:
        logger.warning("health: Redis unavailable: %s", error)
        workers, depths = [], dict.fromkeys(Queue)
    gpu = any(w.gpu_available for w in workers)
    devices = {w.device for w in workers if w.queue in _MODEL_QUEUES}
    # Every pool with settings is expected to run (a reserved slot, settings_attr None, has no workers yet).
    problems = {
        pool.name: problem
        for pool in POOLS
        if pool.settings_attr is not None
        and (problem := pool_problem([w for w in workers if w.queue == pool.queue.value]))
    }
    return Health(
        status="degraded" if problems else "healthy",
        problems=problems,
        device="cuda" if "cuda" in devices else ("cpu" if devices else "none"),
        gpu_available=gpu,
        mps_available=False,
        models_loaded={
            pool.name: any(w.model_loaded for w in workers if w.queue == pool.queue.value)
            for pool in POOLS
            if pool.serves_models and pool.settings_attr is not None
        },
        version=__version__,
        loaded_models=sorted({model for w in workers for model in w.models_loaded}),
        queues=[
            QueueInfo(
                name=pool.queue.value,
                depth=depths[pool.queue],
                workers=sum(1 for w in workers if w.queue == pool.queue.value),
                models=pool.served_models(settings),
            )
            for pool in POOLS
        ],
        workers=workers,
        auth_enabled=state.keys.enabled(),
        warmed=any(w.model_loaded for w in workers if w.queue == Queue.MAGENTA.value),
    )


def pool_problem(workers: list[WorkerInfo]) -> str | None:
    """Why a pool with these live workers cannot serve its jobs right now; None when one of them can."""
    if not workers:
        return "no live worker: its jobs wait in the queue until one starts"
    if any(w.model_loaded and not w.device_error for w in workers):
        return None
    broken = [w.device_error for w in workers if w.device_error]
    if broken:
        return f"no worker can serve: {broken[0]}"
    errors = [w.load_error for w in workers if w.load_error]
    if errors:
        return f"no worker could load its models: {errors[0]}"
    return "its workers are still loading their models"


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: database, broker, storage and a pool that can serve",
    responses={503: {"model": Ready, "description": "Something is down; `down` names it"}},
)
def ready(state: State) -> Response:
    """Ready when the database, the broker and the storage answer and at least one model pool has a live
    worker with its models loaded (`workers`): before that every submission would be refused or fail."""
    checks = {
        "database": _check(state.repo.ping),
        "broker": _check(state.redis.ping),
        "storage": _check(state.store.check),
        "workers": _serving_check(state),
    }
    down = [name for name, check in checks.items() if not check.ok]
    body = Ready(status="ready" if not down else "unavailable", checks=checks, down=down)
    if down:
        body.error = ErrorDetail(code=ErrorCode.SERVICE_UNAVAILABLE.value, message=f"Unavailable: {', '.join(down)}.")
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if down else 200)


def _check(probe: object) -> ReadyCheck:
    try:
        probe()  # type: ignore[operator]
    except Exception as error:
        # The exception's text (hosts, paths, driver internals) stays in the log; the answer names its type.
        logger.warning("ready: %s failed: %s", getattr(probe, "__qualname__", probe), error)
        return ReadyCheck(ok=False, error=f"{type(error).__name__} (see the API's log)")
    return ReadyCheck(ok=True)


def _serving_check(state: AppState) -> ReadyCheck:
    try:
        workers = list_workers(state.redis)
    except Exception as error:
        logger.warning("ready: cannot read the worker registry: %s", error)
        return ReadyCheck(ok=False, error="the worker registry (Redis) cannot be read")
    serving = [
        pool.name
        for pool in POOLS
        if pool.serves_models and pool_problem([w for w in workers if w.queue == pool.queue.value]) is None
    ]
    if serving:
        return ReadyCheck(ok=True)
    return ReadyCheck(ok=False, error="no model pool has a live worker with its models loaded (see /health `problems`)")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(state: State) -> Response:
    registry = state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics/json", response_model=MetricsJson, dependencies=[ApiKey], summary="JSON metrics (musicgen-api)")
def metrics_json(state: State) -> MetricsJson:
    counts = state.repo.count_by_status()
    by_kind, audio_seconds = _times_by_kind(state)
    return MetricsJson(
        jobs_total=sum(counts.values()),
        jobs_queued=counts.get("queued", 0),
        jobs_completed=counts.get("completed", 0),
        jobs_failed=counts.get("failed", 0),
        jobs_cancelled=counts.get("cancelled", 0),
        jobs_in_progress=counts.get("processing", 0),
        avg_generation_time=_average(by_kind, "generate"),
        avg_separation_time=_average(by_kind, "separate"),
        avg_generation_time_seconds=_average(by_kind, "generate"),
        avg_soundtrack_time_seconds=_average(by_kind, "soundtrack"),
        avg_separation_time_seconds=_average(by_kind, "separate"),
        by_kind=by_kind,
        generated_audio_seconds=audio_seconds,
    )


def _average(by_kind: dict[str, KindTimes], kind: str) -> float | None:
    return by_kind[kind].avg_processing_seconds if kind in by_kind else None


def _times_by_kind(state: AppState) -> tuple[dict[str, KindTimes], float]:
    try:
        snapshot = telemetry.read_snapshot(state.redis)
    except Exception as error:
        logger.warning("metrics/json: Redis unavailable: %s", error)
        return {}, 0.0

    def averages(name: str) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for (kind, _model), (counts, total) in snapshot.histograms[name].series.items():
            count, summed = out.get(kind, (0, 0.0))
            out[kind] = (count + sum(counts), summed + total)
        return out

    durations, waits = averages(telemetry.JOB_DURATION), averages(telemetry.QUEUE_WAIT)
    result = {}
    for kind in sorted(set(durations) | set(waits)):
        done, busy = durations.get(kind, (0, 0.0))
        started, waited = waits.get(kind, (0, 0.0))
        result[kind] = KindTimes(
            jobs_completed=done,
            avg_processing_seconds=round(busy / done, 3) if done else None,
            avg_queue_wait_seconds=round(waited / started, 3) if started else None,
        )
    audio = sum(snapshot.counters.get(telemetry.AUDIO_SECONDS, {}).values())
    return result, round(audio, 3)
