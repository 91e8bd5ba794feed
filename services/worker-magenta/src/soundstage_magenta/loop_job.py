"""Run one loop job: bars of music at a tempo, continuing an input loop (`/magenta/generate`) or from styles
alone (`/magenta/generate_style`).

The loop is decoded to 48 kHz stereo and its last PRIME_SECONDS encoded with SpectroStream's encoder; the
model is fed those codes frame by frame (``MagentaSystem.prime``), so what it generates next continues the
loop's own material (rhythm, timbre, harmony in its context window), not only its style. The style
conditioning is the weighted blend of the text styles, at `loop_weight` the loop's own MusicCoCa
embedding, and (`mean`, `centroid_weights`) the selected finetune's steering assets. `intro_bars` bars
are generated first and cut off; the rest is cut to exactly ``bars * beats_per_bar * 60 / bpm`` seconds
at the target rate (rounded to whole samples), levelled as `loudness_mode` says with its true peak under
`-loudness_headroom_db` dBFS, and stored as 16-bit WAV.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from soundstage.audio import decode_audio, limit_peaks, measure_loudness, normalize_loudness, resample
from soundstage.db import Job
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import AudioFormat, LoopJobParams, LoudnessMode, StylePrompt
from soundstage.schemas.loop import MAX_LOOP_SECONDS, PRIME_SECONDS
from soundstage.schemas.magenta_model import MEAN_ASSET
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine
from soundstage_magenta.finetune import NO_ASSETS, SteeringAssets
from soundstage_magenta.job import Embedding, blend, embed_prompt, generate_frames, generation_result, store_audio
from soundstage_magenta.system import CHANNELS, SAMPLE_RATE, SAMPLES_PER_FRAME, MagentaSystem

DEFAULT_LUFS = -14.0
Samples = np.ndarray[Any, np.dtype[np.float32]]


def bar_exact_samples(params: LoopJobParams, sample_rate: int) -> int:
    """Samples of ``params.bars`` bars at ``sample_rate``: round(bars * beats_per_bar * 60 / bpm * rate)."""
    return round(params.bars * params.beats_per_bar * 60.0 * sample_rate / params.bpm)


def prime_tail(loop: Samples) -> Samples:
    """The end of ``loop`` ((2, n) at SAMPLE_RATE) the model is primed with: at most PRIME_SECONDS of whole
    frames ending at its last sample, so that what follows starts exactly where the loop ends (a partial
    frame at the end would be padded with silence and the continuation would start after it). A loop
    shorter than a frame is padded at its start."""
    frames = max(1, min(loop.shape[1], round(PRIME_SECONDS * SAMPLE_RATE)) // SAMPLES_PER_FRAME)
    length = frames * SAMPLES_PER_FRAME
    if loop.shape[1] < length:
        return np.pad(loop, ((0, 0), (length - loop.shape[1], 0)))
    return np.ascontiguousarray(loop[:, loop.shape[1] - length :])


def level(samples: Samples, loop: Samples | None, params: LoopJobParams) -> Samples:
    """``samples`` ((channels, n) at SAMPLE_RATE) levelled as ``params.loudness_mode`` says, then limited to
    the headroom's true-peak ceiling (a level raised toward a loud loop never clips)."""
    mode = params.loudness_mode
    if mode is LoudnessMode.NONE:
        return samples
    target = DEFAULT_LUFS
    if loop is not None and mode is LoudnessMode.AUTO:
        measured = measure_loudness(loop, SAMPLE_RATE)
        target = measured if math.isfinite(measured) else DEFAULT_LUFS
    if loop is not None and mode is LoudnessMode.RMS:
        wanted, have = _rms(loop), _rms(samples)
        out = samples if have <= 0.0 or wanted <= 0.0 else (samples * np.float32(wanted / have)).astype(np.float32)
    else:
        out = normalize_loudness(samples, SAMPLE_RATE, target)
    return limit_peaks(out, SAMPLE_RATE, 10.0 ** (-params.loudness_headroom_db / 20.0))


def _rms(samples: Samples) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def run_loop(job: Job, engine: MagentaEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = LoopJobParams.model_validate(job.params)
    report(0.0, "loading the model", force=True)
    serving = engine.serve(params.checkpoint)
    system = serving.system
    info = engine.info
    loop: Samples | None = None
    if params.loop is not None:
        report(1.0, "reading the loop", force=True)
        decoded = decode_audio(
            store.read_bytes(params.loop), max_seconds=MAX_LOOP_SECONDS, sample_rate=SAMPLE_RATE, channels=CHANNELS
        )
        loop = decoded.samples  # (2, n) at 48 kHz

    report(3.0, "embedding the styles", force=True)
    assets = engine.assets_for(params.checkpoint) if params.steered else NO_ASSETS
    tokens = steered_style(params, system, store, assets)

    started = time.monotonic()
    state = system.new_state(params.seed)
    if loop is not None:
        report(8.0, "listening to the loop", force=True)
        codes = system.encode_loop(np.ascontiguousarray(prime_tail(loop).T))
        state = system.prime(
            codes,
            tokens,
            temperature=params.temperature,
            top_k=params.top_k,
            cfg_musiccoca=params.guidance_weight,
            state=state,
        ).state

    # After a loop, the codec's first frames out are the loop's own end (its decoder's lookahead): skipped.
    skip = system.output_latency_frames * SAMPLES_PER_FRAME if loop is not None else 0
    intro = skip + round(params.intro_bars * params.beats_per_bar * 60.0 * SAMPLE_RATE / params.bpm)
    wanted = bar_exact_samples(params, SAMPLE_RATE)
    generated = generate_frames(
        system,
        tokens,
        math.ceil((intro + wanted) / SAMPLES_PER_FRAME),
        state,
        temperature=params.temperature,
        top_k=params.top_k,
        guidance_weight=params.guidance_weight,
        report=report,
        span=(15.0, 92.0),
    )
    compute_seconds = time.monotonic() - started
    loop_seconds = None if loop is None else loop.shape[1] / SAMPLE_RATE

    samples = np.ascontiguousarray(generated[intro : intro + wanted].T)  # (channels, n) at 48 kHz
    samples = level(samples, loop, params)
    rate = params.target_sample_rate
    total = bar_exact_samples(params, rate)
    if rate != SAMPLE_RATE:
        samples = resample(samples, SAMPLE_RATE, rate)
    samples = _exact(samples, total)
    report(96.0, "encoding", force=True)
    output = store_audio(job.id, samples, rate, AudioFormat.WAV, store)
    result = {
        **generation_result(info, params.seed, compute_seconds),
        "metadata": metadata(params, info.ref, total, loop_seconds=loop_seconds),
        "checkpoint": serving.checkpoint(),
    }
    return JobOutput(files=[output], result=result, audio_seconds=params.duration)


def steered_style(
    params: LoopJobParams, system: MagentaSystem, store: ObjectStore, assets: SteeringAssets
) -> list[int] | None:
    """The conditioning tokens of the job's style (``steered_embedding``); None without any."""
    embedding = steered_embedding(
        params.prompts,
        mean=params.mean,
        centroid_weights=params.centroid_weights,
        system=system,
        store=store,
        assets=assets,
    )
    return None if embedding is None else system.style_tokens(embedding)


def steered_embedding(
    prompts: list[StylePrompt],
    *,
    mean: float,
    centroid_weights: list[float],
    system: MagentaSystem,
    store: ObjectStore,
    assets: SteeringAssets,
    extra: list[tuple[Embedding, float]] | None = None,
) -> Embedding | None:
    """The weighted mean of the prompts' embeddings, the ``extra`` ones (embedding, weight) and, steered, the
    finetune's mean style (weight ``mean``) and centroids (``centroid_weights``), the weights normalised
    together; None without any (no style conditioning). AppError `steering_unavailable` for an asset the
    selected finetune does not have."""
    embeddings = [embed_prompt(prompt, system, store) for prompt in prompts]
    weights = [prompt.weight for prompt in prompts]
    for embedding, weight in extra or []:
        embeddings.append(embedding)
        weights.append(weight)
    if mean > 0:
        if assets.mean is None:
            raise _no_steering(f"the selected finetune ({assets.repo or 'none'}) has no {MEAN_ASSET}")
        embeddings.append(assets.mean)
        weights.append(mean)
    for index, weight in enumerate(centroid_weights):
        if weight <= 0:
            continue
        if assets.centroids is None or index >= assets.centroid_count:
            raise _no_steering(
                f"centroid {index + 1} was weighed; the selected finetune ({assets.repo or 'none'}) has "
                f"{assets.centroid_count} centroids"
            )
        embeddings.append(assets.centroids[index])
        weights.append(weight)
    if not embeddings:
        return None
    total = sum(weights)
    return blend(embeddings, [weight / total for weight in weights])


def _no_steering(why: str) -> AppError:
    return AppError(ErrorCode.STEERING_UNAVAILABLE, f"Cannot steer the style: {why}.", status_code=422)


def metadata(params: LoopJobParams, model: str, total_samples: int, *, loop_seconds: float | None) -> dict[str, Any]:
    """The research API's metadata: counts as JSON integers (its iOS client decodes them as Int)."""
    styles = [prompt.text for prompt in params.prompts if prompt.text is not None]
    return {
        "bpm": round(params.bpm),
        "bpm_exact": params.bpm,
        "bars": params.bars,
        "beats_per_bar": params.beats_per_bar,
        "sample_rate": params.target_sample_rate,
        "channels": CHANNELS,
        "total_samples": total_samples,
        "seconds_per_bar": params.beats_per_bar * 60.0 / params.bpm,
        "loop_duration_seconds": params.bars * params.beats_per_bar * 60.0 / params.bpm,
        "input_loop_seconds": loop_seconds,
        "intro_bars_dropped": params.intro_bars,
        "styles": styles,
        "style_weights": [prompt.weight for prompt in params.prompts if prompt.text is not None],
        "loop_weight": next((prompt.weight for prompt in params.prompts if prompt.audio is not None), 0.0),
        "guidance_weight": params.guidance_weight,
        "temperature": params.temperature,
        "topk": params.top_k,
        "seed": params.seed,
        "loudness_mode": params.loudness_mode.value,
        "mean": params.mean,
        "centroid_weights": params.centroid_weights,
        "checkpoint_repo": params.checkpoint.repo if params.checkpoint is not None else None,
        "model": model,
    }


def _exact(samples: Samples, total: int) -> Samples:
    """``samples`` cut or zero-padded (by the resampler's rounding, a sample or two) to ``total`` samples."""
    if samples.shape[1] >= total:
        return np.ascontiguousarray(samples[:, :total])
    return np.pad(samples, ((0, 0), (0, total - samples.shape[1])))
