"""Job envelopes returned by `/generate` and `/jobs` (musicgen-api's fields plus ours)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from soundstage.schemas.common import JobKind, JobStatus
from soundstage.schemas.soundtrack import SceneResult, TransitionResult


class JobCreated(BaseModel):
    job_id: str = Field(description="Identifier to poll at `GET /jobs/{job_id}`.")
    status: JobStatus = Field(description="Always `queued` on creation.")


class OutputFile(BaseModel):
    """One audio file a job produced."""

    name: str = Field(description="File name in storage.")
    url: str = Field(description="Relative download URL (`/files/<name>`).")
    content_type: str = Field(description="MIME type, e.g. `audio/wav`.")
    size_bytes: int = Field(description="File size in bytes.")
    duration: float | None = Field(default=None, description="Seconds of audio.")
    sample_rate: int | None = Field(default=None, description="Samples per second.")
    channels: int | None = Field(default=None, description="1 = mono, 2 = stereo.")


class ProgressDetail(BaseModel):
    """What a job is doing now. musicgen-api's fields (`current_scene`, `total_scenes`, `stage`) are set on
    soundtrack jobs; `message` says it in words on every job."""

    current_scene: int | None = Field(default=None, description="Soundtracks: the scene being worked on (from 1).")
    total_scenes: int | None = Field(default=None, description="Soundtracks: how many scenes there are.")
    stage: str | None = Field(
        default=None,
        description="Soundtracks: `generating`, `separating`, `crossfading`, `scoring`, `regenerating` or "
        "`finalizing`.",
    )
    message: str | None = Field(default=None, description="What the worker is doing, in words.")


GENERATED_WITH_RANDOM_WEIGHTS = (
    "Generated with random weights ({model}): for tests and benchmarks only; the audio is noise, not music."
)
"""`JobResult.warning` of audio a `random:` MusicGen model made (a generation, a soundtrack)."""
SEPARATED_WITH_RANDOM_WEIGHTS = (
    "Separated with random weights ({model}): for tests and benchmarks only; the stems are noise, not music."
)
"""`JobResult.warning` of stems a `random:` Demucs model made."""


class ChildJob(BaseModel):
    """One step of a multi-step job: itself a job, on the pool that owns its model (`GET /jobs/{job_id}`)."""

    job_id: str = Field(description="The step's own job id.")
    step: str = Field(description="Which step it is (`scene:2`, `separate:0`, `finalize`, ...).")
    kind: JobKind = Field(description="`generate` (MusicGen), `separate` (Demucs) or `mix` (CPU).")
    stage: str | None = Field(default=None, description="The stage of the parent it belongs to.")
    status: JobStatus = Field(description="The step's status.")
    progress: float = Field(ge=0, le=100, description="The step's own progress, 0-100.")
    error_code: str | None = Field(default=None, description="Why the step failed, if it did.")


class JobResult(BaseModel):
    """What a completed job produced and how."""

    files: list[OutputFile] = Field(default_factory=list, description="Output files, in `result_urls` order.")
    seed: int | None = Field(default=None, description="Seed actually used (reproduces the output).")
    random_weights: bool = Field(
        default=False, description="True when a `random:` test model made this: noise, not music."
    )
    warning: str | None = Field(default=None, description="Anything the client should know about the result.")
    device: str | None = Field(default=None, description="Device the worker ran on.")
    compute_seconds: float | None = Field(default=None, description="Wall time the model took.")
    stems: dict[str, str] | None = Field(
        default=None,
        description="Separations, and soundtracks asked for `stems`: each stem's download URL by name "
        "(`drums`, `bass`, `other`, `vocals`, ...).",
    )
    transitions: list[TransitionResult] | None = Field(
        default=None,
        description="Soundtracks: one entry per transition: where the cut landed, the beat it snapped to, the "
        "tempo on each side, the quality scores and every attempt.",
    )
    scenes: list[SceneResult] | None = Field(
        default=None, description="Soundtracks: one entry per scene: prompt, seed, span, tempo and stretch."
    )
    embedding: list[float] | None = Field(
        default=None, description="Embeddings (`/embed/*`): MusicCoCa's 768-float style embedding."
    )
    shape: list[int] | None = Field(default=None, description="Embeddings: the embedding's shape, `[768]`.")
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Bars (`/magenta/generate*`): the research API's metadata (bpm, bars, sample_rate, "
        "total_samples, ...; counts as integers).",
    )
    checkpoint: dict[str, Any] | None = Field(
        default=None,
        description="Magenta: the finetune checkpoint that made it, `{repo, revision, step}` "
        "(`/magenta/model/select`); null: the model's own weights.",
    )


class JobView(BaseModel):
    """The job envelope. Fields up to `model` are musicgen-api's; the rest are additions."""

    job_id: str = Field(description="The job's id.")
    status: JobStatus = Field(description="`queued`, `processing`, `completed`, `failed` or `cancelled`.")
    progress: float = Field(ge=0, le=100, description="Percent done, 0-100.")
    progress_detail: ProgressDetail | None = Field(default=None, description="What the worker is doing now.")
    result_urls: list[str] = Field(description="Relative URLs of the output files (`/files/<name>`), in order.")
    error: str | None = Field(default=None, description="Human-readable failure reason.")
    error_code: str | None = Field(default=None, description="Stable machine-readable failure code.")
    created_at: datetime = Field(description="When the API accepted the job (UTC).")
    started_at: datetime | None = Field(default=None, description="When a worker last started it (UTC).")
    finished_at: datetime | None = Field(default=None, description="When it reached a final status (UTC).")
    model: str | None = Field(default=None, description="Model that serves (or served) the job.")
    kind: JobKind = Field(
        description="What the job does: `generate` (MusicGen), `separate` (Demucs), `soundtrack` (multi-step), or "
        "`mix` (a CPU step of a soundtrack)."
    )
    params: dict[str, Any] = Field(description="The validated request parameters.")
    result: JobResult | None = Field(default=None, description="Set once the job completed.")
    attempts: int = Field(description="How many times a worker started this job (more than 1 after a crash).")
    cancel_requested: bool = Field(default=False, description="True once `DELETE /jobs/{id}` asked it to stop.")
    parent_id: str | None = Field(default=None, description="For a step of a multi-step job: that job's id.")
    stage: str | None = Field(default=None, description="Multi-step jobs: the stage they are at (or belong to).")
    children: list[ChildJob] = Field(
        default_factory=list, description="Multi-step jobs: their steps, oldest first (each is a job of its own)."
    )


MAX_LIST_SKIP = 1_000_000_000
"""The largest `skip` a listing takes: far past any page a client can reach, well inside the 64-bit OFFSET
that SQLite and PostgreSQL accept (a larger one overflowed SQLite: a 500)."""


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="Newest first.")
    total: int = Field(description="Jobs matching the filter, ignoring limit/skip.")
    limit: int = Field(description="Page size used.")
    skip: int = Field(description="Jobs skipped.")
