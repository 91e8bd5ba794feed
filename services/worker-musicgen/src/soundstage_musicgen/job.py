"""Run one text-to-music job: parameters in, stored audio files and a result envelope out."""

from __future__ import annotations

import time

import numpy as np

from soundstage.audio import decode_audio, encode_audio, normalize_loudness, resample
from soundstage.db import Job, NewFile
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import GENERATED_WITH_RANDOM_WEIGHTS, GenerateJobParams
from soundstage.storage import ObjectStore
from soundstage_musicgen.engine import EngineInfo, GeneratedAudio, GenerationParams, MusicgenEngine, PromptAudio


def output_name(job_id: str, extension: str, take: int, takes: int) -> str:
    """Deterministic, so a redelivered job overwrites its own files instead of adding more.
    One take is `{job_id}_generated.wav` (musicgen-api's name); several are numbered from 1."""
    suffix = "" if takes == 1 else f"_{take + 1}"
    return f"{job_id}_generated{suffix}.{extension}"


def _stored_audio(
    store: ObjectStore,
    name: str | None,
    as_needed: tuple[int, int],
    start_s: float | None = None,
    end_s: float | None = None,
) -> PromptAudio | None:
    """An input in storage (an upload or fetch the API validated, or a pipeline's earlier step), decoded
    straight to ``as_needed`` (rate, channels: what the model takes, so memory follows the model's input
    and not the file's claims); with ``start_s``/``end_s`` only that stretch of it."""
    if not name:
        return None
    rate, channels = as_needed
    decoded = decode_audio(store.read_bytes(name), sample_rate=rate, channels=channels)
    rate = decoded.sample_rate
    first = round(start_s * rate) if start_s is not None else 0
    last = round(end_s * rate) if end_s is not None else decoded.samples.shape[-1]
    samples = decoded.samples[:, first:last]
    if samples.shape[-1] == 0:
        raise AppError(
            ErrorCode.AUDIO_EMPTY, "The audio prompt holds no samples in the range asked for.", status_code=422
        )
    return PromptAudio(samples=np.ascontiguousarray(samples), sample_rate=rate)


def generation_params(request: GenerateJobParams, store: ObjectStore, info: EngineInfo) -> GenerationParams:
    """``info``: the model's rate and channels, what the inputs are decoded to (melody: mono)."""
    return GenerationParams(
        prompt=request.full_prompt,
        duration_s=request.duration,
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        guidance_scale=request.guidance_scale,
        seed=request.seed,
        num_outputs=request.num_outputs,
        prompt_audio=_stored_audio(
            store,
            request.audio_prompt,
            (info.sample_rate, info.channels),
            request.audio_prompt_start,
            request.audio_prompt_end,
        ),
        include_prompt=request.include_prompt,
        melody=_stored_audio(store, request.melody_audio, (info.sample_rate, 1)),
        melody_start_s=request.melody_start,
    )


def run_generate(job: Job, engine: MusicgenEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    request = GenerateJobParams.model_validate(job.params)
    report(0.0, "preparing", force=True)
    params = generation_params(request, store, engine.info)

    def on_progress(step: int, total: int, detail: str) -> None:
        # Decoding is ~all the work; the last percent covers the codec, encoding and upload.
        report(99.0 * step / total, detail, force=step == total)

    started = time.monotonic()
    takes = engine.generate(params, on_progress)
    compute_seconds = time.monotonic() - started
    report(99.0, "encoding", force=True)
    files = [
        _store_take(job.id, take, index=index, takes=len(takes), request=request, store=store)
        for index, take in enumerate(takes)
    ]
    info = engine.info
    prompt_samples = takes[0].samples.shape[-1] - round(params.duration_s * info.sample_rate) if takes else 0
    result = {
        "seed": params.seed,
        # Seconds of (re-synthesised) prompt audio each file starts with, before the new audio.
        "prompt_seconds": prompt_samples / info.sample_rate,
        "random_weights": info.random_weights,
        "warning": GENERATED_WITH_RANDOM_WEIGHTS.format(model=info.model) if info.random_weights else None,
        "device": info.device,
        "compute_seconds": round(compute_seconds, 3),
    }
    return JobOutput(files=files, result=result, audio_seconds=sum(f.duration_s or 0.0 for f in files))


def _store_take(
    job_id: str, take: GeneratedAudio, *, index: int, takes: int, request: GenerateJobParams, store: ObjectStore
) -> NewFile:
    samples, rate = postprocess(take, request)
    encoded = encode_audio(samples, rate, request.format)
    name = output_name(job_id, encoded.extension, index, takes)
    stored = store.put_bytes(name, encoded.data, encoded.content_type)
    return NewFile(
        name=name,
        content_type=encoded.content_type,
        size_bytes=stored.size,
        duration_s=encoded.duration_s,
        sample_rate=encoded.sample_rate,
        channels=encoded.channels,
    )


def postprocess(take: GeneratedAudio, request: GenerateJobParams) -> tuple[np.ndarray, int]:
    """Resample (soxr) to the requested rate, then normalise loudness if asked."""
    samples, rate = take.samples, take.sample_rate
    if request.sample_rate and request.sample_rate != rate:
        samples, rate = resample(samples, rate, request.sample_rate), request.sample_rate
    if request.normalize:
        samples = normalize_loudness(samples, rate, request.loudness_target)
    return samples, rate
