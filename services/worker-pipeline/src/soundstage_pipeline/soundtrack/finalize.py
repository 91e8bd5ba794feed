"""The `finalize` step: the soundtrack put together, normalised and encoded.

Between transitions each scene plays as prepared: its tempo-matched audio, joined to its tail from its
handoff on (the tail is what it sounds like through its outgoing crossfade), and for the last scene its
extension if a speed-up left it short. Every transition's window is the crossfade the quality loop kept,
and where it kept a regenerated opening, that opening plays after the window until it hands back to the
scene. The result is exactly ``total`` samples, then normalised to the loudness target (true peak at most
-1 dBFS), resampled if asked, and encoded; its length is the requested total to the sample at the output
rate.
"""

from __future__ import annotations

import numpy as np

from soundstage.audio import encode_audio, normalize_loudness_limited, resample
from soundstage.db import Job, NewFile
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import AudioFormat
from soundstage.storage import ObjectStore
from soundstage_pipeline.soundtrack import files
from soundstage_pipeline.soundtrack.models import Continuation, FinalizeParams, Track
from soundstage_pipeline.soundtrack.timeline import join_continuation, span


def run_finalize(job: Job, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = FinalizeParams.model_validate(job.params)
    pieces: list[np.ndarray] = []
    count = len(params.scenes)
    for index in range(count):
        report(80.0 * index / count, f"scene {index + 1}: assembling")
        lo = 0 if index == 0 else params.windows[index - 1].end
        hi = params.total if index == count - 1 else params.windows[index].start
        pieces.append(_scene_between(store, params, index, lo, hi))
        if index < count - 1:
            pieces.append(files.load(store, params.windows[index].file)[0])
    mix = np.concatenate(pieces, axis=-1)
    pieces.clear()  # one copy of an hour-long soundtrack less while it is normalised
    if mix.shape[-1] != params.total:
        raise ValueError(f"the soundtrack came out {mix.shape[-1]} samples long instead of {params.total}")
    report(85.0, "normalising loudness", force=True)
    mix = normalize_loudness_limited(mix, params.rate, params.loudness_target)
    rate = params.sample_rate or params.rate
    if rate != params.rate:
        mix = _exact_length(resample(mix, params.rate, rate), round(params.total_seconds * rate))
    report(95.0, "encoding", force=True)
    encoded = encode_audio(mix, rate, AudioFormat(params.format))
    stored = store.put_bytes(params.output, encoded.data, encoded.content_type)
    new = NewFile(
        name=params.output,
        content_type=encoded.content_type,
        size_bytes=stored.size,
        duration_s=encoded.duration_s,
        sample_rate=encoded.sample_rate,
        channels=encoded.channels,
    )
    return JobOutput(files=[new], result={"file": params.output}, audio_seconds=encoded.duration_s)


def _scene_between(store: ObjectStore, params: FinalizeParams, index: int, lo: int, hi: int) -> np.ndarray:
    """Scene ``index`` over timeline ``[lo, hi)``: as prepared, its tail or extension after it, and a kept
    regenerated opening over the start."""
    scene = params.scenes[index]
    audio, start = _loaded(store, scene)
    after: Continuation | None = params.tails[index] if index < len(params.tails) else params.extension
    if after is not None and hi > after.join:
        continued, _ = _loaded(store, after.track)
        audio = join_continuation(audio, start, continued, after.track.start, join=after.join, rate=params.rate)
    piece = span(audio, start, lo, hi).copy()
    opening = params.windows[index - 1].override if index > 0 else None
    if opening is not None:
        replaced, _ = _loaded(store, opening)
        upto = min(opening.end, hi)
        piece[:, : upto - lo] = span(replaced, opening.start, lo, upto)
    return piece


def _loaded(store: ObjectStore, track: Track) -> tuple[np.ndarray, int]:
    return files.load(store, track.file)[0], track.start


def _exact_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Resampling rounds the length; the file is exactly the requested duration at its rate."""
    if samples.shape[-1] >= length:
        return samples[:, :length]
    return np.pad(samples, ((0, 0), (0, length - samples.shape[-1])))
