"""Audio bombs: a few KB of FLAC that claim many channels at a high rate. Decoding is budgeted by samples
(from the header first), converted block by block to what the model takes, and the API's probe is bounded
in CPU time."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import soundfile as sf

from soundstage.audio import decode_audio, probe_audio, resample, to_channels
from soundstage.audio.decode import SAMPLE_BUDGET_PER_SECOND
from soundstage.errors import AppError, ErrorCode
from tests.support.audio_files import encode, synth

BOMB_RATE = 384_000
BOMB_CHANNELS = 8


def bomb(seconds: float) -> bytes:
    """Constant blocks: FLAC stores each as a handful of bytes, whatever the rate and channel count."""
    buffer = io.BytesIO()
    block = np.zeros((BOMB_RATE, BOMB_CHANNELS), dtype=np.int16)
    with sf.SoundFile(buffer, "w", samplerate=BOMB_RATE, channels=BOMB_CHANNELS, format="FLAC") as out:
        whole, rest = divmod(round(seconds * BOMB_RATE), BOMB_RATE)
        for _ in range(whole):
            out.write(block)
        out.write(block[:rest])
    return buffer.getvalue()


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(work: Callable[[], object]) -> AppError:
    with pytest.raises(AppError) as caught:
        work()
    assert caught.value.status_code == 422
    return caught.value


def test_a_header_over_the_sample_budget_is_refused_before_decoding() -> None:
    # 30 s of 8 channels at 384 kHz: 92 M samples; a 300 s limit allows 57.6 M (stereo at 96 kHz).
    data = bomb(30)
    assert len(data) < 100_000
    started = time.process_time()
    error = refused(lambda: probe_audio(data, max_seconds=300))
    assert time.process_time() - started < 0.1  # the header said so: nothing was decoded
    assert error.code is ErrorCode.AUDIO_TOO_LARGE
    assert error.details == {"max_samples": 300 * SAMPLE_BUDGET_PER_SECOND}
    assert "8 channels at 384000 Hz" in error.message
    assert refused(lambda: decode_audio(data, max_seconds=300)).code is ErrorCode.AUDIO_TOO_LARGE


def test_a_header_over_the_length_limit_is_refused_before_decoding() -> None:
    data = encode("flac", np.zeros((1, 8000 * 600), np.float32), 8000)
    started = time.process_time()
    assert refused(lambda: probe_audio(data, max_seconds=60)).code is ErrorCode.AUDIO_TOO_LONG
    assert time.process_time() - started < 0.1


def test_a_bomb_within_the_budget_decodes_in_the_memory_of_the_models_input() -> None:
    """5 s of 8 channels at 384 kHz (15 M samples, 61 MB as float32) for a stereo 44.1 kHz model."""
    data = bomb(5)
    decoded = decode_audio(data, max_seconds=1800, sample_rate=44_100, channels=2)
    assert (decoded.sample_rate, decoded.channels, decoded.frames) == (44_100, 2, 5 * 44_100)
    assert (decoded.source_rate, decoded.source_channels, decoded.source_frames) == (384_000, 8, 5 * 384_000)
    model_input = decoded.samples.nbytes  # 1.8 MB
    converted = peak_bytes(lambda: decode_audio(data, max_seconds=1800, sample_rate=44_100, channels=2))
    native = peak_bytes(lambda: decode_audio(data, max_seconds=1800))
    assert native > 60_000_000  # what the file's claims cost when kept as they are
    assert converted < 3 * model_input + 4_000_000, (converted, model_input)  # output, its join, one block


@pytest.mark.parametrize(
    ("rate", "channels", "to_rate", "to_channels_"), [(48_000, 2, 32_000, 1), (22_050, 1, 44_100, 2)]
)
def test_converting_while_decoding_equals_converting_afterwards(
    rate: int, channels: int, to_rate: int, to_channels_: int
) -> None:
    data = encode("flac", synth(rate, channels, 3.3), rate)
    whole = decode_audio(data)
    expected = resample(to_channels(whole.samples, to_channels_), rate, to_rate)
    streamed = decode_audio(data, sample_rate=to_rate, channels=to_channels_)
    assert streamed.samples.shape == expected.shape
    np.testing.assert_allclose(streamed.samples, expected, atol=1e-5)
    assert streamed.source_duration == pytest.approx(whole.duration)


def test_the_probe_gives_up_past_its_cpu_budget() -> None:
    data = encode("flac", synth(48_000, 2, 20.0), 48_000)
    assert probe_audio(data).frames == 20 * 48_000  # the default budget (20 s) is far above a real file
    error = refused(lambda: probe_audio(data, cpu_seconds=0.0))
    assert error.code is ErrorCode.AUDIO_TOO_LARGE and "CPU time" in error.message
