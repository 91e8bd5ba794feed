"""Pure audio helpers on float32 arrays of shape (channels, samples) with an explicit sample rate."""

from soundstage.audio.decode import DEFAULT_MAX_SECONDS, AudioInfo, DecodedAudio, decode_audio, probe_audio
from soundstage.audio.encode import EncodedAudio, encode_audio
from soundstage.audio.loudness import (
    PEAK_CEILING_DBFS,
    limit_peaks,
    measure_loudness,
    normalize_loudness,
    normalize_loudness_limited,
    true_peak,
)
from soundstage.audio.resample import resample, to_channels

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "PEAK_CEILING_DBFS",
    "AudioInfo",
    "DecodedAudio",
    "EncodedAudio",
    "decode_audio",
    "encode_audio",
    "limit_peaks",
    "measure_loudness",
    "normalize_loudness",
    "normalize_loudness_limited",
    "probe_audio",
    "resample",
    "to_channels",
    "true_peak",
]
