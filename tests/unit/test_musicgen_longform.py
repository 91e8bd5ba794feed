"""Long-form, stereo, several takes and audio continuation on the offline random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundstage_musicgen.codec import decode_tokens
from soundstage_musicgen.engine import GeneratedAudio, GenerationParams, MusicgenEngine, PromptAudio
from soundstage_musicgen.windows import EXTEND_STRIDE_FRAMES, WINDOW_FRAMES
from tests.support.audio import assert_seamless_at

RATE = 32000
HOP = 640


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> MusicgenEngine:
    engine = MusicgenEngine("random:tiny", tmp_path_factory.mktemp("models"), device="cpu")
    engine.load()
    return engine


def params(duration_s: float, seed: int = 0, **kwargs: object) -> GenerationParams:
    return GenerationParams(prompt="ambient piano", duration_s=duration_s, seed=seed, **kwargs)  # type: ignore[arg-type]


def test_seventy_seconds_are_exact_and_seamless(engine: MusicgenEngine) -> None:
    details: list[str] = []
    steps: list[tuple[int, int]] = []

    def on_progress(step: int, total: int, detail: str) -> None:
        steps.append((step, total))
        details.append(detail)

    (take,) = engine.generate(params(70.0, seed=3), on_progress)
    samples = take.samples[0]
    assert samples.shape == (70 * RATE,)
    assert [s for s, _ in steps] == sorted(s for s, _ in steps) and steps[-1][0] == steps[-1][1]
    assert any(d.startswith("window 1/4") for d in details) and any(d.startswith("window 4/4") for d in details)

    joins = [WINDOW_FRAMES * HOP + i * EXTEND_STRIDE_FRAMES * HOP for i in range(3)]  # 30 s, 48 s, 66 s
    assert_seamless_at(samples, joins)


def test_chunked_decoding_matches_one_whole_decode(engine: MusicgenEngine) -> None:
    import torch

    loaded = engine._ensure_loaded()
    tokens = torch.randint(0, 64, (1, 4, 3700))
    chunked = decode_tokens(loaded, tokens)
    with torch.inference_mode():
        whole = loaded.model.audio_encoder.decode(tokens[None], audio_scales=[None]).audio_values.numpy()
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() < 1e-3 * np.abs(whole).max()


def test_several_takes_differ_and_are_reproducible(engine: MusicgenEngine) -> None:
    takes = engine.generate(params(2.0, seed=9, num_outputs=3))
    again = engine.generate(params(2.0, seed=9, num_outputs=3))
    assert len(takes) == 3 and all(t.samples.shape == (1, 2 * RATE) for t in takes)
    assert not np.array_equal(takes[0].samples, takes[1].samples)
    for first, second in zip(takes, again, strict=True):
        assert np.array_equal(first.samples, second.samples)


def test_stereo_model_gives_two_different_channels(tmp_path: Path) -> None:
    stereo = MusicgenEngine("random:tiny-stereo", tmp_path, device="cpu")
    assert stereo.info.channels == 2
    (take,) = stereo.generate(params(3.0, seed=4))
    assert take.samples.shape == (2, 3 * RATE)
    assert not np.array_equal(take.samples[0], take.samples[1])
    assert min(np.sqrt(np.mean(channel**2)) for channel in take.samples) > 1e-3


def prompt_audio(seconds: float, rate: int, channels: int) -> PromptAudio:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return PromptAudio(samples=np.tile(tone, (channels, 1)).astype(np.float32), sample_rate=rate)


def reconstruction(engine: MusicgenEngine, take: GeneratedAudio, prompt_samples: int) -> float:
    """Correlation of the take's first `prompt_samples` with the codec's own rendering of them."""
    import torch

    from soundstage_musicgen.codec import encode_audio

    loaded = engine._ensure_loaded()
    prompt = prompt_audio(prompt_samples / RATE, RATE, 1).samples
    rendered = decode_tokens(loaded, encode_audio(loaded, prompt))[0, 0]
    head = take.samples[0, : prompt_samples - 2 * HOP]
    with torch.inference_mode():
        return float(np.corrcoef(head, rendered[: len(head)])[0, 1])


def test_continuation_keeps_the_prompt_when_asked(engine: MusicgenEngine) -> None:
    prompt = prompt_audio(3.0, 44100, 2)  # any rate and channel count
    (kept,) = engine.generate(params(2.0, seed=1, prompt_audio=prompt, include_prompt=True))
    (dropped,) = engine.generate(params(2.0, seed=1, prompt_audio=prompt, include_prompt=False))
    assert kept.samples.shape == (1, 3 * RATE + 2 * RATE)
    assert dropped.samples.shape == (1, 2 * RATE)
    # Same tokens either way: the continuation is the same audio.
    assert np.allclose(kept.samples[0, -RATE:], dropped.samples[0, -RATE:], atol=1e-4)
    assert reconstruction(engine, kept, 3 * RATE) > 0.9
