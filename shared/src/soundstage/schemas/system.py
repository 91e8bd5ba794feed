"""Health, readiness, metrics and file-listing responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class WorkerInfo(BaseModel):
    """What a live worker reports about itself (refreshed while it runs)."""

    hostname: str = Field(description="Worker host and process id.")
    queue: str = Field(description="Queue it consumes.")
    model: str = Field(description="Default model it serves (the first of MUSICGEN_MODELS).")
    device: str = Field(description="`cpu` or `cuda`.")
    gpu_available: bool = Field(description="Whether the worker sees a CUDA GPU.")
    random_weights: bool = Field(description="True for `random:` test models.")
    models_loaded: list[str] = Field(default_factory=list, description="Models this worker has loaded.")
    model_loaded: bool = Field(description="Whether every model the worker serves is loaded.")
    load_error: str | None = Field(default=None, description="Why the model failed to load, if it did.")
    seen_at: datetime = Field(description="Last heartbeat (UTC).")


class QueueInfo(BaseModel):
    name: str = Field(description="Queue name.")
    depth: int | None = Field(description="Jobs waiting in the broker; null when the broker is down.")
    workers: int = Field(description="Live workers consuming this queue.")
    models: list[str] = Field(description="Models this queue's pool is configured to serve.")


class Health(BaseModel):
    status: str = Field(description="`healthy` when the API runs; see `/ready` for dependencies.")
    version: str = Field(description="Soundstage version.")
    device: str = Field(description="Best device among live workers (`cuda` or `cpu`), `none` without workers.")
    gpu_available: bool = Field(description="True when any live worker has a GPU.")
    models_loaded: list[str] = Field(description="Models loaded by live workers.")
    queues: list[QueueInfo] = Field(description="Each queue's depth, workers and served models.")
    workers: list[WorkerInfo] = Field(description="Live workers (heartbeat within 30 s).")
    auth_enabled: bool = Field(description="False when neither API_KEY nor API_KEYS is set.")


class ReadyCheck(BaseModel):
    ok: bool = Field(description="Whether this dependency answered.")
    error: str | None = Field(default=None, description="Why the check failed.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code.")
    message: str = Field(description="Human-readable message.")
    details: Any = Field(default=None, description="Structured details, e.g. the invalid fields.")


class Ready(BaseModel):
    status: str = Field(description="`ready`, or `unavailable` with HTTP 503.")
    checks: dict[str, ReadyCheck] = Field(description="Result per dependency: `database`, `broker`, `storage`.")
    down: list[str] = Field(description="Names of the dependencies that are down.")
    error: ErrorDetail | None = Field(default=None, description="Set with HTTP 503 (`service_unavailable`).")


class StoredFile(BaseModel):
    """An entry of `GET /files/` (S.Rocks fields plus ours)."""

    filename: str = Field(description="File name.")
    url: str = Field(description="Relative download URL.")
    created_at: datetime = Field(description="When the file was stored (UTC).")
    size_kb: float = Field(description="Size in KiB.")
    job_id: str = Field(description="Job that produced it.")
    content_type: str = Field(description="MIME type.")


class KindTimes(BaseModel):
    jobs_completed: int = Field(description="Completed jobs of this kind.")
    avg_processing_seconds: float | None = Field(description="Average seconds a worker spent per completed job.")
    avg_queue_wait_seconds: float | None = Field(description="Average seconds from submission to start.")


class MetricsJson(BaseModel):
    """musicgen-api's JSON metrics."""

    jobs_total: int = Field(description="Jobs in the database.")
    jobs_queued: int = Field(description="Jobs waiting.")
    jobs_completed: int = Field(description="Completed jobs.")
    jobs_failed: int = Field(description="Failed jobs.")
    jobs_cancelled: int = Field(description="Cancelled jobs.")
    jobs_in_progress: int = Field(description="Jobs being processed now.")
    avg_generation_time: float | None = Field(description="Average seconds per completed `generate` job.")
    avg_separation_time: float | None = Field(description="Average seconds per completed `separate` job.")
    by_kind: dict[str, KindTimes] = Field(description="Timings per job kind.")
    generated_audio_seconds: float = Field(description="Seconds of audio produced in total.")


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail = Field(description="The error.")
    detail: str = Field(description="The message again, for clients of musicgen-api.")
