"""Beats and tempo of a piece of audio (librosa's beat tracker), with a measure of how steady the pulse is.

Arrays are float32 ``(channels, samples)`` at ``sample_rate`` Hz; times are seconds from the array's start.

The tracker always finds beats, even in noise (it prefers a regular grid). So every estimate comes with
its ``pulse_clarity``: the autocorrelation of the onset envelope at one beat period, normalised by its
value at lag 0. A click track or a drum groove scores 0.5-1; noise and pads score near 0. Tempo matching
and beat snapping only trust a pulse above :data:`MIN_PULSE_CLARITY`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstage.audio import resample
from soundstage.audio.crossfade import mono
from soundstage_pipeline.audio.compile_lock import first_call_locked

ANALYSIS_RATE = 22050
"""Audio is analysed at this rate (librosa's default): beats need no more, and it halves the work at 44.1 kHz."""
HOP = 256
"""Onset-envelope hop: 11.6 ms frames at 22.05 kHz, the precision of a beat time."""
MIN_BEATS = 4
MIN_PULSE_CLARITY = 0.3


@dataclass(frozen=True)
class BeatAnalysis:
    beats: np.ndarray
    """Beat times in seconds (float64, ascending)."""
    bpm: float | None
    """Tempo from the beat grid (the slope of beat time against beat number, so it is finer than one frame);
    None with fewer than MIN_BEATS beats."""
    pulse_clarity: float
    """0-1: how clearly the onsets repeat at the beat period (see the module docstring)."""

    @property
    def steady(self) -> bool:
        """Whether the pulse is clear enough to match tempos and snap cuts to."""
        return self.bpm is not None and self.pulse_clarity >= MIN_PULSE_CLARITY


def analyse_beats(samples: np.ndarray, sample_rate: int) -> BeatAnalysis:
    """Beats, tempo and pulse clarity of ``samples`` (float32, (channels, n)) at ``sample_rate`` Hz."""
    # float32 always: another dtype would compile another specialisation, outside the compile lock
    signal = resample(mono(samples)[None], sample_rate, ANALYSIS_RATE)[0].astype(np.float32, copy=False)
    if signal.size < HOP * 8 or not np.any(signal):
        return BeatAnalysis(beats=np.zeros(0), bpm=None, pulse_clarity=0.0)
    envelope, frames, beats = _track(signal)
    if beats.size < MIN_BEATS:
        return BeatAnalysis(beats=beats, bpm=None, pulse_clarity=0.0)
    slope = float(np.polyfit(np.arange(beats.size), beats, 1)[0])
    period_frames = float(np.median(np.diff(frames)))
    return BeatAnalysis(
        beats=beats,
        bpm=60.0 / slope if slope > 0 else None,
        pulse_clarity=_pulse_clarity(envelope, period_frames),
    )


@first_call_locked
def _track(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The onset envelope of ``signal`` (float32 at ANALYSIS_RATE), its beats' frame numbers and times.
    librosa is imported and used here only, under the compile lock."""
    import librosa

    envelope = librosa.onset.onset_strength(y=signal, sr=ANALYSIS_RATE, hop_length=HOP)
    _, found = librosa.beat.beat_track(onset_envelope=envelope, sr=ANALYSIS_RATE, hop_length=HOP, units="frames")
    frames = np.asarray(found, dtype=np.int64)
    beats = librosa.frames_to_time(frames, sr=ANALYSIS_RATE, hop_length=HOP).astype(np.float64)
    return envelope, frames, beats


def _pulse_clarity(envelope: np.ndarray, period_frames: float) -> float:
    centred = envelope - envelope.mean()
    energy = float(np.dot(centred, centred))
    if energy <= 0 or period_frames < 1:
        return 0.0
    lag = round(period_frames)
    best = 0.0
    for candidate in (lag - 1, lag, lag + 1):  # the period is a whole number of frames only roughly
        if 1 <= candidate < centred.size:
            best = max(best, float(np.dot(centred[:-candidate], centred[candidate:])) / energy)
    return max(0.0, min(best, 1.0))


def nearest_beat(beats: np.ndarray, time_s: float, lo: float, hi: float) -> float | None:
    """The beat time nearest to ``time_s`` within ``[lo, hi]``; None when no beat lies there."""
    inside = beats[(beats >= lo) & (beats <= hi)]
    if inside.size == 0:
        return None
    return float(inside[np.argmin(np.abs(inside - time_s))])


def warm_up() -> None:
    """Run the tracker once on a short click track: librosa compiles its numba kernels on first use
    (5-30 s), which a worker pays at start-up instead of in its first job."""
    rate = ANALYSIS_RATE
    clicks = np.zeros((1, rate * 3), dtype=np.float32)
    clicks[0, :: rate // 2] = 1.0
    analyse_beats(clicks, rate)
