"""Audio on the soundtrack's timeline: slicing tracks, joining a continuation to what it continues, and
choosing where a crossfade goes. Pure functions on float32 (channels, n) arrays; positions are timeline
samples (see soundtrack.models)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstage.audio.crossfade import mono, nearest_zero_crossing

MICRO_JOIN_SECONDS = 0.03
"""Where a continuation takes over from the audio it continues, the two are crossfaded over this long: the
continuation's first samples follow the codec's re-synthesis of its prompt, not the prompt itself, so a
butt joint could click. The two are nearly the same signal, so this fade is linear (equal gain): an
equal-power fade would swell by 3 dB over correlated signals."""
EDGE_RADIUS_SECONDS = 0.005
"""How far a crossfade's edges move to land on zero crossings."""


def span(audio: np.ndarray, audio_start: int, lo: int, hi: int) -> np.ndarray:
    """Timeline samples ``[lo, hi)`` of ``audio`` laid at ``audio_start``; ValueError outside it."""
    first, last = lo - audio_start, hi - audio_start
    if first < 0 or last > audio.shape[-1] or last < first:
        raise ValueError(
            f"timeline [{lo}, {hi}) is outside the audio at [{audio_start}, {audio_start + audio.shape[-1]})"
        )
    return audio[:, first:last]


def join_continuation(
    base: np.ndarray, base_start: int, continuation: np.ndarray, continuation_start: int, *, join: int, rate: int
) -> np.ndarray:
    """``base`` (laid at ``base_start``) until timeline sample ``join``, then ``continuation`` (laid at
    ``continuation_start``, holding its re-synthesised prompt before ``join``), micro-crossfaded just before
    ``join``. The result is laid at ``base_start`` and ends where ``continuation`` ends."""
    fade = min(round(MICRO_JOIN_SECONDS * rate), join - base_start, join - continuation_start)
    head = span(base, base_start, base_start, join - fade)
    tail = span(continuation, continuation_start, join, continuation_start + continuation.shape[-1])
    if fade <= 0:
        return np.concatenate([head, tail], axis=-1)
    fade_in = (np.arange(fade, dtype=np.float32) + 0.5) / fade
    overlap = (
        span(base, base_start, join - fade, join) * (1 - fade_in)
        + span(continuation, continuation_start, join - fade, join) * fade_in
    )
    return np.concatenate([head, overlap.astype(np.float32), tail], axis=-1)


@dataclass(frozen=True)
class Cut:
    centre: int
    beat: int | None
    start: int
    end: int
    incoming_shift: int
    """The incoming side is read this many samples later than laid, so it crosses zero at ``start``."""


def choose_cut(
    outgoing: np.ndarray,
    outgoing_start: int,
    incoming: np.ndarray,
    incoming_start: int,
    *,
    boundary: int,
    snap: int,
    crossfade: int,
    lo: int,
    hi: int,
    beats: np.ndarray | None,
    rate: int,
) -> Cut:
    """Where a crossfade of ``crossfade`` samples goes between two sides laid on the timeline.

    Its centre is ``boundary``, moved onto the nearest of ``beats`` (timeline samples) within ``snap``
    when there are beats; the window stays inside ``[lo, hi)``. Then its edges land on zero crossings: the
    end where the outgoing side crosses zero (the whole window moves with it, by at most
    EDGE_RADIUS_SECONDS), the start where the incoming one does (the incoming side is moved by at most as
    much to cross zero there, so the crossfade stays exactly ``crossfade`` samples long)."""
    if hi - lo < crossfade:
        raise ValueError(f"a crossfade of {crossfade} samples does not fit in [{lo}, {hi})")
    half = crossfade // 2
    earliest, latest = lo + half, hi - (crossfade - half)
    centre = min(max(boundary, earliest), latest)
    beat = None
    if beats is not None and beats.size:
        reach = beats[(beats >= max(boundary - snap, earliest)) & (beats <= min(boundary + snap, latest))]
        if reach.size:
            beat = int(reach[np.argmin(np.abs(reach - boundary))])
            centre = beat
    radius = round(EDGE_RADIUS_SECONDS * rate)
    end = centre - half + crossfade
    end = _within(nearest_zero_crossing(mono(outgoing), end - outgoing_start, radius) + outgoing_start,
                  earliest - half + crossfade, latest - half + crossfade)  # fmt: skip
    start = end - crossfade
    incoming_mono = mono(incoming)
    position = start - incoming_start
    crossing = nearest_zero_crossing(incoming_mono, position, min(radius, position, incoming_mono.size - position - 1))
    return Cut(centre=start + half, beat=beat, start=start, end=end, incoming_shift=crossing - position)


def _within(value: int, lo: int, hi: int) -> int:
    return min(max(value, lo), hi)
