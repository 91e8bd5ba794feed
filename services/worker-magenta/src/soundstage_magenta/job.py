"""Run one style job: the prompts' blended MusicCoCa style in, `duration` seconds of 48 kHz stereo out.

Each prompt is embedded (a text directly, an audio file decoded to MusicCoCa's 16 kHz mono), the
embeddings averaged with the weights normalised to sum to 1, and the blend tokenised once. The stream
starts from a state whose sampling key is the job's seed, so a redelivered job makes the same audio.
Frames are generated a second at a time: each second reports progress, and with it the job's deadline
is checked (JOB_TIMEOUT_SECONDS). The audio is cut to exactly `duration` seconds, loudness-normalised
(Magenta RT writes at a fixed -6 dB), encoded and stored as `{job_id}.{format}`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from soundstage.audio import decode_audio, encode_audio, normalize_loudness
from soundstage.db import Job, NewFile
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import GENERATED_WITH_RANDOM_WEIGHTS, AudioFormat, StyleJobParams, StylePrompt
from soundstage.schemas.style import MAX_STYLE_AUDIO_SECONDS
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine, MagentaInfo
from soundstage_magenta.system import FRAMES_PER_SECOND, SAMPLE_RATE, STYLE_SAMPLE_RATE, MagentaSystem

Embedding = np.ndarray[Any, np.dtype[np.float32]]


def output_name(job_id: str, extension: str) -> str:
    return f"{job_id}.{extension}"


def blend(embeddings: list[Embedding], weights: list[float]) -> Embedding:
    """The weighted mean of style embeddings (``weights`` sum to 1)."""
    mixed = np.zeros_like(embeddings[0])
    for embedding, weight in zip(embeddings, weights, strict=True):
        mixed += np.float32(weight) * embedding
    return mixed


def embed_prompt(prompt: StylePrompt, system: MagentaSystem, store: ObjectStore) -> Embedding:
    if prompt.audio is None:
        return system.embed_text(prompt.text or "")  # a prompt is a text or an audio file (StylePrompt)
    decoded = decode_audio(
        store.read_bytes(prompt.audio), max_seconds=MAX_STYLE_AUDIO_SECONDS, sample_rate=STYLE_SAMPLE_RATE, channels=1
    )
    return system.embed_audio(decoded.samples[0])


def style_of(prompts: list[StylePrompt], weights: list[float], system: MagentaSystem, store: ObjectStore) -> list[int]:
    """The conditioning tokens of the weighted blend of ``prompts`` (``weights`` sum to 1)."""
    return system.style_tokens(blend([embed_prompt(prompt, system, store) for prompt in prompts], weights))


def generate_frames(
    system: MagentaSystem,
    tokens: list[int] | None,
    total: int,
    state: Any,
    *,
    temperature: float,
    top_k: int,
    guidance_weight: float,
    report: ProgressReporter,
    span: tuple[float, float] = (0.0, 95.0),
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """``total`` frames continuing ``state`` (consumed), a second at a time, each second reported as
    progress within ``span`` (where the job's deadline and cancellation are checked): (n, 2) float32."""
    pieces: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    done = 0
    while done < total:
        frames = min(FRAMES_PER_SECOND, total - done)
        generated = system.generate(
            tokens, frames, temperature=temperature, top_k=top_k, cfg_musiccoca=guidance_weight, state=state
        )
        state = generated.state
        pieces.append(generated.samples)
        done += frames
        low, high = span
        report(
            low + (high - low) * done / total,
            f"generating: {done / FRAMES_PER_SECOND:.0f}/{total / FRAMES_PER_SECOND:g} s",
        )
    return np.concatenate(pieces)


def store_audio(
    job_id: str, samples: np.ndarray[Any, np.dtype[np.float32]], sample_rate: int, fmt: AudioFormat, store: ObjectStore
) -> NewFile:
    """``samples`` ((channels, n) float32) encoded and stored as the job's output, `{job_id}.{ext}`."""
    encoded = encode_audio(samples, sample_rate, fmt)
    name = output_name(job_id, encoded.extension)
    stored = store.put_bytes(name, encoded.data, encoded.content_type)
    return NewFile(
        name=name,
        content_type=encoded.content_type,
        size_bytes=stored.size,
        duration_s=encoded.duration_s,
        sample_rate=encoded.sample_rate,
        channels=encoded.channels,
    )


def generation_result(info: MagentaInfo, seed: int, compute_seconds: float) -> dict[str, Any]:
    """What every generating job's result says of how it was made."""
    return {
        "model": info.ref,
        "seed": seed,
        "random_weights": info.random_weights,
        "warning": GENERATED_WITH_RANDOM_WEIGHTS.format(model=info.ref) if info.random_weights else None,
        "device": info.device,
        "compute_seconds": round(compute_seconds, 3),
    }


def run_style(job: Job, engine: MagentaEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = StyleJobParams.model_validate(job.params)
    report(0.0, "loading the model", force=True)
    serving = engine.serve(params.checkpoint)
    system = serving.system
    info = engine.info
    report(0.0, "embedding the prompts", force=True)
    tokens = style_of(params.prompts, params.normalised_weights(), system, store)

    started = time.monotonic()
    state = system.new_state(params.seed)
    samples = generate_frames(
        system,
        tokens,
        math.ceil(params.duration * FRAMES_PER_SECOND),
        state,
        temperature=params.temperature,
        top_k=params.top_k,
        guidance_weight=params.guidance_weight,
        report=report,
    )
    compute_seconds = time.monotonic() - started

    length = round(params.duration * SAMPLE_RATE)
    samples = np.ascontiguousarray(samples[:length].T)  # (channels, n)
    if params.loudness_target is not None:
        samples = normalize_loudness(samples, SAMPLE_RATE, params.loudness_target)
    report(97.0, "encoding", force=True)
    output = store_audio(job.id, samples, SAMPLE_RATE, params.format, store)
    result = {**generation_result(info, params.seed, compute_seconds), "checkpoint": serving.checkpoint()}
    return JobOutput(files=[output], result=result, audio_seconds=params.duration)
