"""Integrated loudness (ITU-R BS.1770-4, as EBU R 128 uses it) and loudness normalisation.

Arrays are float32 of shape (channels, samples) with the sample rate passed alongside.
"""

from __future__ import annotations

import math

import numpy as np

from soundstage.audio.resample import resample

PEAK_CEILING_DBFS = -1.0
"""Normalised audio never peaks above this, measured as true peak (4x oversampled)."""

_BLOCK_SECONDS = 0.4  # BS.1770 gating block
_OVERSAMPLING = 4  # BS.1770 annex 2: true peak from 4x oversampling
_MAX_CHANNELS = 5  # BS.1770 weights: L, R, C, Ls, Rs


def measure_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``samples`` (float32, (channels, n)) at ``sample_rate`` Hz.

    Gated as BS.1770-4 specifies (absolute gate -70 LUFS, relative gate -10 LU). Silence
    gives ``-inf``. Audio shorter than one 400 ms gating block is measured looped to one
    block, which keeps its mean power. At most 5 channels (L, R, C, Ls, Rs).
    """
    if samples.ndim != 2 or not 1 <= samples.shape[0] <= _MAX_CHANNELS:
        raise ValueError(f"expected (channels, samples) with 1-{_MAX_CHANNELS} channels, got shape {samples.shape}")
    if samples.shape[1] == 0 or not np.any(samples):
        return -math.inf
    block = math.ceil(_BLOCK_SECONDS * sample_rate) + 1
    if samples.shape[1] < block:
        samples = np.tile(samples, (1, math.ceil(block / samples.shape[1])))
    import pyloudnorm  # imported here: it pulls in scipy.signal (~0.6 s), which the API never needs

    meter = pyloudnorm.Meter(sample_rate)
    return float(meter.integrated_loudness(samples.T.astype(np.float64)))


def true_peak(samples: np.ndarray, sample_rate: int) -> float:
    """Largest absolute value of ``samples`` (float32, (channels, n)) 4x oversampled, linear."""
    if samples.size == 0:
        return 0.0
    oversampled = resample(samples, sample_rate, sample_rate * _OVERSAMPLING)
    return float(max(np.max(np.abs(oversampled)), np.max(np.abs(samples))))


def normalize_loudness(samples: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """``samples`` (float32, (channels, n)) at ``sample_rate`` Hz with one gain applied so that
    their integrated loudness is ``target_lufs``; float32, same shape.

    The gain is then lowered, never raised, so that the true peak stays at or below
    -1 dBFS: a loud target on very dynamic audio comes out quieter than asked rather
    than clipped. Silence (loudness ``-inf``) is returned unchanged.
    """
    loudness = measure_loudness(samples, sample_rate)
    if not math.isfinite(loudness):
        return samples
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    ceiling = 10.0 ** (PEAK_CEILING_DBFS / 20.0)
    peak = true_peak(samples, sample_rate) * gain
    if peak > ceiling:
        # A hair under the ceiling so float32 rounding cannot land above it.
        gain *= ceiling / peak * (1.0 - 1e-6)
    return (samples * np.float32(gain)).astype(np.float32, copy=False)
