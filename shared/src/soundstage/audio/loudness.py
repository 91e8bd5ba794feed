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
    return float(_true_peak_envelope(samples, sample_rate).max())


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


LIMITER_LOOKAHEAD_SECONDS = 0.005
"""The limiter starts turning the gain down this long before a peak (no overshoot, no click)."""
LIMITER_RELEASE_SECONDS = 0.05
"""...and holds it this long after, so the gain does not follow the waveform (which would distort it)."""
_LOUDNESS_TOLERANCE_LU = 0.1
_LIMITER_PASSES = 8


def normalize_loudness_limited(samples: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """``samples`` (float32, (channels, n)) at ``target_lufs`` integrated loudness AND a true peak at or below
    -1 dBFS: a gain, then a look-ahead true-peak limiter on whatever the gain would push past the ceiling.
    The limiter takes a little loudness away, so the gain is raised by that much and the two applied again
    until the loudness is within 0.1 LU (or as close as limiting gets: a target louder than the audio's
    density allows, such as -8 LUFS on noise, stops where more limiting adds no loudness). Unlike
    :func:`normalize_loudness`, dynamic audio reaches the target too, at the price of its loudest peaks
    being limited. Silence is returned unchanged."""
    loudness = measure_loudness(samples, sample_rate)
    if not math.isfinite(loudness):
        return samples
    ceiling = 10.0 ** (PEAK_CEILING_DBFS / 20.0)
    gain_db = target_lufs - loudness
    out = samples
    for _ in range(_LIMITER_PASSES):
        gained = (samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)
        out = limit_peaks(gained, sample_rate, ceiling)
        reached = measure_loudness(out, sample_rate)
        if abs(reached - target_lufs) <= _LOUDNESS_TOLERANCE_LU:
            break
        gain_db += target_lufs - reached
    peak = true_peak(out, sample_rate)
    if peak > ceiling:  # what the limiter's envelope could not see: never past the ceiling
        out = (out * np.float32(ceiling / peak * (1.0 - 1e-6))).astype(np.float32, copy=False)
    return out


def limit_peaks(samples: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """A look-ahead brickwall limiter on the true peak: ``samples`` (float32, (channels, n)) with one gain
    for all channels such that their true peak (4x oversampled, as BS.1770 measures it) stays at or below
    ``ceiling`` (linear). The gain needed at each peak is spread over the LIMITER_LOOKAHEAD_SECONDS before
    it (a moving average of a running minimum, which never exceeds what any sample in reach needs) and held
    for LIMITER_RELEASE_SECONDS after it."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    level = _true_peak_envelope(samples, sample_rate)
    if level.size == 0 or float(level.max()) <= ceiling:
        return samples
    # A hair under the ceiling: the gain changes within a sample, which the envelope does not see.
    needed = np.minimum(1.0, ceiling * (1.0 - 1e-3) / np.maximum(level, 1e-12)).astype(np.float32)
    attack = max(round(LIMITER_LOOKAHEAD_SECONDS * sample_rate), 1)
    release = max(round(LIMITER_RELEASE_SECONDS * sample_rate), attack)
    # Minimum over [t - release, t + attack]: a sample's gain is no more than any nearby peak needs.
    held = minimum_filter1d(needed, size=attack + release + 1, origin=(release - attack) // 2, mode="nearest")
    gain = np.minimum(uniform_filter1d(held, size=attack + 1, mode="nearest"), needed)
    limited: np.ndarray = (samples * gain.astype(np.float32)).astype(np.float32, copy=False)
    return limited


_ENVELOPE_BLOCK = 1 << 18
"""Samples oversampled at a time: an hour of audio is never held 4x oversampled at once."""
_ENVELOPE_PAD = 256
"""Context on each side of a block, so the resampling filter's edges fall outside what is kept."""


def _true_peak_envelope(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per sample, the largest value any channel reaches around it when 4x oversampled, (n,) float32;
    computed block by block, so memory stays flat whatever the length."""
    frames = samples.shape[-1]
    envelope: np.ndarray = np.abs(samples).max(axis=0).astype(np.float32)
    for start in range(0, frames, _ENVELOPE_BLOCK):
        end = min(start + _ENVELOPE_BLOCK, frames)
        lo, hi = max(start - _ENVELOPE_PAD, 0), min(end + _ENVELOPE_PAD, frames)
        oversampled = np.abs(resample(samples[:, lo:hi], sample_rate, sample_rate * _OVERSAMPLING)).max(axis=0)
        first = (start - lo) * _OVERSAMPLING
        count = min(end - start, (oversampled.size - first) // _OVERSAMPLING)
        grouped = oversampled[first : first + count * _OVERSAMPLING].reshape(count, _OVERSAMPLING).max(axis=1)
        envelope[start : start + count] = np.maximum(envelope[start : start + count], grouped)
    return envelope
