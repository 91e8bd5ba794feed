"""One jam's stream on a loaded model: its own stream state (sessions share the model, never a state), cut
into bar-exact chunks that join without a click.

The model generates one continuous stream a second at a time; chunk k is the stream's samples between the
bar-exact ends of chunks k-1 and k (``JamParams.chunk_end``), so no sample is dropped, repeated or faded,
and rounding never accumulates into drift. Everything done to the audio keeps it continuous: one gain for
the whole session (set from the first second so that it plays near -14 LUFS; Magenta RT writes at a fixed
-6 dB), a static soft limit above LIMIT_KNEE (a function of each sample alone: no gain steps), and, for
44.1 kHz, one streaming resampler for the whole session (soxr), never a resampler per chunk. Style and
sampling changes (``update``) apply from the next second generated: at the latest from the next chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundstage.audio import measure_loudness
from soundstage.schemas.jam import ChunkMetadata, JamParams
from soundstage_magenta.system import CHANNELS, FRAMES_PER_SECOND, SAMPLE_RATE, SAMPLES_PER_FRAME, MagentaSystem

TARGET_LUFS = -14.0
MAX_GAIN_DB = 24.0
LIMIT_KNEE = 0.9
Samples = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True)
class Chunk:
    index: int  # the first is 1
    samples: Samples  # (CHANNELS, n) float32 at the target rate
    metadata: ChunkMetadata


def soft_limit(samples: Samples) -> Samples:
    """Samples above LIMIT_KNEE bent smoothly toward 1.0 (never reached); below it, untouched."""
    magnitude = np.abs(samples)
    over = magnitude > LIMIT_KNEE
    if not over.any():
        return samples
    headroom = 1.0 - LIMIT_KNEE
    bent = LIMIT_KNEE + headroom * np.tanh((magnitude - LIMIT_KNEE) / headroom)
    limited: Samples = np.where(over, np.sign(samples) * bent, samples).astype(np.float32)
    return limited


class JamSession:
    def __init__(
        self,
        system: MagentaSystem,
        params: JamParams,
        tokens: list[int] | None,
        *,
        loop: Samples | None = None,
        gain: float | None = None,
    ) -> None:
        """A stream from ``params.seed`` in the style ``tokens`` (None: unconditioned); ``loop`` ((2, n) at
        SAMPLE_RATE, its end in whole frames) primes it so that the jam continues the loop. ``gain``: the
        session's gain (None: set from its first second)."""
        self.params = params
        self._system = system
        self._tokens = tokens
        self._knobs = {
            "temperature": params.temperature,
            "top_k": params.top_k,
            "cfg_musiccoca": params.guidance_weight,
        }
        self._gain = gain
        self._state = system.new_state(params.seed)
        self._skip = 0
        if loop is not None:
            codes = system.encode_loop(np.ascontiguousarray(loop.T))
            self._state = system.prime(
                codes,
                tokens,
                temperature=params.temperature,
                top_k=params.top_k,
                cfg_musiccoca=params.guidance_weight,
                state=self._state,
            ).state
            self._skip = system.output_latency_frames * SAMPLES_PER_FRAME  # the loop's own end, decoded late
        self.rate = params.target_sample_rate
        self._resampler: Any = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(SAMPLE_RATE, self.rate, CHANNELS, dtype="float32")
        self._pending = np.zeros((CHANNELS, 0), np.float32)  # generated at the target rate, not yet sent
        self._sent = 0
        self.index = 0
        self.generated_seconds = 0.0

    def update(
        self,
        *,
        tokens: list[int] | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        guidance_weight: float | None = None,
    ) -> None:
        """New style or sampling knobs, from the next second generated (None: unchanged)."""
        if tokens is not None:
            self._tokens = tokens
        for name, value in (("temperature", temperature), ("top_k", top_k), ("cfg_musiccoca", guidance_weight)):
            if value is not None:
                self._knobs[name] = value

    def next_chunk(self) -> Chunk:
        """The next bar-exact chunk of the stream."""
        index = self.index + 1
        wanted = self.params.chunk_end(index, self.rate) - self._sent
        while self._pending.shape[1] < wanted:
            self._pending = np.concatenate([self._pending, self._second()], axis=1)
        samples = np.ascontiguousarray(self._pending[:, :wanted])
        self._pending = self._pending[:, wanted:]
        self._sent += wanted
        self.index = index
        return Chunk(index=index, samples=samples, metadata=self._metadata(wanted))

    def _second(self) -> Samples:
        """One more second of the stream at the target rate, levelled (may be a little less or more at
        44.1 kHz: the resampler's own latency)."""
        generated = self._system.generate(
            self._tokens,
            FRAMES_PER_SECOND,
            temperature=float(self._knobs["temperature"]),
            top_k=int(self._knobs["top_k"]),
            cfg_musiccoca=float(self._knobs["cfg_musiccoca"]),
            state=self._state,
        )
        self._state = generated.state
        self.generated_seconds += 1.0
        samples = np.ascontiguousarray(generated.samples.T)  # (channels, n) at SAMPLE_RATE
        if self._skip:
            dropped = min(self._skip, samples.shape[1])
            samples, self._skip = samples[:, dropped:], self._skip - dropped
        if self._gain is None:
            self._gain = _gain_for(samples)
        levelled = soft_limit((samples * np.float32(self._gain)).astype(np.float32))
        if self._resampler is None:
            return levelled
        resampled = self._resampler.resample_chunk(np.ascontiguousarray(levelled.T))
        out: Samples = np.ascontiguousarray(np.asarray(resampled, dtype=np.float32).T)
        return out

    def _metadata(self, total: int) -> ChunkMetadata:
        params = self.params
        return ChunkMetadata(
            bpm=round(params.bpm),
            bpm_exact=params.bpm,
            bars=params.bars_per_chunk,
            beats_per_bar=params.beats_per_bar,
            sample_rate=self.rate,
            channels=CHANNELS,
            total_samples=total,
            seconds_per_bar=params.seconds_per_bar,
            loop_duration_seconds=params.chunk_seconds,
            guidance_weight=float(self._knobs["cfg_musiccoca"]),
            temperature=float(self._knobs["temperature"]),
            topk=int(self._knobs["top_k"]),
        )


def _gain_for(samples: Samples) -> float:
    """The session's gain: what brings its first audio to TARGET_LUFS, at most MAX_GAIN_DB either way (1.0
    for audio too quiet or too short to measure)."""
    measured = measure_loudness(samples, SAMPLE_RATE) if samples.shape[1] >= SAMPLE_RATE // 2 else -math.inf
    if not math.isfinite(measured):
        return 1.0
    decibels = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, TARGET_LUFS - measured))
    return float(10.0 ** (decibels / 20.0))
