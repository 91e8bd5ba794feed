"""Tempo matching: which stretch brings a tempo to the soundtrack's, and the stretch itself (Rubber Band).

pyrubberband runs Debian's ``rubberband`` command line program (package ``rubberband-cli``), which
changes the speed of audio without changing its pitch.
"""

from __future__ import annotations

import math

import numpy as np

OCTAVE_RATIOS = (0.5, 1.0, 2.0)
"""A piece in half or double time of the soundtrack's tempo is matched to that relation, not forced to the
same number of beats per minute (a 62 BPM ballad against 120 BPM is matched to 60)."""


def stretch_ratio(tempo: float, target: float, *, threshold: float, max_stretch: float) -> float:
    """The speed factor (>1 faster) that brings ``tempo`` to ``target`` (or half or double it, whichever is
    nearest); 1.0 when the two are within ``threshold`` (a fraction, 0.04 = 4 %) or when matching would need a
    change of more than ``max_stretch`` (a fraction too), which would be audible as a different piece."""
    if tempo <= 0 or target <= 0:
        return 1.0
    candidates = [target * ratio / tempo for ratio in OCTAVE_RATIOS]
    ratio = min(candidates, key=lambda value: abs(math.log(value)))
    if abs(ratio - 1.0) <= threshold or abs(ratio - 1.0) > max_stretch:
        return 1.0
    return ratio


def time_stretch(samples: np.ndarray, sample_rate: int, ratio: float) -> np.ndarray:
    """``samples`` (float32, (channels, n)) played ``ratio`` times faster without changing pitch:
    float32, (channels, about n / ratio). ``ratio == 1`` returns the input unchanged."""
    if ratio == 1.0:
        return samples
    import pyrubberband

    stretched = pyrubberband.time_stretch(np.ascontiguousarray(samples.T), sample_rate, ratio)
    frames = np.asarray(stretched, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[:, None]
    return np.ascontiguousarray(frames.T)
