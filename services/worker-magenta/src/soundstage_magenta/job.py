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
from soundstage.schemas import GENERATED_WITH_RANDOM_WEIGHTS, StyleJobParams, StylePrompt
from soundstage.schemas.style import MAX_STYLE_AUDIO_SECONDS
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine
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


def run_style(job: Job, engine: MagentaEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = StyleJobParams.model_validate(job.params)
    report(0.0, "loading the model", force=True)
    system = engine.system
    info = engine.info
    report(0.0, "embedding the prompts", force=True)
    embeddings = [embed_prompt(prompt, system, store) for prompt in params.prompts]
    tokens = system.style_tokens(blend(embeddings, params.normalised_weights()))

    total = math.ceil(params.duration * FRAMES_PER_SECOND)
    state = system.new_state(params.seed)
    pieces: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    done = 0
    started = time.monotonic()
    while done < total:
        frames = min(FRAMES_PER_SECOND, total - done)
        generated = system.generate(
            tokens,
            frames,
            temperature=params.temperature,
            top_k=params.top_k,
            cfg_musiccoca=params.guidance_weight,
            state=state,
        )
        state = generated.state
        pieces.append(generated.samples)
        done += frames
        report(95.0 * done / total, f"generating: {done / FRAMES_PER_SECOND:.0f}/{params.duration:g} s")
    compute_seconds = time.monotonic() - started

    length = round(params.duration * SAMPLE_RATE)
    samples = np.ascontiguousarray(np.concatenate(pieces)[:length].T)  # (channels, n)
    if params.loudness_target is not None:
        samples = normalize_loudness(samples, SAMPLE_RATE, params.loudness_target)
    report(97.0, "encoding", force=True)
    encoded = encode_audio(samples, SAMPLE_RATE, params.format)
    name = output_name(job.id, encoded.extension)
    stored = store.put_bytes(name, encoded.data, encoded.content_type)
    output = NewFile(
        name=name,
        content_type=encoded.content_type,
        size_bytes=stored.size,
        duration_s=encoded.duration_s,
        sample_rate=encoded.sample_rate,
        channels=encoded.channels,
    )
    result = {
        "model": info.ref,
        "seed": params.seed,
        "random_weights": info.random_weights,
        "warning": GENERATED_WITH_RANDOM_WEIGHTS.format(model=info.ref) if info.random_weights else None,
        "device": info.device,
        "compute_seconds": round(compute_seconds, 3),
    }
    return JobOutput(files=[output], result=result, audio_seconds=params.duration)
