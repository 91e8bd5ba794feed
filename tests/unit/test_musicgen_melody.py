"""Melody conditioning: chroma without torchaudio, and the random melody model end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from soundstage.errors import AppError, ErrorCode
from soundstage_musicgen.chroma import chroma_features, frames_for
from soundstage_musicgen.engine import GenerationParams, MusicgenEngine, PromptAudio, _generate, looped_span
from soundstage_musicgen.windows import Window

RATE = 32000


def tone(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize(("frequency", "pitch_class"), [(261.63, 0), (329.63, 4), (392.0, 7), (440.0, 9), (493.88, 11)])
def test_chroma_finds_the_pitch_class(frequency: float, pitch_class: int) -> None:
    chroma = chroma_features(tone(frequency, 5.0), RATE)
    assert chroma.shape == (frames_for(5.0, RATE), 12)
    assert np.all(chroma.sum(axis=1) == 1)  # one-hot per frame
    assert np.bincount(chroma.argmax(axis=1), minlength=12).argmax() == pitch_class


def test_chroma_follows_a_melody_over_time() -> None:
    melody = np.concatenate([tone(261.63, 2.0), tone(392.0, 2.0)])  # C then G
    classes = chroma_features(melody, RATE).argmax(axis=1)
    assert classes[3] == 0 and classes[-4] == 7


def test_short_input_is_padded_to_one_window() -> None:
    assert chroma_features(tone(440.0, 0.1), RATE).shape[1] == 12


@pytest.fixture(scope="module")
def melody_engine(tmp_path_factory: pytest.TempPathFactory) -> MusicgenEngine:
    engine = MusicgenEngine("random:tiny-melody", tmp_path_factory.mktemp("models"), device="cpu")
    engine.load()
    return engine


def test_melody_model_generates_exact_lengths_and_follows_the_melody(melody_engine: MusicgenEngine) -> None:
    assert melody_engine.scheduler is None  # melody checkpoints use transformers' generate
    melody = PromptAudio(samples=np.stack([tone(440.0, 3.0, 44100)] * 2), sample_rate=44100)
    with_melody = GenerationParams(prompt="folk tune", duration_s=2.0, seed=4, melody=melody)
    (a,) = melody_engine.generate(with_melody)
    (again,) = melody_engine.generate(with_melody)
    (other,) = melody_engine.generate(
        GenerationParams(
            prompt="folk tune",
            duration_s=2.0,
            seed=4,
            melody=PromptAudio(samples=tone(261.63, 3.0)[None], sample_rate=RATE),
        )
    )
    assert a.samples.shape == (1, 2 * RATE)
    assert np.array_equal(a.samples, again.samples)
    assert not np.array_equal(a.samples, other.samples)  # the chroma conditions the output


def test_melody_long_form_spans_windows(melody_engine: MusicgenEngine) -> None:
    melody = PromptAudio(samples=tone(392.0, 5.0)[None], sample_rate=RATE)  # looped under every window
    (take,) = melody_engine.generate(GenerationParams(prompt="x", duration_s=35.0, seed=1, melody=melody))
    assert take.samples.shape == (1, 35 * RATE)


def test_the_melody_loops_both_ways_from_any_start() -> None:
    melody = np.arange(10, dtype=np.float32)
    assert looped_span(melody, 0, 4).tolist() == [0, 1, 2, 3]
    assert looped_span(melody, 8, 5).tolist() == [8, 9, 0, 1, 2]
    assert looped_span(melody, -3, 5).tolist() == [7, 8, 9, 0, 1]  # a prompt before the melody's start
    assert looped_span(melody, 25, 2).tolist() == [5, 6]


def test_a_continuations_windows_line_the_melody_up_with_the_new_audio(melody_engine: MusicgenEngine) -> None:
    """Every window's chroma starts where its context does, counted from the first new frame: the first
    window of a continuation starts on the prompt, before the new audio (negative), so the new audio at
    the join follows the melody at ``melody_start``."""
    loaded = melody_engine._ensure_loaded()
    starts: list[tuple[int, int, int]] = []

    def record(window: Window, context: torch.Tensor, on_step: object, *, start_frame: int) -> torch.Tensor:
        starts.append((start_frame, window.context_frames, window.new_frames))
        return torch.zeros((context.shape[0], context.shape[1], window.new_frames), dtype=torch.long)

    prompt = PromptAudio(samples=tone(330.0, 10.0)[None], sample_rate=RATE)  # 500 frames
    params = GenerationParams(prompt="x", duration_s=40.0, seed=1, prompt_audio=prompt)
    _generate(loaded, params, lambda *_: None, record)
    assert starts[0] == (-500, 500, 1000)
    # Each later window's context ends where the new audio generated before it does.
    made = 0
    for start, context, new in starts:
        assert start + context == made
        made += new
    assert len(starts) > 2 and made == 40 * 50


def test_melody_on_a_text_only_model_is_refused(tmp_path: Path) -> None:
    engine = MusicgenEngine("random:tiny", tmp_path, device="cpu")
    melody = PromptAudio(samples=tone(440.0, 1.0)[None], sample_rate=RATE)
    with pytest.raises(AppError) as excinfo:
        engine.generate(GenerationParams(prompt="x", duration_s=1.0, melody=melody))
    assert excinfo.value.code == ErrorCode.MODEL_NOT_MELODY  # the code the API gives when a worker reported the model
