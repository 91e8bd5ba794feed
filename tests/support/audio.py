"""Checks on downloaded audio: decode it for real and look at what is inside."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 (channels, n)
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.samples, dtype=np.float64))))


def decode(data: bytes) -> DecodedAudio:
    frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return DecodedAudio(samples=frames.T, sample_rate=int(rate))


def read_with_wave_module(data: bytes) -> tuple[int, int, int, int]:
    """(rate, sample width in bytes, channels, frames) as Python's `wave` sees the file."""
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getframerate(), reader.getsampwidth(), reader.getnchannels(), reader.getnframes()


def assert_not_silent(audio: DecodedAudio, minimum_rms: float = 1e-3) -> None:
    assert audio.rms > minimum_rms, f"audio is silent (RMS {audio.rms:.2e})"
