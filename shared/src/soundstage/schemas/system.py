"""Health, readiness, metrics and file-listing responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class WorkerInfo(BaseModel):
    """What a live worker reports about itself (refreshed while it runs)."""

    hostname: str
    queue: str
    model: str
    device: str
    gpu_available: bool
    random_weights: bool
    model_loaded: bool
    load_error: str | None = None
    seen_at: datetime


class QueueInfo(BaseModel):
    name: str
    depth: int | None = Field(description="Jobs waiting in the broker; null when the broker is down.")
    workers: int = Field(description="Live workers consuming this queue.")
    models: list[str] = Field(description="Models this queue's pool is configured to serve.")


class Health(BaseModel):
    status: str = Field(description="`healthy` when the API runs; see `/ready` for dependencies.")
    version: str
    device: str = Field(description="Best device among live workers (`cuda` or `cpu`), `none` without workers.")
    gpu_available: bool
    models_loaded: list[str]
    queues: list[QueueInfo]
    workers: list[WorkerInfo]
    auth_enabled: bool = Field(description="False when neither API_KEY nor API_KEYS is set.")


class ReadyCheck(BaseModel):
    ok: bool
    error: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code.")
    message: str
    details: Any = None


class Ready(BaseModel):
    status: str = Field(description="`ready`, or `unavailable` with HTTP 503.")
    checks: dict[str, ReadyCheck]
    down: list[str] = Field(description="Names of the dependencies that are down.")
    error: ErrorDetail | None = Field(default=None, description="Set with HTTP 503 (`service_unavailable`).")


class StoredFile(BaseModel):
    """An entry of `GET /files/` (S.Rocks fields plus ours)."""

    filename: str
    url: str
    created_at: datetime
    size_kb: float
    job_id: str
    content_type: str


class KindTimes(BaseModel):
    jobs_completed: int
    avg_processing_seconds: float | None
    avg_queue_wait_seconds: float | None


class MetricsJson(BaseModel):
    """musicgen-api's JSON metrics."""

    jobs_total: int
    jobs_queued: int
    jobs_completed: int
    jobs_failed: int
    jobs_cancelled: int
    jobs_in_progress: int
    avg_generation_time: float | None = Field(description="Average seconds per completed `generate` job.")
    avg_separation_time: float | None = Field(description="Average seconds per completed `separate` job.")
    by_kind: dict[str, KindTimes]
    generated_audio_seconds: float


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail
    detail: str = Field(description="The message again, for clients of musicgen-api.")
