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


def spectral_flux(samples: np.ndarray, frame: int = 1024) -> np.ndarray:
    """Positive spectral change between consecutive frames of mono `samples` (one value per boundary)."""
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame) * np.hanning(frame)
    magnitude = np.abs(np.fft.rfft(frames, axis=1))
    return np.asarray(np.sqrt((np.clip(np.diff(magnitude, axis=0), 0, None) ** 2).sum(axis=1)))


def assert_seamless_at(samples: np.ndarray, joins_at: list[int], frame: int = 1024) -> None:
    """No click (sample-to-sample jump) and no spectral jump at each join that stands out from
    the rest of the piece (99.9th / 99th percentile of the whole)."""
    jumps = np.abs(np.diff(samples))
    typical_jump = np.percentile(jumps, 99.9)
    flux = spectral_flux(samples, frame)
    typical_flux = np.percentile(flux, 99)
    for join in joins_at:
        assert jumps[join - 64 : join + 64].max() <= typical_jump, f"click at sample {join}"
        index = join // frame
        assert flux[index - 1 : index + 1].max() <= typical_flux, f"spectral jump at sample {join}"
