"""Decoding user audio: real files in every accepted format, and the ways uploads go wrong."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstage.audio import DecodedAudio, decode_audio
from soundstage.errors import AppError, ErrorCode
from tests.support.audio_files import ALL_FORMATS, LOSSLESS_FORMATS, dominant_frequency, empty_wav, encode, synth

SECONDS = 1.5
# Lossy codecs add encoder delay and pad the last frame: AAC up to two 1024-sample frames
# (plus priming when the container has no edit list), Vorbis and MP3 less.
LOSSY_EXTRA_FRAMES = 3 * 1024
LOSSY_MISSING_FRAMES = 64
EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "m4a": "m4a", "aac": "aac"}


def _error(data: bytes | Path, **kwargs: float) -> AppError:
    with pytest.raises(AppError) as caught:
        decode_audio(data, **kwargs)
    assert caught.value.status_code == 422
    return caught.value


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_format_decodes_with_its_rate_channels_and_duration(fmt: str, rate: int, channels: int) -> None:
    original = synth(rate, channels, SECONDS)
    decoded = decode_audio(encode(fmt, original, rate))

    assert isinstance(decoded, DecodedAudio)
    assert decoded.sample_rate == rate
    assert decoded.channels == channels
    assert decoded.samples.dtype == np.float32 and decoded.samples.shape == (channels, decoded.frames)
    assert decoded.samples.flags.c_contiguous
    assert decoded.format == EXTENSIONS[fmt]
    expected = original.shape[1]
    if fmt in LOSSLESS_FORMATS:
        assert decoded.frames == expected
        np.testing.assert_allclose(decoded.samples, original, atol=1.5 / 32768)
    else:
        assert expected - LOSSY_MISSING_FRAMES <= decoded.frames <= expected + LOSSY_EXTRA_FRAMES
        assert decoded.duration == pytest.approx(decoded.frames / rate)
    # The tone survives the codec (and no channel is silent).
    assert abs(dominant_frequency(decoded.samples, rate) - 440.0) < 5.0
    assert np.all(np.sqrt(np.mean(np.square(decoded.samples), axis=1)) > 0.1)


@pytest.mark.parametrize("fmt", ["flac", "m4a"])
def test_a_path_decodes_like_bytes(tmp_path: Path, fmt: str) -> None:
    data = encode(fmt, synth(44100, 2, 0.5), 44100)
    path = tmp_path / f"prompt.{fmt}"
    path.write_bytes(data)
    from_path, from_bytes = decode_audio(path), decode_audio(data)
    assert from_path.sample_rate == from_bytes.sample_rate and from_path.format == from_bytes.format
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)


def test_the_extension_comes_from_the_content_not_a_name(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"  # really a FLAC file
    path.write_bytes(encode("flac", synth(22050, 1, 0.5), 22050))
    assert decode_audio(path).format == "flac"


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not audio at all" * 40,
        bytes(range(256)) * 64,
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a WAV header cut short
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
    ],
)
def test_garbage_is_undecodable(garbage: bytes) -> None:
    assert _error(garbage).code is ErrorCode.AUDIO_UNDECODABLE


def test_random_bytes_are_undecodable() -> None:
    noise = np.random.default_rng(1).integers(0, 256, size=20_000, dtype=np.uint8).tobytes()
    assert _error(noise).code is ErrorCode.AUDIO_UNDECODABLE


def test_a_missing_path_is_undecodable(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.wav").code is ErrorCode.AUDIO_UNDECODABLE


def test_ffmpeg_playlists_cannot_read_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg's concat demuxer would open files named inside the upload; it is not allowed."""
    sf.write(tmp_path / "secret.wav", np.zeros(8000, dtype=np.float32), 8000)
    monkeypatch.chdir(tmp_path)
    assert _error(b"ffconcat version 1.0\nfile secret.wav\n").code is ErrorCode.AUDIO_UNDECODABLE


@pytest.mark.parametrize("channels", [1, 2])
def test_a_valid_header_with_zero_frames_is_empty(channels: int) -> None:
    assert _error(empty_wav(44100, channels)).code is ErrorCode.AUDIO_EMPTY


def test_zero_frame_flac_is_empty() -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((0, 2), dtype=np.float32), 48000, format="FLAC")
    assert _error(buffer.getvalue()).code is ErrorCode.AUDIO_EMPTY


def test_zero_bytes_are_empty(tmp_path: Path) -> None:
    assert _error(b"").code is ErrorCode.AUDIO_EMPTY
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _error(tmp_path / "empty.wav").code is ErrorCode.AUDIO_EMPTY


@pytest.mark.parametrize("fmt", ["flac", "m4a"])
def test_audio_longer_than_the_cap_is_refused_while_decoding(fmt: str) -> None:
    """A small file of long silence (a decompression bomb in miniature) stops at the cap."""
    rate = 8000
    data = encode(fmt, np.zeros((1, rate * 120), dtype=np.float32), rate)
    assert len(data) < 200_000
    error = _error(data, max_seconds=30)
    assert error.code is ErrorCode.AUDIO_TOO_LONG
    assert error.details == {"max_seconds": 30}
    assert decode_audio(data, max_seconds=125).duration == pytest.approx(120, abs=0.3)


def test_non_finite_float_samples_become_zero() -> None:
    frames = np.array([[0.5], [np.nan], [np.inf], [-np.inf], [-0.5]], dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, frames, 8000, format="WAV", subtype="FLOAT")
    decoded = decode_audio(buffer.getvalue())
    np.testing.assert_array_equal(decoded.samples, [[0.5, 0.0, 0.0, 0.0, -0.5]])


def test_duration_is_frames_over_rate() -> None:
    decoded = decode_audio(encode("wav", synth(8000, 1, 0.25), 8000))
    assert decoded.frames == 2000 and decoded.duration == 0.25


def test_probe_validates_like_decode_without_keeping_samples() -> None:
    import tracemalloc

    from soundstage.audio import probe_audio
    from soundstage.errors import AppError

    rate = 48000
    data = encode("flac", np.zeros((2, rate * 120), np.float32), rate)  # 2 minutes of silence: tiny as FLAC
    decoded = decode_audio(data)
    tracemalloc.start()
    info = probe_audio(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (info.sample_rate, info.channels, info.frames, info.format) == (
        decoded.sample_rate,
        decoded.channels,
        decoded.frames,
        decoded.format,
    )
    assert info.duration == pytest.approx(120.0)
    assert peak < decoded.samples.nbytes / 20  # blocks are counted, not kept
    with pytest.raises(AppError) as too_long:
        probe_audio(data, max_seconds=60)
    assert too_long.value.code.value == "audio_too_long"
    with pytest.raises(AppError) as garbage:
        probe_audio(b"not audio at all" * 100)
    assert garbage.value.code.value == "audio_undecodable"
