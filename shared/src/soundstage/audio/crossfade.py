"""Crossfades and edit points on float32 arrays of shape (channels, samples), all at one sample rate.

- :func:`equal_power_fades`: the sine/cosine pair whose powers sum to one at every sample, so a
  crossfade between two uncorrelated signals of equal loudness keeps that loudness (a linear
  crossfade dips by 3 dB in the middle).
- :func:`nearest_zero_crossing`: edit points where the waveform passes through zero, so that a cut
  or the start of a fade never makes a step (a click).
- :func:`nearest_meeting_point`: where two waveforms cross each other, so that switching from one to
  the other at once (the bass swap of a stem-aware crossfade) makes no step either.
- :func:`stem_crossfade`: every stem with its own curve: equal-power fades, but the bass swapped at
  one point, as gradual bass crossfades sound muddy.

Positions are sample indices into the arrays given; nothing here knows about scenes or files.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BASS_STEM = "bass"


def equal_power_fades(length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fade_out, fade_in)``, float32 of ``length`` samples: ``cos(t·π/2)`` and ``sin(t·π/2)`` with ``t``
    at each sample's centre, ``(i + 0.5) / length``, so ``fade_out² + fade_in² == 1`` at every sample and the
    pair is symmetric (``fade_in`` reversed is ``fade_out``)."""
    if length <= 0:
        raise ValueError(f"a crossfade needs at least one sample, got {length}")
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return np.cos(t * np.pi / 2).astype(np.float32), np.sin(t * np.pi / 2).astype(np.float32)


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Equal-power crossfade of two windows of the same shape ``(channels, n)``: ``outgoing`` fades out
    while ``incoming`` fades in, over all ``n`` samples. float32, same shape."""
    _check_pair(outgoing, incoming)
    fade_out, fade_in = equal_power_fades(outgoing.shape[-1])
    mixed: np.ndarray = (outgoing * fade_out + incoming * fade_in).astype(np.float32, copy=False)
    return mixed


def mono(samples: np.ndarray) -> np.ndarray:
    """The mean of the channels, ``(n,)`` float32: what edit points are chosen on."""
    if samples.ndim != 2:
        raise ValueError(f"expected (channels, samples), got shape {samples.shape}")
    averaged: np.ndarray = samples.mean(axis=0, dtype=np.float32)
    return averaged


def nearest_zero_crossing(signal: np.ndarray, index: int, radius: int) -> int:
    """The sample index within ``radius`` of ``index`` where the 1-D ``signal`` crosses zero, nearest to
    ``index`` (an exact zero counts). At a crossing between samples ``i - 1`` and ``i`` the one with the
    smaller magnitude is returned. ``index`` itself when there is none in reach (silence, or a low note
    whose half period is longer than the radius)."""
    return _nearest_sign_change(signal, index, radius)


def nearest_meeting_point(first: np.ndarray, second: np.ndarray, index: int, radius: int) -> int:
    """The index within ``radius`` of ``index`` where two 1-D signals of the same length cross each other
    (``first - second`` changes sign), nearest to ``index``: switching from ``first`` to ``second`` there
    makes the smallest step. ``index`` itself when they never cross in reach."""
    if first.shape != second.shape:
        raise ValueError(f"signals differ in shape: {first.shape} and {second.shape}")
    return _nearest_sign_change(first - second, index, radius)


def stem_crossfade(
    outgoing: Mapping[str, np.ndarray], incoming: Mapping[str, np.ndarray], *, swap_at: int, swap_fade: int
) -> np.ndarray:
    """A crossfade built stem by stem, over windows of the same shape ``(channels, n)``.

    ``outgoing`` and ``incoming`` map the same stem names to their windows, and together with a
    ``residual`` entry (the mix minus its stems, so that stems plus residual are the mix exactly) each
    side sums to its mix: at the first sample the result is the outgoing mix, at the last the incoming
    one. Every stem fades with the equal-power curves, except ``bass``: the outgoing bass plays until
    ``swap_at`` and the incoming bass from there, joined by an equal-power fade of ``swap_fade`` samples
    centred on it (a handful of milliseconds, so the swap is instant to the ear but makes no step).
    """
    if set(outgoing) != set(incoming):
        raise ValueError(f"stems differ: {sorted(outgoing)} and {sorted(incoming)}")
    shapes = {array.shape for array in (*outgoing.values(), *incoming.values())}
    if len(shapes) != 1:
        raise ValueError(f"stem windows differ in shape: {sorted(shapes)}")
    length = next(iter(shapes))[-1]
    if not 0 <= swap_at <= length:
        raise ValueError(f"swap point {swap_at} is outside the window of {length} samples")
    fade_out, fade_in = equal_power_fades(length)
    swap_out, swap_in = _swap_curves(length, swap_at, swap_fade)
    mixed = np.zeros(next(iter(shapes)), dtype=np.float32)
    for stem, out_window in outgoing.items():
        curves = (swap_out, swap_in) if stem == BASS_STEM else (fade_out, fade_in)
        mixed += out_window * curves[0] + incoming[stem] * curves[1]
    return mixed


def _swap_curves(length: int, swap_at: int, swap_fade: int) -> tuple[np.ndarray, np.ndarray]:
    """Gains that hold the outgoing signal until ``swap_at`` and the incoming one after, with an
    equal-power fade of ``swap_fade`` samples centred on ``swap_at`` (clipped to the window)."""
    out_gain = np.ones(length, dtype=np.float32)
    in_gain = np.zeros(length, dtype=np.float32)
    half = max(swap_fade, 1) // 2
    start, end = max(swap_at - half, 0), min(swap_at - half + max(swap_fade, 1), length)
    out_gain[end:] = 0.0
    in_gain[end:] = 1.0
    if end > start:
        fade_out, fade_in = equal_power_fades(end - start)
        out_gain[start:end], in_gain[start:end] = fade_out, fade_in
    return out_gain, in_gain


def _nearest_sign_change(signal: np.ndarray, index: int, radius: int) -> int:
    if signal.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {signal.shape}")
    if not 0 <= index <= signal.shape[0]:
        raise ValueError(f"index {index} is outside the signal of {signal.shape[0]} samples")
    lo, hi = max(index - radius, 1), min(index + radius, signal.shape[0] - 1)
    if hi < lo:
        return index
    window = signal[lo - 1 : hi + 1]
    sign = np.signbit(window)
    # Candidate i (lo <= i <= hi): the sign differs from the sample before, or the sample is zero.
    changes = np.flatnonzero((sign[1:] != sign[:-1]) | (window[1:] == 0)) + lo
    if changes.size == 0:
        return index
    best = int(changes[np.argmin(np.abs(changes - index))])
    # The crossing lies between best - 1 and best: take the sample nearer to zero.
    if abs(float(signal[best - 1])) < abs(float(signal[best])):
        best -= 1
    return best


def _check_pair(first: np.ndarray, second: np.ndarray) -> None:
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"expected two windows of one (channels, n) shape, got {first.shape} and {second.shape}")
