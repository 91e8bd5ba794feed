"""Encode float32 audio to the formats clients download (soundfile / libsndfile)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from soundstage.schemas.common import AudioFormat

# (libsndfile container, subtype). WAV and FLAC are 16-bit integer PCM: existing clients
# read WAV with Python's `wave` module, which rejects float WAV.
_SOUNDFILE_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.WAV: ("WAV", "PCM_16"),
    AudioFormat.FLAC: ("FLAC", "PCM_16"),
    AudioFormat.OGG: ("OGG", "VORBIS"),
    AudioFormat.MP3: ("MP3", "MPEG_LAYER_III"),
}

CONTENT_TYPES: dict[AudioFormat, str] = {
    AudioFormat.WAV: "audio/wav",
    AudioFormat.FLAC: "audio/flac",
    AudioFormat.OGG: "audio/ogg",
    AudioFormat.MP3: "audio/mpeg",
}


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    content_type: str
    extension: str
    sample_rate: int
    channels: int
    duration_s: float


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> EncodedAudio:
    """Encode `samples` (float32, shape (channels, n), values in [-1, 1]) at `sample_rate` Hz."""
    if samples.ndim != 2:
        raise ValueError(f"expected (channels, samples), got shape {samples.shape}")
    channels, length = samples.shape
    container, subtype = _SOUNDFILE_FORMATS[fmt]
    buffer = io.BytesIO()
    frames = np.ascontiguousarray(np.clip(samples, -1.0, 1.0).T, dtype=np.float32)
    sf.write(buffer, frames, sample_rate, format=container, subtype=subtype)
    return EncodedAudio(
        data=buffer.getvalue(),
        content_type=CONTENT_TYPES[fmt],
        extension=fmt.value,
        sample_rate=sample_rate,
        channels=channels,
        duration_s=length / sample_rate,
    )
