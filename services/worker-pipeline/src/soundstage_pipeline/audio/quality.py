"""How good a transition sounds, measured on the finished audio around it (the soundtrack's quality loop).

Four measures, as musicgen-api names them, each with the threshold a transition must meet (the README's
soundtrack section documents them):

- ``mfcc_similarity`` (> 0.7): cosine similarity of the mean MFCCs (timbre, coefficients 1-19; c0 is
  loudness) of the two seconds before the crossfade and the two seconds after it.
- ``spectral_flux`` (< 2.5): the largest frame-to-frame spectral rise inside the transition (the crossfade
  and a quarter second either side) divided by the 95th percentile of the same measure in the audio
  around it: 1 means the transition changes no faster than the music already does; a jump, a click or a
  new instrument slamming in shows as a multiple.
- ``chroma_continuity`` (> 0.5): Pearson correlation of the mean chroma (pitch-class profile) before and
  after: the harmony carries on. When neither side has a pitch profile (both flat: drums, noise), there is
  no harmony to break and the score is 1.
- ``energy_ratio`` (< 2.0): the louder side's RMS over the quieter side's: no sudden drop or jump in level.
  Silence on one side gives :data:`MAX_ENERGY_RATIO`.

Arrays are float32 ``(channels, samples)`` at ``sample_rate`` Hz.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from soundstage.audio import resample
from soundstage.audio.crossfade import mono
from soundstage_pipeline.audio.compile_lock import first_call_locked

ANALYSIS_RATE = 22050
CONTEXT_SECONDS = 2.0
"""Audio compared on each side of a transition."""
EDGE_SECONDS = 0.25
"""How far past the crossfade's edges the flux of the transition is measured."""
SILENCE_RMS = 10 ** (-60 / 20)
"""Below -60 dBFS a side counts as silent."""
MAX_ENERGY_RATIO = 1000.0
FLAT_CHROMA = 0.05
"""A mean chroma whose spread (std / mean) is below this has no pitch profile."""

THRESHOLDS = {"mfcc_similarity": 0.7, "spectral_flux": 2.5, "chroma_continuity": 0.5, "energy_ratio": 2.0}
HIGHER_IS_BETTER = {"mfcc_similarity": True, "spectral_flux": False, "chroma_continuity": True, "energy_ratio": False}


@dataclass(frozen=True)
class TransitionScores:
    mfcc_similarity: float
    spectral_flux: float
    chroma_continuity: float
    energy_ratio: float

    def failures(self) -> list[str]:
        """The measures that miss their threshold."""
        return [name for name, value in asdict(self).items() if not _meets(name, value)]

    @property
    def passed(self) -> bool:
        return not self.failures()

    @property
    def badness(self) -> float:
        """How far the measures are from their thresholds, summed (0 when all are met): lower is better.
        The quality loop keeps the attempt with the lowest."""
        total = 0.0
        for name, value in asdict(self).items():
            threshold = THRESHOLDS[name]
            if HIGHER_IS_BETTER[name]:
                total += max(0.0, threshold - value) / threshold
            else:
                total += max(0.0, math.log(max(value, 1e-9) / threshold))
        return total

    def as_dict(self) -> dict[str, float]:
        return {name: round(value, 4) for name, value in asdict(self).items()}


def _meets(name: str, value: float) -> bool:
    threshold = THRESHOLDS[name]
    return value > threshold if HIGHER_IS_BETTER[name] else value < threshold


def score_transition(audio: np.ndarray, sample_rate: int, start: int, end: int) -> TransitionScores:
    """Scores of the transition whose crossfade spans samples ``[start, end)`` of ``audio`` (the finished
    mix around it, float32 (channels, n)); the context compared is what ``audio`` holds of the two
    seconds on each side."""
    if not 0 <= start < end <= audio.shape[-1]:
        raise ValueError(f"transition [{start}, {end}) is outside the audio of {audio.shape[-1]} samples")
    context = round(CONTEXT_SECONDS * sample_rate)
    before = mono(audio[:, max(start - context, 0) : start])
    after = mono(audio[:, end : end + context])
    edge = round(EDGE_SECONDS * sample_rate)
    return TransitionScores(
        mfcc_similarity=_mfcc_similarity(before, after, sample_rate),
        spectral_flux=_flux_ratio(mono(audio), sample_rate, max(start - edge, 0), min(end + edge, audio.shape[-1])),
        chroma_continuity=_chroma_continuity(before, after, sample_rate),
        energy_ratio=_energy_ratio(before, after),
    )


def _silent(signal: np.ndarray) -> bool:
    return signal.size == 0 or float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) < SILENCE_RMS


def _analysed(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    # float32 always: another dtype would compile another specialisation, outside the compile lock
    analysed: np.ndarray = resample(signal[None], sample_rate, ANALYSIS_RATE)[0].astype(np.float32, copy=False)
    return analysed


@first_call_locked
def _mean_mfcc(analysed: np.ndarray) -> np.ndarray:
    """Mean MFCCs 1-19 of ``analysed`` (float32 at ANALYSIS_RATE). librosa is used only in these three
    helpers, under the compile lock."""
    import librosa

    mean: np.ndarray = librosa.feature.mfcc(y=analysed, sr=ANALYSIS_RATE, n_mfcc=20)[1:].mean(axis=1)
    return mean


@first_call_locked
def _magnitude(analysed: np.ndarray, hop: int) -> np.ndarray:
    """STFT magnitude (2048-point frames, ``hop`` apart) of ``analysed``."""
    import librosa

    magnitude: np.ndarray = np.abs(librosa.stft(analysed, n_fft=2048, hop_length=hop))
    return magnitude


@first_call_locked
def _mean_chroma(analysed: np.ndarray) -> np.ndarray:
    """Mean chroma (12 pitch classes) of ``analysed``."""
    import librosa

    mean: np.ndarray = librosa.feature.chroma_stft(y=analysed, sr=ANALYSIS_RATE).mean(axis=1)
    return mean


def _mfcc_similarity(before: np.ndarray, after: np.ndarray, sample_rate: int) -> float:
    if _silent(before) or _silent(after):
        return 0.0
    means = [_mean_mfcc(_analysed(side, sample_rate)) for side in (before, after)]
    norm = float(np.linalg.norm(means[0]) * np.linalg.norm(means[1]))
    return float(np.dot(means[0], means[1]) / norm) if norm > 0 else 0.0


def _flux_ratio(signal: np.ndarray, sample_rate: int, lo: int, hi: int) -> float:
    hop = 512
    magnitude = _magnitude(_analysed(signal, sample_rate), hop)
    flux = np.sqrt(np.sum(np.square(np.clip(np.diff(magnitude, axis=1), 0, None)), axis=0))
    scale = ANALYSIS_RATE / sample_rate / hop
    first, last = int(lo * scale), max(math.ceil(hi * scale), int(lo * scale) + 1)
    inside = flux[first:last]
    outside = np.concatenate([flux[:first], flux[last:]])
    if inside.size == 0:
        return 0.0
    typical = float(np.percentile(outside, 95)) if outside.size else 0.0
    peak = float(inside.max())
    if typical <= 0:
        return 0.0 if peak <= 0 else MAX_ENERGY_RATIO
    return peak / typical


def _chroma_continuity(before: np.ndarray, after: np.ndarray, sample_rate: int) -> float:
    if _silent(before) or _silent(after):
        return 0.0
    profiles = [_mean_chroma(_analysed(side, sample_rate)) for side in (before, after)]
    flat = [float(np.std(p) / (np.mean(p) + 1e-12)) < FLAT_CHROMA for p in profiles]
    if all(flat):
        return 1.0
    if any(float(np.std(p)) == 0 for p in profiles):
        return 0.0
    return float(np.corrcoef(profiles[0], profiles[1])[0, 1])


def _energy_ratio(before: np.ndarray, after: np.ndarray) -> float:
    levels = [
        float(np.sqrt(np.mean(np.square(side, dtype=np.float64)))) if side.size else 0.0 for side in (before, after)
    ]
    quiet, loud = min(levels), max(levels)
    if loud < SILENCE_RMS:
        return 1.0  # both silent: no jump in level
    if quiet < SILENCE_RMS:
        return MAX_ENERGY_RATIO
    return min(loud / quiet, MAX_ENERGY_RATIO)


def warm_up() -> None:
    """Score one transition of a short click track: compiles (or loads) the measures' numba kernels at
    start-up instead of in the first soundtrack's quality loop."""
    rate = ANALYSIS_RATE
    clicks = np.zeros((1, rate * 6), dtype=np.float32)
    clicks[0, :: rate // 2] = 1.0
    score_transition(clicks, rate, rate * 3, rate * 4)
