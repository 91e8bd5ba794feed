"""Health, readiness, metrics and file-listing responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from soundstage.schemas.magenta_model import ServingCheckpoint


class ModelCapabilities(BaseModel):
    """What one loaded model can do, as the worker that loaded it reports it: the API validates requests
    against these, never against model names."""

    model: str = Field(description="The model as the pool serves it (`MUSICGEN_MODELS`, `DEMUCS_MODELS`).")
    sample_rate: int | None = Field(default=None, description="Native sample rate of its audio, in Hz.")
    channels: int | None = Field(default=None, description="Channels of its audio: 1 (mono) or 2 (stereo).")
    melody: bool = Field(default=False, description="MusicGen: conditions on the chroma of a melody.")
    sources: list[str] = Field(default_factory=list, description="Demucs: the sources it separates, in order.")
    max_segment: float | None = Field(
        default=None, description="Demucs: the longest segment it takes, in seconds (transformer models)."
    )
    random_weights: bool = Field(default=False, description="True for `random:` test models.")


class SessionSlot(BaseModel):
    """One jam session a magenta worker holds."""

    session_id: str = Field(description="The session.")
    model: str = Field(description="The model it runs on.")
    pace: str = Field(description="`asap` or `realtime`.")
    chunks: int = Field(description="Chunks generated.")
    underruns: int = Field(description="Chunks ready after their playback deadline.")
    max_lateness_seconds: float = Field(description="The latest a chunk was, past its playback deadline.")
    first_chunk_seconds: float | None = Field(description="Time from the session's start to its first chunk.")
    real_time_factor: float | None = Field(description="Seconds of audio per second of generation.")


class JamSlots(BaseModel):
    """A magenta worker's jam slots (MAGENTA_SESSIONS_PER_WORKER)."""

    capacity: int = Field(description="Slots.")
    used: int = Field(description="Slots holding a session.")
    free: int = Field(description="Slots free.")
    chunks: int = Field(description="Chunks this worker has generated for jams since it started.")
    underruns: int = Field(description="Of them, chunks that were late for their playback deadline.")
    sessions: list[SessionSlot] = Field(default_factory=list, description="The sessions it holds.")


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
    load_errors: dict[str, str] = Field(
        default_factory=dict, description="Why each model that failed to load did, by model."
    )
    device_error: str | None = Field(
        default=None,
        description="Why the worker's device failed its check (a tiny operation at every heartbeat), if it did: "
        "the worker then serves nothing and its readiness probe fails.",
    )
    capabilities: list[ModelCapabilities] = Field(
        default_factory=list, description="What each loaded model can do (melody, channels, sources, segment, rate)."
    )
    serving: list[ServingCheckpoint] = Field(
        default_factory=list,
        description="Magenta: which checkpoint (finetune repository and step) each model serves, its steering assets.",
    )
    jam: JamSlots | None = Field(default=None, description="Magenta: its jam slots and the sessions in them.")
    seen_at: datetime = Field(description="Last heartbeat (UTC).")


class QueueInfo(BaseModel):
    name: str = Field(description="Queue name.")
    depth: int | None = Field(description="Jobs waiting in the broker; null when the broker is down.")
    workers: int = Field(description="Live workers consuming this queue.")
    models: list[str] = Field(description="Models this queue's pool is configured to serve.")


class Health(BaseModel):
    """musicgen-api's health fields first (`status`, `device`, `gpu_available`, `mps_available`,
    `models_loaded`), then ours."""

    status: str = Field(
        description="`healthy` when every pool (`musicgen`, `demucs`, `pipeline`) has a live worker with its models "
        "loaded; `degraded` otherwise, with the reason per pool in `problems`. Always HTTP 200 while the API runs; "
        "see `/ready` for the database, broker and storage."
    )
    device: str = Field(description="Best device among live workers (`cuda` or `cpu`), `none` without workers.")
    gpu_available: bool = Field(description="True when any live worker has a GPU.")
    mps_available: bool = Field(
        description="Whether a worker runs on Apple's MPS: always false (workers run on CUDA or the CPU)."
    )
    models_loaded: dict[str, bool] = Field(
        description="Per model pool (`musicgen`, `demucs`): whether a live worker of it has its models loaded."
    )
    version: str = Field(description="Soundstage version.")
    loaded_models: list[str] = Field(description="Models loaded by live workers, by name.")
    queues: list[QueueInfo] = Field(description="Each queue's depth, workers and served models.")
    workers: list[WorkerInfo] = Field(description="Live workers (heartbeat within 30 s).")
    auth_enabled: bool = Field(description="False when neither API_KEY nor API_KEYS is set.")
    ok: bool = Field(default=True, description="True while the API answers (the research API's field).")
    mode: str = Field(default="serve", description="`serve` (the research API's field: this server generates).")
    warmed: bool = Field(
        default=False,
        description="Whether a magenta worker has its model loaded and compiled (the research API's field: its "
        "web tester waits for it before opening the jam socket).",
    )
    problems: dict[str, str] = Field(
        default_factory=dict,
        description="Per pool that cannot serve right now, why: no live worker (its jobs wait in the queue), its "
        "models still loading, or failed to load (the worker's reason). Empty when `status` is `healthy`.",
    )


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
    avg_generation_time_seconds: float | None = Field(
        description="The same as `avg_generation_time` (musicgen-api's newer name)."
    )
    avg_soundtrack_time_seconds: float | None = Field(description="Average seconds per completed `soundtrack` job.")
    avg_separation_time_seconds: float | None = Field(
        description="The same as `avg_separation_time` (musicgen-api's newer name)."
    )
    by_kind: dict[str, KindTimes] = Field(description="Timings per job kind.")
    generated_audio_seconds: float = Field(description="Seconds of audio produced in total.")


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail = Field(description="The error.")
    detail: str = Field(description="The message again, for clients of musicgen-api.")
