"""Resampling, channel conversion and loudness normalisation on (channels, samples) float32 arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soundstage.audio import (
    PEAK_CEILING_DBFS,
    limit_peaks,
    measure_loudness,
    normalize_loudness,
    normalize_loudness_limited,
    resample,
    to_channels,
    true_peak,
)
from tests.support.audio_files import dominant_frequency, synth


def _peak_dbfs(samples: np.ndarray) -> float:
    return 20 * math.log10(float(np.max(np.abs(samples))))


# ------------------------------------------------------------------- resample


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(32000, 44100), (32000, 48000), (48000, 32000), (44100, 8000), (8000, 22050)]
)
@pytest.mark.parametrize("channels", [1, 2])
def test_resample_scales_the_length_and_keeps_the_pitch(from_rate: int, to_rate: int, channels: int) -> None:
    original = synth(from_rate, channels, 2.0)
    converted = resample(original, from_rate, to_rate)
    assert converted.dtype == np.float32 and converted.flags.c_contiguous
    assert converted.shape[0] == channels
    assert abs(converted.shape[1] - original.shape[1] * to_rate / from_rate) <= 1
    assert abs(dominant_frequency(converted, to_rate) - 440.0) < 1.0
    # Level is kept (away from the edges, where the filter settles).
    middle = slice(to_rate // 4, -to_rate // 4)
    rms_in = float(np.sqrt(np.mean(np.square(original[:, from_rate // 4 : -from_rate // 4]))))
    assert float(np.sqrt(np.mean(np.square(converted[:, middle])))) == pytest.approx(rms_in, rel=0.02)


def test_resample_keeps_channels_apart() -> None:
    left = synth(32000, 1, 1.0, frequency=440.0)
    right = synth(32000, 1, 1.0, frequency=1000.0)
    converted = resample(np.concatenate([left, right]), 32000, 48000)
    assert abs(dominant_frequency(converted[:1], 48000) - 440.0) < 2.0
    assert abs(dominant_frequency(converted[1:], 48000) - 1000.0) < 2.0


def test_resample_to_the_same_rate_is_the_identity() -> None:
    original = synth(32000, 2, 0.1)
    assert resample(original, 32000, 32000) is original


def test_resample_of_nothing_is_nothing() -> None:
    assert resample(np.zeros((2, 0), dtype=np.float32), 32000, 48000).shape == (2, 0)


@pytest.mark.parametrize("shape", [(100,), (1, 2, 3), (0, 10)])
def test_resample_refuses_arrays_that_are_not_channels_by_samples(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="channels, samples"):
        resample(np.zeros(shape, dtype=np.float32), 32000, 48000)


def test_resample_refuses_rates_that_are_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros((1, 10), dtype=np.float32), 0, 48000)


# ---------------------------------------------------------------- to_channels


def test_mono_mixdown_is_the_mean() -> None:
    stereo = np.array([[1.0, 0.5, -1.0], [0.0, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_channels(stereo, 1), [[0.5, 0.5, 0.0]])
    assert to_channels(stereo, 1).dtype == np.float32


def test_mono_to_stereo_duplicates() -> None:
    mono = np.array([[0.1, -0.2, 0.3]], dtype=np.float32)
    np.testing.assert_array_equal(to_channels(mono, 2), np.concatenate([mono, mono]))


def test_same_channel_count_is_unchanged() -> None:
    stereo = synth(8000, 2, 0.1)
    assert to_channels(stereo, 2) is stereo


def test_surround_to_stereo_keeps_every_channel_in_the_mix() -> None:
    surround = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 4), dtype=np.float32)
    # Front left/right, each mixed half and half with the mean of the other four (3.5).
    np.testing.assert_allclose(to_channels(surround, 2), [[1.75] * 4, [2.25] * 4])


def test_stereo_to_four_channels_repeats_in_order() -> None:
    stereo = np.array([[1.0], [2.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_channels(stereo, 4), [[1.0], [2.0], [1.0], [2.0]])


def test_to_channels_refuses_zero_channels() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        to_channels(synth(8000, 1, 0.1), 0)


# ------------------------------------------------------------------- loudness


@pytest.mark.parametrize("target", [-23.0, -14.0, -9.0])
@pytest.mark.parametrize(("rate", "channels"), [(32000, 1), (44100, 2), (48000, 2)])
def test_normalize_hits_the_target(target: float, rate: int, channels: int) -> None:
    quiet = synth(rate, channels, 3.0) * np.float32(0.05)
    normalized = normalize_loudness(quiet, rate, target)
    assert normalized.dtype == np.float32 and normalized.shape == quiet.shape
    assert measure_loudness(normalized, rate) == pytest.approx(target, abs=0.5)
    assert _peak_dbfs(normalized) <= PEAK_CEILING_DBFS


def test_normalize_turns_loud_audio_down() -> None:
    loud = np.clip(synth(32000, 2, 3.0) * np.float32(2.4), -1, 1)
    assert measure_loudness(loud, 32000) > -6
    assert measure_loudness(normalize_loudness(loud, 32000, -20.0), 32000) == pytest.approx(-20.0, abs=0.5)


def test_normalize_never_exceeds_minus_one_dbfs_true_peak() -> None:
    """Sparse clicks have a high crest factor: reaching -5 LUFS would clip them, so the gain
    stops where the true peak reaches -1 dBFS and the result is quieter than asked."""
    rate = 32000
    clicks = np.zeros((2, rate * 3), dtype=np.float32)
    clicks[:, :: rate // 10] = 0.1
    clicks += synth(rate, 2, 3.0) * np.float32(0.001)
    normalized = normalize_loudness(clicks, rate, -5.0)
    assert 20 * math.log10(true_peak(normalized, rate)) <= PEAK_CEILING_DBFS + 1e-4
    assert _peak_dbfs(normalized) <= PEAK_CEILING_DBFS
    assert measure_loudness(normalized, rate) < -5.5


def test_silence_is_returned_unchanged() -> None:
    silence = np.zeros((2, 32000), dtype=np.float32)
    assert measure_loudness(silence, 32000) == -math.inf
    assert normalize_loudness(silence, 32000, -14.0) is silence


def test_audio_shorter_than_one_gating_block_is_measured() -> None:
    short = synth(32000, 1, 0.1)  # 100 ms: a quarter of a 400 ms block
    longer = np.tile(short, (1, 20))
    assert measure_loudness(short, 32000) == pytest.approx(measure_loudness(longer, 32000), abs=0.2)
    assert measure_loudness(normalize_loudness(short, 32000, -16.0), 32000) == pytest.approx(-16.0, abs=0.5)


def test_a_full_scale_1khz_sine_reads_about_minus_3_lufs() -> None:
    """BS.1770's reference point: a 0 dBFS 997 Hz sine on one channel is -3.01 LUFS."""
    rate = 48000
    sine = np.sin(2 * np.pi * 997 * np.arange(rate * 2) / rate).astype(np.float32)[None, :]
    assert measure_loudness(sine, rate) == pytest.approx(-3.01, abs=0.1)


def test_loudness_refuses_more_than_five_channels() -> None:
    with pytest.raises(ValueError, match="1-5 channels"):
        measure_loudness(np.zeros((6, 32000), dtype=np.float32), 32000)


def test_limited_normalisation_reaches_the_target_under_the_true_peak_ceiling() -> None:
    """Where a plain gain stops short of the target (its peaks would pass -1 dBFS), the limiter gets there."""
    rate = 32000
    audio = np.random.default_rng(0).normal(0, 0.04, (2, rate * 20)).astype(np.float32)
    audio[:, ::4000] = 0.9  # sparse loud peaks: a high crest factor
    assert measure_loudness(normalize_loudness(audio, rate, -14.0), rate) < -16.0
    limited = normalize_loudness_limited(audio, rate, -14.0)
    assert measure_loudness(limited, rate) == pytest.approx(-14.0, abs=0.15)
    assert 20 * math.log10(true_peak(limited, rate)) <= PEAK_CEILING_DBFS + 1e-4
    # Quiet enough already: only the gain, no limiting.
    quiet = normalize_loudness_limited(audio, rate, -24.0)
    np.testing.assert_allclose(quiet, normalize_loudness(audio, rate, -24.0), rtol=1e-5, atol=1e-7)
    silence = np.zeros((1, rate), dtype=np.float32)
    assert normalize_loudness_limited(silence, rate, -14.0) is silence


def test_the_limiter_keeps_every_true_peak_under_its_ceiling_and_leaves_the_rest() -> None:
    rate = 32000
    t = np.arange(rate) / rate
    audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
    audio[0, rate // 2 : rate // 2 + 50] += 0.9
    ceiling = 10 ** (-1 / 20)
    limited = limit_peaks(audio, rate, ceiling)
    assert true_peak(limited, rate) <= ceiling * 1.001
    far = np.r_[0 : rate // 2 - 400, rate // 2 + 2000 : rate]  # beyond the look-ahead and the release
    np.testing.assert_array_equal(limited[0, far], audio[0, far])
