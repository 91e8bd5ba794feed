"""One jam's stream on a loaded model: its own stream state (sessions share the model, never a state), cut
into bar-exact chunks that join without a click.

The model generates one continuous stream; chunk k is the stream's samples between the
bar-exact ends of chunks k-1 and k (``JamParams.chunk_end``), so no sample is dropped, repeated or faded,
and rounding never accumulates into drift. Everything done to the audio keeps it continuous: one gain for
the whole session (SESSION_GAIN), a static soft limit above LIMIT_KNEE (a function of each sample alone: no
gain steps) applied last, and, for 44.1 kHz, one streaming resampler for the whole session (soxr), never a
resampler per chunk. Each chunk generates only the frames it still needs, so style and sampling changes
(``update``) are heard from the start of the next chunk (but for the part of a frame left over).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundstage.schemas.jam import ChunkMetadata, JamParams
from soundstage_magenta.system import CHANNELS, SAMPLE_RATE, SAMPLES_PER_FRAME, MagentaSystem

SESSION_GAIN = 2.0
"""+6 dB: undoes the fixed 0.5 Magenta RT writes with, so a jam plays at the level the model makes (one gain
for the whole session: a gain measured and changed on the way would be heard as a step)."""
LIMIT_KNEE = 0.9
CROSSFADE_SECONDS = 0.04
"""How long the old stream fades out under the new one at a reseed."""
Samples = np.ndarray[Any, np.dtype[np.float32]]


class Unchanged:
    """``JamSession.update``'s default for the style: keep it (None means no style conditioning)."""


UNCHANGED = Unchanged()


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
        gain: float = SESSION_GAIN,
    ) -> None:
        """A stream from ``params.seed`` in the style ``tokens`` (None: unconditioned); ``loop`` ((2, n) at
        SAMPLE_RATE, its end in whole frames) primes it so that the jam continues the loop. ``gain``: the
        session's one gain."""
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

    def update(
        self,
        *,
        tokens: list[int] | Unchanged | None = UNCHANGED,
        temperature: float | None = None,
        top_k: int | None = None,
        guidance_weight: float | None = None,
    ) -> None:
        """New style (``tokens``; None: no style conditioning) or sampling knobs (None: unchanged), from the
        next second generated."""
        if not isinstance(tokens, Unchanged):
            self._tokens = tokens
        for name, value in (("temperature", temperature), ("top_k", top_k), ("cfg_musiccoca", guidance_weight)):
            if value is not None:
                self._knobs[name] = value

    def reseed(self, prime: Samples, *, seed: int) -> None:
        """Start the stream again from ``prime`` ((2, n) at SAMPLE_RATE, its end in whole frames: a loop, or
        what the client hears), sampling from ``seed``, heard from the next chunk. The old stream's next
        CROSSFADE_SECONDS fade out under the new one's start (equal power), so the switch has no click; the
        chunk boundaries stay where they were (bar-exact)."""
        fade = max(1, round(CROSSFADE_SECONDS * self.rate))
        while self._pending.shape[1] < fade:
            self._pending = np.concatenate([self._pending, self._generate(1)], axis=1)
        old = self._pending
        codes = self._system.encode_loop(np.ascontiguousarray(prime.T))
        self._state = self._system.prime(
            codes,
            self._tokens,
            temperature=float(self._knobs["temperature"]),
            top_k=int(self._knobs["top_k"]),
            cfg_musiccoca=float(self._knobs["cfg_musiccoca"]),
            state=self._system.new_state(seed),
        ).state
        self._skip = self._system.output_latency_frames * SAMPLES_PER_FRAME
        new = np.zeros((CHANNELS, 0), np.float32)
        while new.shape[1] < old.shape[1]:
            missing = (old.shape[1] - new.shape[1]) * SAMPLE_RATE / self.rate
            frames = max(1, math.ceil((missing + self._skip) / SAMPLES_PER_FRAME))
            new = np.concatenate([new, self._generate(frames)], axis=1)
        ramp = np.linspace(0.0, np.pi / 2, fade, dtype=np.float32)
        mixed = old[:, :fade] * np.cos(ramp) + new[:, :fade] * np.sin(ramp)
        self._pending = np.concatenate([mixed.astype(np.float32), new[:, fade:]], axis=1)

    def next_chunk(self) -> Chunk:
        """The next bar-exact chunk of the stream. Only the frames it still needs are generated (what is left
        over is less than a frame, plus at 44.1 kHz the resampler's delay), so an ``update`` made before
        it is heard from its start."""
        index = self.index + 1
        wanted = self.params.chunk_end(index, self.rate) - self._sent
        knobs = dict(self._knobs)
        while self._pending.shape[1] < wanted:
            missing = (wanted - self._pending.shape[1]) * SAMPLE_RATE / self.rate
            frames = max(1, math.ceil((missing + self._skip) / SAMPLES_PER_FRAME))
            self._pending = np.concatenate([self._pending, self._generate(frames)], axis=1)
        samples = np.ascontiguousarray(self._pending[:, :wanted])
        self._pending = self._pending[:, wanted:]
        self._sent += wanted
        self.index = index
        return Chunk(index=index, samples=samples, metadata=self._metadata(wanted, knobs))

    def _generate(self, frames: int) -> Samples:
        """``frames`` more frames of the stream, levelled, at the target rate (at 44.1 kHz a little less or
        more: the streaming resampler's own delay)."""
        generated = self._system.generate(
            self._tokens,
            frames,
            temperature=float(self._knobs["temperature"]),
            top_k=int(self._knobs["top_k"]),
            cfg_musiccoca=float(self._knobs["cfg_musiccoca"]),
            state=self._state,
        )
        self._state = generated.state
        samples = np.ascontiguousarray(generated.samples.T)  # (channels, n) at SAMPLE_RATE
        if self._skip:
            dropped = min(self._skip, samples.shape[1])
            samples, self._skip = samples[:, dropped:], self._skip - dropped
        samples = (samples * np.float32(self._gain)).astype(np.float32)
        if self._resampler is not None:
            resampled = self._resampler.resample_chunk(np.ascontiguousarray(samples.T))
            samples = np.ascontiguousarray(np.asarray(resampled, dtype=np.float32).T)
        return soft_limit(samples)  # after resampling: its overshoot is limited too

    def _metadata(self, total: int, knobs: dict[str, float]) -> ChunkMetadata:
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
            guidance_weight=float(knobs["cfg_musiccoca"]),
            temperature=float(knobs["temperature"]),
            topk=int(knobs["top_k"]),
        )
