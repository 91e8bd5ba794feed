"""Decode user audio (uploads, prompts) to float32 arrays of shape (channels, samples).

libsndfile (through soundfile) reads WAV, FLAC, OGG (Vorbis, Opus) and MP3; anything it
does not recognise goes to FFmpeg through PyAV, whose wheels bundle FFmpeg, so M4A/AAC
and WebM/Matroska decode without system packages. Decoding user audio is validation: a
file that does not decode, holds no samples or is longer than allowed raises an
:class:`~soundstage.errors.AppError` with a stable code and HTTP status 422.

Audio bombs (a few KB of FLAC claiming 8 channels at 384 kHz for minutes) are bounded three ways:

- **a sample budget**: channels x frames may not pass ``max_seconds`` of stereo at 96 kHz
  (SAMPLE_BUDGET_PER_SECOND), checked against the header's claim before any decoding and again while
  decoding (a header may lie);
- **decoding to what the consumer needs**: with ``sample_rate``/``channels`` each block is downmixed and
  resampled (a libsoxr stream) as it is decoded, so memory is bounded by the model's input, not by the
  file's claims;
- **a CPU budget** (``cpu_seconds``, the API's probe): decoding that takes longer is refused.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from soundstage.audio.resample import to_channels
from soundstage.errors import AppError, ErrorCode

logger = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 3600.0
"""Decoded-length cap when the caller gives none (the largest MAX_DURATION allowed): guards
against decompression bombs (a few MB of FLAC or AAC silence decode to hours of audio).
Callers that know a tighter limit pass it, as the API does with MAX_DURATION."""

MAX_CHANNELS = 32
MAX_SAMPLE_RATE = 384_000

SAMPLE_BUDGET_PER_SECOND = 2 * 96_000
"""Decoded samples (channels x frames) allowed per second of ``max_seconds``: stereo at 96 kHz, so that
hi-res masters pass (no model needs more than stereo at 48 kHz). A 40 s file of 8 channels at 384 kHz
holds as many samples as 640 s of stereo at 96 kHz."""

_EXACT_HEADERS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF"})
"""libsndfile formats whose header states the exact length (MP3 and Ogg lengths are estimates)."""

PROBE_CPU_SECONDS = 20.0
"""CPU time the API's probe may spend on one file (its own thread's time). The sample budget keeps real
files far below it (60 s of stereo 48 kHz FLAC probes in 0.08 s, 1,800 s in about 2.5 s)."""

_BLOCK_FRAMES = 65_536

# FFmpeg demuxers PyAV may use. A whitelist, because FFmpeg also knows playlist and
# concatenation formats (HLS, concat) that open further files or URLs named inside the
# upload. `mov` covers MP4/M4A/3GP; `matroska` covers WebM (what browsers record).
_FFMPEG_DEMUXERS = "mov,aac,mp3,ogg,flac,wav,matroska,aiff,caf,w64"

# libsndfile major format -> file extension of the stored original.
_SOUNDFILE_EXTENSIONS = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "MPEG": "mp3", "MP3": "mp3"}
_FFMPEG_EXTENSIONS = {"mov": "m4a", "matroska": "webm", "aac": "aac"}


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded audio: ``samples`` float32, shape (channels, n), at ``sample_rate`` Hz.

    ``format`` is a short lowercase name of the container as detected from the content
    (``wav``, ``flac``, ``ogg``, ``mp3``, ``m4a``, ``aac``, ``webm``, ...): letters and
    digits only, so it is safe as a file extension.
    """

    samples: np.ndarray
    sample_rate: int
    format: str
    source_rate: int = 0  # the file's own rate, channels and length (0: the same as ``samples``)
    source_channels: int = 0
    source_frames: int = 0

    @property
    def source_duration(self) -> float:
        """Length of the file in seconds (before any resampling)."""
        if not self.source_rate:
            return self.duration
        return self.source_frames / self.source_rate

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` learns from decoding a file without keeping its samples."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def probe_audio(
    data: bytes | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS, cpu_seconds: float | None = PROBE_CPU_SECONDS
) -> AudioInfo:
    """Validate a whole audio file exactly as :func:`decode_audio` does (same errors), decoding it block
    by block without keeping the samples, so memory stays small whatever the file decodes to. What the
    API uses: it checks uploads, the workers decode them. Past ``cpu_seconds`` of this thread's CPU time
    it gives up with ``audio_too_large``."""
    collector = _Collector.start(data, _Limits(max_seconds, cpu_seconds), None)
    return AudioInfo(collector.sample_rate, collector.channels, collector.frames, collector.format)


def decode_audio(
    data: bytes | Path,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> DecodedAudio:
    """Decode a whole audio file (bytes, or a path): at its own rate and channel count, or converted
    block by block to ``sample_rate`` Hz and ``channels`` channels (soundstage.audio.to_channels' rules,
    libsoxr HQ), so that only the converted samples are ever held.

    Raises :class:`AppError` (status 422) with code ``audio_empty`` for an empty file or
    one without samples, ``audio_too_long`` when it decodes to more than ``max_seconds``
    and ``audio_too_large`` when it holds more samples than the budget (both checked against the
    header first, then while decoding, so a bomb never fills memory), and ``audio_undecodable``
    for anything else that is not audio. Non-finite samples (NaN, inf in float WAVs)
    become 0; values are not clipped.
    """
    return _Collector.start(data, _Limits(max_seconds, None), _Target(sample_rate, channels)).result()


@dataclass(frozen=True)
class _Limits:
    max_seconds: float
    cpu_seconds: float | None  # of the decoding thread; None: unbounded (a worker's own job deadline applies)


@dataclass(frozen=True)
class _Target:
    """What the decoded samples are converted to (None: the file's own)."""

    sample_rate: int | None
    channels: int | None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise AppError(ErrorCode.AUDIO_UNDECODABLE, f"Cannot read the audio file: {error}.", status_code=422) from error


@contextmanager
def _open_binary(data: bytes | Path) -> Iterator[BinaryIO]:
    if isinstance(data, bytes):
        yield io.BytesIO(data)
    else:
        with data.open("rb") as handle:
            yield handle


class _Collector:
    """Counts (and with a target, converts and appends) decoded blocks; refuses more than ``max_seconds``
    of audio, more samples than the budget, or more CPU time than allowed."""

    format = "bin"

    @classmethod
    def start(cls, data: bytes | Path, limits: _Limits, target: _Target | None) -> _Collector:
        """Decode ``data`` whole into a collector (libsndfile first, then FFmpeg); raises the 422 errors.
        ``target`` None: count only (a probe)."""
        if (len(data) if isinstance(data, bytes) else _file_size(data)) == 0:
            raise AppError(ErrorCode.AUDIO_EMPTY, "The audio file is empty.", status_code=422)
        started = time.thread_time()
        try:
            collector = _decode_with_soundfile(data, limits, target, started)
        except (sf.SoundFileError, RuntimeError, ValueError) as error:
            logger.debug("libsndfile could not decode the audio (%s); trying FFmpeg", error)
            collector = _decode_with_ffmpeg(data, limits, target, started)
        if collector.frames == 0:
            raise AppError(ErrorCode.AUDIO_EMPTY, "The audio file holds no samples.", status_code=422)
        return collector

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        limits: _Limits,
        target: _Target | None,
        *,
        claimed_frames: int | None = None,
        cpu_started: float = 0.0,
    ) -> None:
        if not 0 < sample_rate <= MAX_SAMPLE_RATE or not 0 < channels <= MAX_CHANNELS:
            raise AppError(
                ErrorCode.AUDIO_UNDECODABLE,
                f"Unsupported audio: {channels} channels at {sample_rate} Hz "
                f"(at most {MAX_CHANNELS} channels and {MAX_SAMPLE_RATE} Hz).",
                status_code=422,
            )
        self.sample_rate = sample_rate
        self.channels = channels
        self.limits = limits
        self.max_frames = int(limits.max_seconds * sample_rate)
        self.max_samples = int(limits.max_seconds * SAMPLE_BUDGET_PER_SECOND)
        self.cpu_started = cpu_started
        self.frames = 0
        self.keep = target is not None
        self.out_rate = (target.sample_rate if target else None) or sample_rate
        self.out_channels = (target.channels if target else None) or channels
        self.stream = (
            soxr.ResampleStream(sample_rate, self.out_rate, self.out_channels, dtype="float32", quality="HQ")
            if self.keep and self.out_rate != sample_rate
            else None
        )
        self.blocks: list[np.ndarray] = []
        if claimed_frames is not None and claimed_frames > 0:
            self._check(claimed_frames)  # the header's claim, before decoding anything

    def _check(self, frames: int) -> None:
        if frames > self.max_frames:
            raise AppError(
                ErrorCode.AUDIO_TOO_LONG,
                f"The audio is longer than {self.limits.max_seconds:g} seconds.",
                status_code=422,
                details={"max_seconds": self.limits.max_seconds},
            )
        if frames * self.channels > self.max_samples:
            raise AppError(
                ErrorCode.AUDIO_TOO_LARGE,
                f"The audio holds too many samples: {self.channels} channels at {self.sample_rate} Hz for "
                f"{frames / self.sample_rate:.1f} s is more than {self.limits.max_seconds:g} seconds of stereo "
                "at 96 kHz. Downmix or resample it first.",
                status_code=422,
                details={"max_samples": self.max_samples},
            )

    def add(self, block: np.ndarray) -> None:
        """``block``: float32 (channels, n)."""
        self.frames += block.shape[1]
        self._check(self.frames)
        cpu = self.limits.cpu_seconds
        if cpu is not None and time.thread_time() - self.cpu_started > cpu:
            raise AppError(
                ErrorCode.AUDIO_TOO_LARGE,
                f"The audio took more than {cpu:g} s of CPU time to decode; re-encode it (WAV, FLAC, MP3).",
                status_code=422,
            )
        if self.keep:
            self._keep(to_channels(block, self.out_channels), last=False)

    def _keep(self, block: np.ndarray, *, last: bool) -> None:
        if self.stream is not None:
            block = np.ascontiguousarray(self.stream.resample_chunk(np.ascontiguousarray(block.T), last=last).T)
        if block.shape[1]:
            self.blocks.append(block)

    def result(self) -> DecodedAudio:
        if self.stream is not None:
            self._keep(np.zeros((self.out_channels, 0), dtype=np.float32), last=True)
        if self.blocks:
            samples = np.concatenate(self.blocks, axis=1).astype(np.float32, copy=False)
        else:
            samples = np.zeros((self.out_channels, 0), dtype=np.float32)
        self.blocks = []
        samples = np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return DecodedAudio(
            samples=np.ascontiguousarray(samples),
            sample_rate=self.out_rate,
            format=self.format,
            source_rate=self.sample_rate,
            source_channels=self.channels,
            source_frames=self.frames,
        )


def _decode_with_soundfile(data: bytes | Path, limits: _Limits, target: _Target | None, started: float) -> _Collector:
    with _open_binary(data) as handle, sf.SoundFile(handle) as reader:
        collector = _Collector(
            int(reader.samplerate),
            int(reader.channels),
            limits,
            target,
            claimed_frames=int(reader.frames) if str(reader.format) in _EXACT_HEADERS else None,
            cpu_started=started,
        )
        while True:
            block = reader.read(frames=_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            collector.add(block.T)
        major = str(reader.format)
    collector.format = _SOUNDFILE_EXTENSIONS.get(major, _safe_extension(major))
    return collector


def _decode_with_ffmpeg(data: bytes | Path, limits: _Limits, target: _Target | None, started: float) -> _Collector:
    import av  # imported here: most uploads never need FFmpeg

    try:
        with _open_binary(data) as handle, av.open(handle, "r", options={"format_whitelist": _FFMPEG_DEMUXERS}) as box:
            if not box.streams.audio:
                raise AppError(ErrorCode.AUDIO_UNDECODABLE, "The file holds no audio stream.", status_code=422)
            stream = box.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or 0)
            collector = _Collector(
                rate,
                int(stream.codec_context.channels or 0),
                limits,
                target,
                cpu_started=started,
            )
            resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
            for frame in box.decode(stream):
                for converted in resampler.resample(frame):
                    collector.add(converted.to_ndarray())
            for converted in resampler.resample(None):
                collector.add(converted.to_ndarray())
            container = str(box.format.name).split(",")[0]
    except (av.FFmpegError, ValueError, IndexError, OSError) as error:
        raise AppError(
            ErrorCode.AUDIO_UNDECODABLE,
            "The file is not audio in a supported format (WAV, FLAC, OGG, MP3, M4A/AAC, WebM).",
            status_code=422,
        ) from error
    collector.format = _FFMPEG_EXTENSIONS.get(container, _safe_extension(container))
    return collector


def _safe_extension(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]", "", name.lower())[:8]
    return cleaned or "bin"
