"""The soundtrack's audio building blocks on synthetic signals: equal-power crossfades, zero crossings, the
stem-aware crossfade, where a cut goes, beats and tempo, tempo matching, and the quality scores."""

from __future__ import annotations

import numpy as np
import pytest

from soundstage.audio.crossfade import (
    crossfade,
    equal_power_fades,
    nearest_meeting_point,
    nearest_zero_crossing,
    stem_crossfade,
)
from soundstage_pipeline.audio.beats import analyse_beats
from soundstage_pipeline.audio.quality import score_transition
from soundstage_pipeline.audio.stretch import stretch_ratio, time_stretch
from soundstage_pipeline.soundtrack.timeline import choose_cut, join_continuation

RATE = 32000


def tone(frequency: float, seconds: float, phase: float = 0.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t + phase)).astype(np.float32)[None]


def clicks(bpm: float, seconds: float, first: float = 0.25) -> np.ndarray:
    """A click track: a 1 kHz blip (decaying in 4 ms) on every beat from ``first`` seconds."""
    audio = np.zeros(round(seconds * RATE), dtype=np.float32)
    blip = np.sin(2 * np.pi * 1000 * np.arange(640) / RATE) * np.exp(-np.arange(640) / (0.004 * RATE))
    for beat in np.arange(first, seconds - 0.05, 60.0 / bpm):
        start = round(beat * RATE)
        audio[start : start + 640] += blip[: audio.size - start].astype(np.float32)
    return audio[None]


# ---------------------------------------------------------------- crossfades


def test_equal_power_fades_keep_the_power_and_are_symmetric() -> None:
    fade_out, fade_in = equal_power_fades(1000)
    np.testing.assert_allclose(fade_out**2 + fade_in**2, 1.0, atol=1e-6)
    np.testing.assert_allclose(fade_in[::-1], fade_out, atol=1e-6)
    assert fade_out[0] > 0.999 and fade_in[0] < 0.002 and fade_in[-1] > 0.999


def test_crossfading_two_uncorrelated_signals_keeps_their_loudness() -> None:
    """No dip in the middle (a linear crossfade of uncorrelated noise loses 3 dB there)."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(0, 0.1, (1, RATE)).astype(np.float32) for _ in range(2))
    mixed = crossfade(a, b)
    middle = slice(RATE // 2 - 1600, RATE // 2 + 1600)
    ratio = np.sqrt(np.mean(mixed[0, middle] ** 2)) / np.sqrt(np.mean(a[0, middle] ** 2))
    assert 0.93 < ratio < 1.07
    linear = a * np.linspace(1, 0, RATE, dtype=np.float32) + b * np.linspace(0, 1, RATE, dtype=np.float32)
    assert np.sqrt(np.mean(linear[0, middle] ** 2)) / np.sqrt(np.mean(a[0, middle] ** 2)) < 0.75


def test_zero_crossings_and_meeting_points() -> None:
    signal = tone(100.0, 0.1)[0]  # crosses zero every 160 samples
    found = nearest_zero_crossing(signal, 1000, 100)
    assert found in (960, 1120) and abs(signal[found]) < 0.01
    assert nearest_zero_crossing(np.ones(500, np.float32), 250, 100) == 250  # none in reach
    other = tone(100.0, 0.1, phase=np.pi / 2)[0]
    meet = nearest_meeting_point(signal, other, 1000, 200)
    assert abs(signal[meet] - other[meet]) < 0.01


def test_the_stem_crossfade_starts_and_ends_on_each_side_and_swaps_the_bass_at_once() -> None:
    length, swap = 3200, 1600
    outgoing = {"bass": tone(60, 0.1), "drums": tone(300, 0.1), "residual": tone(900, 0.1, amplitude=0.05)}
    incoming = {"bass": tone(90, 0.1), "drums": tone(400, 0.1), "residual": tone(1100, 0.1, amplitude=0.05)}
    mixed = stem_crossfade(outgoing, incoming, swap_at=swap, swap_fade=160)
    out_mix, in_mix = sum(outgoing.values()), sum(incoming.values())
    assert mixed.shape == (1, length)
    np.testing.assert_allclose(mixed[:, 0], out_mix[:, 0], atol=2e-3)
    np.testing.assert_allclose(mixed[:, -1], in_mix[:, -1], atol=2e-3)
    # Before the swap (less its 5 ms fade) only the outgoing bass plays, after it only the incoming one.
    drums = crossfade(outgoing["drums"], incoming["drums"]) + crossfade(outgoing["residual"], incoming["residual"])
    np.testing.assert_allclose((mixed - drums)[:, : swap - 80], outgoing["bass"][:, : swap - 80], atol=1e-5)
    np.testing.assert_allclose((mixed - drums)[:, swap + 80 :], incoming["bass"][:, swap + 80 :], atol=1e-5)


def test_a_continuation_takes_over_where_it_was_joined_without_a_step() -> None:
    base = tone(440, 1.0)
    continuation = tone(440, 1.0)[:, RATE // 2 :] * 0.98  # a slightly different re-synthesis
    joined = join_continuation(base, 0, continuation, RATE // 2, join=RATE * 3 // 4, rate=RATE)
    assert joined.shape == (1, RATE)
    np.testing.assert_array_equal(joined[:, : RATE // 2], base[:, : RATE // 2])
    np.testing.assert_array_equal(joined[:, RATE * 3 // 4 :], continuation[:, RATE // 4 :])
    assert np.abs(np.diff(joined[0])).max() < 0.045  # the tone's own steepest step: no click, no swell


# -------------------------------------------------------------------- cuts


def test_the_cut_is_exactly_the_crossfade_long_and_lands_on_zero_crossings() -> None:
    outgoing, incoming = tone(440, 4.0), tone(660, 4.0, phase=1.0)
    crossfade_samples = 2 * RATE
    cut = choose_cut(
        outgoing, 0, incoming, 0,
        boundary=2 * RATE, snap=RATE // 2, crossfade=crossfade_samples, lo=0, hi=4 * RATE, beats=None, rate=RATE,
    )  # fmt: skip
    assert cut.end - cut.start == crossfade_samples
    assert abs(cut.centre - 2 * RATE) <= 0.005 * RATE + 1 and cut.beat is None
    assert abs(outgoing[0, cut.end]) < 0.02  # the outgoing side leaves at a zero crossing
    assert abs(incoming[0, cut.start + cut.incoming_shift]) < 0.02  # the incoming side enters at one
    assert abs(cut.incoming_shift) <= 0.005 * RATE


def test_the_cut_snaps_to_the_nearest_beat_in_reach_and_stays_inside_its_room() -> None:
    outgoing = clicks(120, 8.0) + tone(220, 8.0, amplitude=0.05)
    incoming = tone(330, 8.0, amplitude=0.05)
    beats = np.round(analyse_beats(outgoing, RATE).beats * RATE).astype(np.int64)
    boundary = round(4.1 * RATE)  # clicks every 0.5 s from 0.25 s: the nearest is at 4.25 s
    cut = choose_cut(
        outgoing, 0, incoming, 0,
        boundary=boundary, snap=RATE // 2, crossfade=RATE, lo=0, hi=8 * RATE, beats=beats, rate=RATE,
    )  # fmt: skip
    assert cut.beat is not None and abs(cut.beat / RATE - 4.25) < 0.03
    assert abs(cut.centre - cut.beat) <= 0.005 * RATE + 1
    near_edge = choose_cut(
        outgoing, 0, incoming, 0,
        boundary=round(7.9 * RATE), snap=RATE // 2, crossfade=RATE, lo=0, hi=8 * RATE, beats=beats, rate=RATE,
    )  # fmt: skip
    assert near_edge.end <= 8 * RATE and near_edge.end - near_edge.start == RATE
    with pytest.raises(ValueError, match="does not fit"):
        choose_cut(
            outgoing, 0, incoming, 0, boundary=RATE, snap=0, crossfade=RATE, lo=0, hi=RATE - 1, beats=None, rate=RATE
        )


# ------------------------------------------------------------ beats, tempo


@pytest.mark.parametrize("bpm", [100.0, 120.0, 87.0])
def test_the_tempo_of_a_click_track_is_found_within_half_a_percent(bpm: float) -> None:
    analysis = analyse_beats(clicks(bpm, 12.0), RATE)
    assert analysis.steady and analysis.bpm is not None
    assert abs(analysis.bpm - bpm) / bpm < 0.005


def test_noise_has_no_steady_pulse() -> None:
    noise = np.random.default_rng(1).normal(0, 0.1, (1, 10 * RATE)).astype(np.float32)
    assert not analyse_beats(noise, RATE).steady
    assert not analyse_beats(np.zeros((1, 10 * RATE), np.float32), RATE).steady


def test_stretch_ratios_are_octave_aware_and_bounded() -> None:
    assert stretch_ratio(100, 120, threshold=0.04, max_stretch=0.25) == pytest.approx(1.2)
    assert stretch_ratio(121, 120, threshold=0.04, max_stretch=0.25) == 1.0  # within the threshold
    assert stretch_ratio(62, 120, threshold=0.04, max_stretch=0.25) == 1.0  # half time, close enough
    assert stretch_ratio(56, 120, threshold=0.04, max_stretch=0.25) == pytest.approx(60 / 56)
    assert stretch_ratio(90, 120, threshold=0.04, max_stretch=0.25) == 1.0  # a third off: left alone


def test_a_100_bpm_click_track_is_stretched_to_120_bpm_without_changing_pitch() -> None:
    stretched = time_stretch(clicks(100, 12.0), RATE, 1.2)
    assert abs(stretched.shape[-1] - 10 * RATE) < 0.01 * RATE
    analysis = analyse_beats(stretched, RATE)
    assert analysis.bpm is not None and abs(analysis.bpm - 120) / 120 < 0.02
    spectrum = np.abs(np.fft.rfft(time_stretch(tone(440, 2.0), RATE, 1.2)[0]))
    assert abs(np.fft.rfftfreq(round(2 * RATE / 1.2), 1 / RATE)[np.argmax(spectrum)] - 440) < 5


# ------------------------------------------------------------------ scores


def test_a_smooth_transition_passes_and_one_into_silence_fails() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.1, (1, 6 * RATE)).astype(np.float32)
    smooth = score_transition(noise, RATE, 2 * RATE, 4 * RATE)
    assert smooth.passed, smooth
    into_silence = noise.copy()
    into_silence[:, 4 * RATE :] = 0.0
    scores = score_transition(into_silence, RATE, 2 * RATE, 4 * RATE)
    assert not scores.passed and "energy_ratio" in scores.failures()
    assert scores.badness > smooth.badness


def test_a_key_change_breaks_chroma_continuity() -> None:
    chord_c = tone(261.6, 6.0, amplitude=0.2) + tone(329.6, 6.0, amplitude=0.2) + tone(392.0, 6.0, amplitude=0.2)
    chord_fs = tone(370.0, 6.0, amplitude=0.2) + tone(466.2, 6.0, amplitude=0.2) + tone(277.2, 6.0, amplitude=0.2)
    joined = np.concatenate([chord_c[:, : 3 * RATE], chord_fs[:, 3 * RATE :]], axis=-1)
    same = score_transition(chord_c, RATE, 2 * RATE, 4 * RATE)
    changed = score_transition(joined, RATE, 2 * RATE, 4 * RATE)
    assert same.chroma_continuity > 0.9 and changed.chroma_continuity < 0.5
