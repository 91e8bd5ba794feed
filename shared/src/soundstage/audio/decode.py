"""Decode user audio (uploads, prompts) to float32 arrays of shape (channels, samples).

libsndfile (through soundfile) reads WAV, FLAC, OGG (Vorbis, Opus) and MP3; anything it
does not recognise goes to FFmpeg through PyAV, whose wheels bundle FFmpeg, so M4A/AAC
and WebM/Matroska decode without system packages. Decoding user audio is validation: a
file that does not decode, holds no samples or is longer than allowed raises an
:class:`~soundstage.errors.AppError` with a stable code and HTTP status 422.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from soundstage.errors import AppError, ErrorCode

logger = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 3600.0
"""Decoded-length cap when the caller gives none (the largest MAX_DURATION allowed): guards
against decompression bombs (a few MB of FLAC or AAC silence decode to hours of audio).
Callers that know a tighter limit pass it, as the API does with MAX_DURATION."""

MAX_CHANNELS = 32
MAX_SAMPLE_RATE = 384_000

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


def probe_audio(data: bytes | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """Validate a whole audio file exactly as :func:`decode_audio` does (same errors), decoding it block
    by block without keeping the samples, so memory stays small whatever the file decodes to. What the
    API uses: it checks uploads, the workers decode them."""
    collector = _Collector.start(data, max_seconds, keep=False)
    return AudioInfo(collector.sample_rate, collector.channels, collector.frames, collector.format)


def decode_audio(data: bytes | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> DecodedAudio:
    """Decode a whole audio file (bytes, or a path) at its own rate and channel count.

    Raises :class:`AppError` (status 422) with code ``audio_empty`` for an empty file or
    one without samples, ``audio_too_long`` when it decodes to more than ``max_seconds``
    (checked while decoding, so a bomb never fills memory), and ``audio_undecodable``
    for anything else that is not audio. Non-finite samples (NaN, inf in float WAVs)
    become 0; values are not clipped.
    """
    return _Collector.start(data, max_seconds, keep=True).result()


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
    """Counts (and with ``keep``, appends) decoded blocks; refuses more than ``max_seconds`` of audio."""

    format = "bin"

    @classmethod
    def start(cls, data: bytes | Path, max_seconds: float, *, keep: bool) -> _Collector:
        """Decode ``data`` whole into a collector (libsndfile first, then FFmpeg); raises the 422 errors."""
        if (len(data) if isinstance(data, bytes) else _file_size(data)) == 0:
            raise AppError(ErrorCode.AUDIO_EMPTY, "The audio file is empty.", status_code=422)
        try:
            collector = _decode_with_soundfile(data, max_seconds, keep)
        except (sf.SoundFileError, RuntimeError, ValueError) as error:
            logger.debug("libsndfile could not decode the audio (%s); trying FFmpeg", error)
            collector = _decode_with_ffmpeg(data, max_seconds, keep)
        if collector.frames == 0:
            raise AppError(ErrorCode.AUDIO_EMPTY, "The audio file holds no samples.", status_code=422)
        return collector

    def __init__(self, sample_rate: int, channels: int, max_seconds: float, *, keep: bool = True) -> None:
        if not 0 < sample_rate <= MAX_SAMPLE_RATE or not 0 < channels <= MAX_CHANNELS:
            raise AppError(
                ErrorCode.AUDIO_UNDECODABLE,
                f"Unsupported audio: {channels} channels at {sample_rate} Hz "
                f"(at most {MAX_CHANNELS} channels and {MAX_SAMPLE_RATE} Hz).",
                status_code=422,
            )
        self.sample_rate = sample_rate
        self.channels = channels
        self.max_seconds = max_seconds
        self.max_frames = int(max_seconds * sample_rate)
        self.frames = 0
        self.keep = keep
        self.blocks: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        """``block``: float32 (channels, n)."""
        self.frames += block.shape[1]
        if self.frames > self.max_frames:
            raise AppError(
                ErrorCode.AUDIO_TOO_LONG,
                f"The audio is longer than {self.max_seconds:g} seconds.",
                status_code=422,
                details={"max_seconds": self.max_seconds},
            )
        if self.keep:
            self.blocks.append(block)

    def result(self) -> DecodedAudio:
        if self.blocks:
            samples = np.concatenate(self.blocks, axis=1).astype(np.float32, copy=False)
        else:
            samples = np.zeros((self.channels, 0), dtype=np.float32)
        samples = np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return DecodedAudio(samples=np.ascontiguousarray(samples), sample_rate=self.sample_rate, format=self.format)


def _decode_with_soundfile(data: bytes | Path, max_seconds: float, keep: bool) -> _Collector:
    with _open_binary(data) as handle, sf.SoundFile(handle) as reader:
        collector = _Collector(int(reader.samplerate), int(reader.channels), max_seconds, keep=keep)
        while True:
            block = reader.read(frames=_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            collector.add(block.T)
        major = str(reader.format)
    collector.format = _SOUNDFILE_EXTENSIONS.get(major, _safe_extension(major))
    return collector


def _decode_with_ffmpeg(data: bytes | Path, max_seconds: float, keep: bool) -> _Collector:
    import av  # imported here: most uploads never need FFmpeg

    try:
        with _open_binary(data) as handle, av.open(handle, "r", options={"format_whitelist": _FFMPEG_DEMUXERS}) as box:
            if not box.streams.audio:
                raise AppError(ErrorCode.AUDIO_UNDECODABLE, "The file holds no audio stream.", status_code=422)
            stream = box.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or 0)
            collector = _Collector(rate, int(stream.codec_context.channels or 0), max_seconds, keep=keep)
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
