"""Encoding float32 `(channels, samples)` audio into every download format, checked by decoding it back."""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from soundstage.audio import EncodedAudio, encode_audio
from soundstage.schemas import AudioFormat

RATE = 32000  # MusicGen's output rate
LENGTH = 12345  # deliberately not a multiple of any codec frame size
LOSSLESS = (AudioFormat.WAV, AudioFormat.FLAC)
LOSSY = (AudioFormat.MP3, AudioFormat.OGG)
# Lossy decoders may add encoder delay / final-frame padding; at most one Vorbis long block.
LOSSY_PADDING = 2048
# 16-bit PCM quantisation step, plus a little room for rounding.
PCM16_TOLERANCE = 1.5 / 32768
CONTENT_TYPES = {
    AudioFormat.WAV: "audio/wav",
    AudioFormat.FLAC: "audio/flac",
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.OGG: "audio/ogg",
}

Samples = npt.NDArray[np.float32]


def _tone(channels: int, length: int = LENGTH, rate: int = RATE) -> Samples:
    """Sines with a different frequency and amplitude per channel, so swapped channels show."""
    t = np.arange(length) / rate
    rows = [(0.5 / (index + 1)) * np.sin(2 * np.pi * 440.0 * (index + 1) * t) for index in range(channels)]
    return np.stack(rows).astype(np.float32)


def _decode(encoded: EncodedAudio) -> tuple[Samples, int]:
    """Decode to float32 `(channels, samples)` and the rate the file declares."""
    frames, rate = sf.read(io.BytesIO(encoded.data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(frames.T), int(rate)


def _rms(samples: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Root-mean-square level of each channel."""
    squares = np.square(samples, dtype=np.float64)
    means: npt.NDArray[np.float64] = squares.mean(axis=1)
    return np.sqrt(means)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_metadata_describes_the_audio(fmt: AudioFormat, channels: int) -> None:
    encoded = encode_audio(_tone(channels), RATE, fmt)
    assert encoded.content_type == CONTENT_TYPES[fmt]
    assert encoded.extension == fmt.value
    assert encoded.sample_rate == RATE
    assert encoded.channels == channels
    assert encoded.duration_s == pytest.approx(LENGTH / RATE)
    assert encoded.data


def test_every_format_has_a_content_type_test() -> None:
    assert set(CONTENT_TYPES) == set(AudioFormat)
    assert set(LOSSLESS) | set(LOSSY) == set(AudioFormat)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", LOSSLESS)
def test_lossless_formats_decode_to_the_same_samples(fmt: AudioFormat, channels: int) -> None:
    samples = _tone(channels)
    decoded, rate = _decode(encode_audio(samples, RATE, fmt))
    assert rate == RATE
    assert decoded.shape == (channels, LENGTH)
    np.testing.assert_allclose(decoded, samples, rtol=0, atol=PCM16_TOLERANCE)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", LOSSY)
def test_lossy_formats_keep_rate_channels_length_and_loudness(fmt: AudioFormat, channels: int) -> None:
    samples = _tone(channels)
    decoded, rate = _decode(encode_audio(samples, RATE, fmt))
    assert rate == RATE
    assert decoded.shape[0] == channels
    assert LENGTH <= decoded.shape[1] <= LENGTH + LOSSY_PADDING
    # Each channel keeps its own loudness (within 5%): the channels are neither swapped,
    # mixed nor silenced.
    np.testing.assert_allclose(_rms(decoded[:, :LENGTH]), _rms(samples), rtol=0.05)


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_magic_bytes_match_the_format(fmt: AudioFormat) -> None:
    data = encode_audio(_tone(1), RATE, fmt).data
    if fmt is AudioFormat.WAV:
        assert data[:4] == b"RIFF"
        assert data[8:12] == b"WAVE"
    elif fmt is AudioFormat.FLAC:
        assert data[:4] == b"fLaC"
    elif fmt is AudioFormat.OGG:
        assert data[:4] == b"OggS"
    else:  # an ID3 tag or straight into an MPEG frame sync
        assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_is_16_bit_pcm_readable_by_the_wave_module(channels: int) -> None:
    encoded = encode_audio(_tone(channels), RATE, AudioFormat.WAV)
    with wave.open(io.BytesIO(encoded.data), "rb") as reader:
        assert reader.getsampwidth() == 2
        assert reader.getnchannels() == channels
        assert reader.getframerate() == RATE
        assert reader.getnframes() == LENGTH
        assert reader.getcomptype() == "NONE"


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_values_outside_the_unit_range_are_clipped(fmt: AudioFormat) -> None:
    loud = np.array([[1.5, -1.5, 4.0, -4.0, 0.25, -0.25, 1.0, -1.0]], dtype=np.float32)
    before = loud.copy()
    decoded, _ = _decode(encode_audio(loud, RATE, fmt))
    clipped, _ = _decode(encode_audio(np.clip(loud, -1.0, 1.0), RATE, fmt))
    # Over-range values saturate at full scale with their sign kept (no integer wrap-around).
    # (libsndfile would also saturate integer PCM on its own; the lossy test below is the one
    # that only passes because encode_audio clips.)
    np.testing.assert_array_equal(decoded, clipped)
    assert decoded[0, 0] == decoded[0, 2] == decoded[0, 6] == pytest.approx(1.0, abs=PCM16_TOLERANCE)
    assert decoded[0, 1] == decoded[0, 3] == decoded[0, 7] == pytest.approx(-1.0, abs=PCM16_TOLERANCE)
    assert decoded[0, 4] == pytest.approx(0.25, abs=PCM16_TOLERANCE)
    # The caller's array is left alone.
    np.testing.assert_array_equal(loud, before)


def test_lossy_clipping_keeps_the_signal_near_full_scale() -> None:
    # A square wave at +-3.0 clips to +-1.0 before encoding; without clipping the codec would
    # see a signal three times louder than full scale.
    square = np.sign(_tone(1)) * 3.0
    decoded, _ = _decode(encode_audio(square.astype(np.float32), RATE, AudioFormat.OGG))
    assert float(_rms(decoded[:, :LENGTH])[0]) == pytest.approx(1.0, rel=0.1)


def test_float64_input_is_accepted() -> None:
    samples = _tone(2).astype(np.float64)
    decoded, _ = _decode(encode_audio(samples, RATE, AudioFormat.FLAC))
    np.testing.assert_allclose(decoded, samples, rtol=0, atol=PCM16_TOLERANCE)


@pytest.mark.parametrize("shape", [(LENGTH,), (1, 2, LENGTH)])
def test_arrays_that_are_not_channels_by_samples_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="channels, samples"):
        encode_audio(np.zeros(shape, dtype=np.float32), RATE, AudioFormat.WAV)
