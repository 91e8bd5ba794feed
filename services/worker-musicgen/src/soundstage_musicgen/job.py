"""Run one text-to-music job: parameters in, a stored audio file and result envelope out."""

from __future__ import annotations

import time

from soundstage.audio import encode_audio
from soundstage.db import Job, NewFile
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import GenerateJobParams
from soundstage.storage import ObjectStore
from soundstage_musicgen.engine import GenerationParams, MusicgenEngine

RANDOM_WEIGHTS_WARNING = (
    "Generated with random weights ({model}): for tests and benchmarks only; the audio is noise, not music."
)


def output_name(job_id: str, extension: str) -> str:
    """Deterministic, so a redelivered job overwrites its own file instead of adding a second one."""
    return f"{job_id}_generated.{extension}"


def generation_params(job: Job) -> tuple[GenerateJobParams, GenerationParams]:
    request = GenerateJobParams.model_validate(job.params)
    return request, GenerationParams(
        prompt=request.full_prompt,
        duration_s=request.duration,
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        guidance_scale=request.guidance_scale,
        seed=request.seed,
    )


def run_generate(job: Job, engine: MusicgenEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    if job.model != engine.model_ref:
        raise AppError(
            ErrorCode.UNKNOWN_MODEL, f"This worker serves {engine.model_ref!r}, not {job.model!r}.", status_code=422
        )
    request, params = generation_params(job)
    report(0.0, "generating", force=True)

    def on_step(step: int, total: int) -> None:
        # Decoding is ~all the work; the last percent covers encoding and upload.
        report(99.0 * step / total, f"decoding step {step}/{total}", force=step == total)

    started = time.monotonic()
    audio = engine.generate(params, on_step)
    compute_seconds = time.monotonic() - started
    report(99.0, "encoding", force=True)
    encoded = encode_audio(audio.samples, audio.sample_rate, request.format)
    name = output_name(job.id, encoded.extension)
    stored = store.put_bytes(name, encoded.data, encoded.content_type)
    info = engine.info
    result = {
        "seed": params.seed,
        "random_weights": info.random_weights,
        "warning": RANDOM_WEIGHTS_WARNING.format(model=info.model) if info.random_weights else None,
        "device": info.device,
        "compute_seconds": round(compute_seconds, 3),
    }
    new_file = NewFile(
        name=name,
        content_type=encoded.content_type,
        size_bytes=stored.size,
        duration_s=encoded.duration_s,
        sample_rate=encoded.sample_rate,
        channels=encoded.channels,
    )
    return JobOutput(files=[new_file], result=result, audio_seconds=encoded.duration_s)
