"""Writing stems as they stream out of the engine: source mapping, rate, channels, format, residual.

A :class:`StemWriter` receives blocks of the model's sources (sources, channels, n) at the model's rate,
in order, and writes one file per requested stem into a folder, never holding a whole stem in memory:
sources are mapped to the requested stems, de-normalised output is converted to the output channel
count, resampled with a streaming soxr resampler, and appended to each file through libsndfile.

Two-stem mode writes `vocals` and `accompaniment = input - vocals`, computed on the output grid: for
16-bit WAV/FLAC on the quantised samples themselves, so the two files add up to the (quantised) input
exactly; for MP3/OGG the two signals add up exactly before the lossy encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from soundstage.audio import resample, to_channels
from soundstage.schemas.common import AudioFormat

ACCOMPANIMENT = "accompaniment"
PCM16_SCALE = 32768.0  # libsndfile reads 16-bit PCM as k / 32768; quantising with the same scale round-trips
_FOLDED_INTO_OTHER = ("guitar", "piano")  # a six-source model asked for four stems

_CONTAINERS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.WAV: ("WAV", "PCM_16"),
    AudioFormat.FLAC: ("FLAC", "PCM_16"),
    AudioFormat.OGG: ("OGG", "VORBIS"),
    AudioFormat.MP3: ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class StemFile:
    stem: str
    path: Path
    frames: int
    sample_rate: int
    channels: int


def source_matrix(stems: Sequence[str], sources: Sequence[str]) -> np.ndarray:
    """(model stems x sources) 0/1 matrix: which sources add up to each modelled stem. `other` also takes
    a six-source model's guitar and piano when they are not asked for; `accompaniment` is no source."""
    matrix = np.zeros((len(stems), len(sources)), dtype=np.float32)
    for row, stem in enumerate(stems):
        matrix[row, sources.index(stem)] = 1.0
        if stem == "other":
            for extra in _FOLDED_INTO_OTHER:
                if extra in sources and extra not in stems:
                    matrix[row, sources.index(extra)] = 1.0
    return matrix


class StemWriter:
    def __init__(
        self,
        folder: Path,
        *,
        stems: Sequence[str],
        sources: Sequence[str],
        model_rate: int,
        out_rate: int,
        out_channels: int,
        fmt: AudioFormat,
        expected_frames: int,
        reference: np.ndarray | None = None,
    ) -> None:
        """`reference`: the input at `out_rate` with `out_channels` (channels, frames), needed for
        `accompaniment`. `expected_frames`: each file's exact length at `out_rate`."""
        self.stems = list(stems)
        self.modelled = [stem for stem in self.stems if stem != ACCOMPANIMENT]
        self._matrix = source_matrix(self.modelled, sources)
        self._residual = ACCOMPANIMENT in self.stems
        if self._residual and (reference is None or "vocals" not in self.modelled):
            raise ValueError("accompaniment needs the vocals stem and the input as reference")
        self._reference = reference
        self._out_rate = out_rate
        self._channels = out_channels
        self._fmt = fmt
        self._pcm = _CONTAINERS[fmt][1] == "PCM_16"
        self._expected = expected_frames
        self._written = 0
        self._resampler = (
            soxr.ResampleStream(model_rate, out_rate, len(self.modelled) * out_channels, dtype="float32")
            if model_rate != out_rate
            else None
        )
        container, subtype = _CONTAINERS[fmt]
        self.paths = {stem: folder / f"{stem}.{fmt.value}" for stem in self.stems}
        self._files = {
            stem: sf.SoundFile(path, "w", out_rate, out_channels, subtype, format=container)
            for stem, path in self.paths.items()
        }

    def write(self, block: np.ndarray) -> None:
        """Append the model's sources (sources, model channels, n) at the model's rate."""
        stems = np.einsum("ts,scn->tcn", self._matrix, block)
        stems = np.stack([to_channels(stem, self._channels) for stem in stems])
        self._append(self._resample(stems, last=False))

    def close(self) -> list[StemFile]:
        """Flush the resampler, pad to the exact length, close the files; the stems in request order."""
        try:
            if self._resampler is not None:
                empty = np.zeros((len(self.modelled), self._channels, 0), np.float32)
                self._append(self._resample(empty, last=True))
            missing = self._expected - self._written
            if missing > 0:
                self._append(np.zeros((len(self.modelled), self._channels, missing), np.float32))
        finally:
            for file in self._files.values():
                file.close()
        return [StemFile(stem, self.paths[stem], self._expected, self._out_rate, self._channels) for stem in self.stems]

    def abort(self) -> None:
        for file in self._files.values():
            file.close()

    def _resample(self, stems: np.ndarray, *, last: bool) -> np.ndarray:
        if self._resampler is None:
            return stems
        count, channels, frames = stems.shape
        interleaved = np.ascontiguousarray(stems.reshape(count * channels, frames).T)
        out = self._resampler.resample_chunk(interleaved, last=last)
        return np.ascontiguousarray(out.T).reshape(count, channels, -1)

    def _append(self, stems: np.ndarray) -> None:
        frames = min(stems.shape[-1], self._expected - self._written)
        if frames <= 0:
            return
        stems = stems[..., :frames]
        start, end = self._written, self._written + frames
        outputs = {stem: self._encodable(samples) for stem, samples in zip(self.modelled, stems, strict=True)}
        if self._residual and self._reference is not None:
            reference = self._reference[:, start:end]
            if reference.shape[-1] < frames:  # the resampled input may be a sample short
                reference = np.pad(reference, ((0, 0), (0, frames - reference.shape[-1])))
            outputs[ACCOMPANIMENT] = self._encodable(reference, minus=outputs["vocals"])
        for stem, data in outputs.items():
            self._files[stem].write(data.T)
        self._written = end

    def _encodable(self, samples: np.ndarray, minus: np.ndarray | None = None) -> np.ndarray:
        """Samples as written: int16 for PCM formats (quantised here, so residuals are exact), else clipped float."""
        if self._pcm:
            quantised = np.rint(np.clip(samples, -1.0, 1.0) * PCM16_SCALE).astype(np.int32)
            if minus is not None:
                quantised -= minus.astype(np.int32)
            pcm: np.ndarray = np.clip(quantised, -32768, 32767).astype(np.int16)
            return pcm
        clipped = np.clip(samples, -1.0, 1.0).astype(np.float32)
        if minus is not None:
            clipped = np.clip(clipped - minus, -1.0, 1.0).astype(np.float32)
        result: np.ndarray = clipped
        return result


def reference_at(samples: np.ndarray, from_rate: int, to_rate: int, channels: int) -> np.ndarray:
    """The input as the residual needs it: at the output rate and channel count."""
    mixed = to_channels(samples, channels)
    return resample(mixed, from_rate, to_rate) if from_rate != to_rate else mixed
