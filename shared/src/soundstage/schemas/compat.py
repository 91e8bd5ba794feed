"""The synchronous answers and the compatibility APIs: S.Rocks (under `/srocks`) and the hosted MusicGen
API (under `/segmind`), with their own field names, defaults and limits; plus the 202 body of every
route that waits for its job (`Prefer: wait`, both compatibility APIs) and gave up waiting."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from soundstage.schemas.common import JobStatus
from soundstage.schemas.generate import GuidanceScale, Prompt, Temperature

COMPAT_MAX_DURATION = 30.0
"""Both compatibility APIs take at most 30 seconds."""
HOSTED_SEED_MAX = 9999


class JobPending(BaseModel):
    """The job is not finished within the wait limit (SYNC_WAIT_SECONDS, or the client's `Prefer: wait`);
    poll `GET /jobs/{job_id}` (the `Location` header) for its result."""

    job_id: str = Field(description="Identifier to poll at `GET /jobs/{job_id}`.")
    status: JobStatus = Field(description="The job's status now: `queued` or `processing`.")


# ------------------------------------------------------------------------------ S.Rocks


class SRocksHealth(BaseModel):
    """`GET /srocks/`: S.Rocks' health check."""

    status: str = Field(description="`healthy` once a MusicGen worker has loaded its model, `degraded` before that.")
    model: str = Field(description="The default MusicGen model, short name (`musicgen-small`).")
    device: str = Field(description="`cuda`, `cpu`, or `none` while no MusicGen or Demucs worker is live.")
    version: str = Field(description="Soundstage's version.")
    models: list[str] = Field(description="Every served MusicGen model (ours).")


class SRocksGenerateRequest(BaseModel):
    """`POST /srocks/generate/`: S.Rocks' fields, defaults and limits. Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "A lofi hip hop beat with smooth jazz piano", "duration": 15}]},
    )

    text: Prompt = Field(description="Description of the desired music. Required, 1-2000 characters.")
    duration: float = Field(
        default=10.0, ge=1.0, le=COMPAT_MAX_DURATION, description="Length in seconds, 1-30. Default 10."
    )
    guidance_scale: GuidanceScale = 3.0
    temperature: Temperature = 1.0


class SRocksGenerated(BaseModel):
    """The generated file, once the job completed."""

    file_url: str = Field(
        description="Download URL relative to the API's base (`/files/<name>`): a client of `http://host/srocks` "
        "downloads `http://host/srocks/files/<name>`."
    )
    duration: float = Field(description="Length in seconds, as asked.")
    timestamp: str = Field(description="When the file was made (UTC), `YYYYMMDD_HHMMSS`.")
    prompt: str = Field(description="The `text` that was asked for.")
    job_id: str = Field(description="The job that made it (ours: `GET /jobs/{job_id}` has the details).")


class SRocksFile(BaseModel):
    """An entry of `GET /srocks/files/`."""

    filename: str = Field(description="File name.")
    url: str = Field(description="Download URL relative to the API's base (`/files/<name>`).")
    created_at: str = Field(description="When the file was stored (UTC), `YYYY-MM-DD HH:MM:SS`.")
    size_kb: float = Field(description="Size in KiB, one decimal.")


# ------------------------------------------------------------------- hosted MusicGen API


class HostedGenerateRequest(BaseModel):
    """`POST /segmind/v1/meta-musicgen-<size>`: the hosted API's fields, defaults and limits. Unknown fields
    are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prompt": "lo-fi music with a soothing melody", "duration": 10, "seed": 42}]},
    )

    prompt: Prompt = Field(description="Prompt to generate music. Required, 1-2000 characters.")
    duration: float = Field(
        default=10.0, ge=1.0, le=COMPAT_MAX_DURATION, description="Duration of the audio in seconds, 1-30. Default 10."
    )
    seed: int = Field(
        default=42,
        ge=-1,
        le=HOSTED_SEED_MAX,
        description=f"Seed for audio generation, -1 to {HOSTED_SEED_MAX}. Default 42; -1 picks one at random. The "
        "same seed, prompt and duration give the same audio.",
    )
