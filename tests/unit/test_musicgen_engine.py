"""Real (no mocks) tests of the MusicGen engine on the offline random:tiny model."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soundstage.errors import AppError, ErrorCode, JobCancelledError, ModelUnavailableError
from soundstage_musicgen.engine import GeneratedAudio, GenerationParams, MusicgenEngine
from soundstage_musicgen.random_models import MARKER_FILE, build_random_model, known_random_models

SAMPLE_RATE = 32000


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("musicgen-cache")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> MusicgenEngine:
    eng = MusicgenEngine("random:tiny", cache_dir, device="cpu")
    started = time.perf_counter()
    eng.load()
    print(f"\nrandom:tiny build+load: {time.perf_counter() - started:.2f} s")
    return eng


def _one(engine: MusicgenEngine, params: GenerationParams, on_progress: Any = None) -> GeneratedAudio:
    (take,) = engine.generate(params, on_progress)
    return take


def _params(duration_s: float = 1.0, seed: int = 0, **kwargs: object) -> GenerationParams:
    return GenerationParams(prompt="calm lofi beat with piano", duration_s=duration_s, seed=seed, **kwargs)  # type: ignore[arg-type]


def _rms(audio: GeneratedAudio) -> float:
    return float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64))))


def test_builder_output_reloads_with_from_pretrained(cache_dir: Path) -> None:
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    folder = build_random_model("random:tiny", cache_dir)
    assert folder == cache_dir / "random-tiny"
    assert build_random_model("random:tiny", cache_dir) == folder  # second call reuses the folder
    marker = json.loads((folder / MARKER_FILE).read_text())
    assert marker["random_weights"] is True and marker["model"] == "random:tiny"
    model: Any = MusicgenForConditionalGeneration.from_pretrained(folder)
    processor: Any = AutoProcessor.from_pretrained(folder)  # type: ignore[no-untyped-call]
    assert model.config.audio_encoder.sampling_rate == SAMPLE_RATE
    assert model.config.audio_encoder.frame_rate == 50
    assert model.config.decoder.num_codebooks == 4
    assert model.config.decoder.max_position_embeddings >= 2048
    assert processor(text=["calm lofi"], return_tensors="pt")["input_ids"].shape[0] == 1
    assert not list(cache_dir.glob(".random-*")), "temporary build folders must not be left behind"


def test_builds_are_deterministic(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    first = load_file(build_random_model("random:tiny", tmp_path / "a") / "model.safetensors")
    second = load_file(build_random_model("tiny", tmp_path / "b") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(first[key].equal(second[key]) for key in first)


def test_concurrent_builds_in_two_processes_publish_one_complete_folder(tmp_path: Path) -> None:
    code = "import sys, pathlib; from soundstage_musicgen.random_models import build_random_model as b; "
    code += "print(b('random:tiny', pathlib.Path(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == [str(tmp_path / "random-tiny")] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random-tiny"]
    assert (tmp_path / "random-tiny" / MARKER_FILE).is_file()


def test_info(engine: MusicgenEngine) -> None:
    info = engine.info
    assert info.model == "random:tiny"
    assert info.device == "cpu"
    assert info.random_weights is True
    assert (info.sample_rate, info.channels, info.window_s) == (SAMPLE_RATE, 1, 30.0)


@pytest.mark.parametrize("duration_s", [1.0, 2.37])
def test_exact_duration_mono_float32_not_silent(engine: MusicgenEngine, duration_s: float) -> None:
    audio = _one(engine, _params(duration_s))
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == (1, round(duration_s * SAMPLE_RATE))
    assert np.all(np.abs(audio.samples) <= 1.0)
    assert _rms(audio) > 1e-3


def test_very_short_duration_is_exact(engine: MusicgenEngine) -> None:
    # Fewer frames than codebooks: the engine still takes the delay-pattern path and trims.
    assert _one(engine, _params(0.01)).samples.shape == (1, 320)


def test_same_seed_is_bit_identical_and_different_seed_differs(engine: MusicgenEngine) -> None:
    first = _one(engine, _params(seed=7))
    again = _one(engine, _params(seed=7))
    other = _one(engine, _params(seed=8))
    assert np.array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)


def test_sampling_params_are_used_and_not_stored_on_the_model(engine: MusicgenEngine) -> None:
    base = _one(engine, _params(seed=3))
    changed = _one(engine, _params(seed=3, top_k=2, top_p=0.5, temperature=0.7, guidance_scale=1.0))
    assert not np.array_equal(base.samples, changed.samples)
    assert np.array_equal(_one(engine, _params(seed=3)).samples, base.samples)


def test_progress_is_monotonic_and_reaches_total(engine: MusicgenEngine) -> None:
    calls: list[tuple[int, int]] = []
    _one(engine, _params(1.0), on_progress=lambda step, total, detail: calls.append((step, total)))
    total = 50 + 4 - 1  # 50 frames + codebook delay (K - 1 = 3)
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    steps = [s for s, _ in calls]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 5


def test_cancellation_from_progress_callback_propagates(engine: MusicgenEngine) -> None:
    seen: list[int] = []

    def cancel_after_10(step: int, total: int, detail: str) -> None:
        seen.append(step)
        if step >= 10:
            raise JobCancelledError("cancelled")

    with pytest.raises(JobCancelledError):
        _one(engine, _params(2.0), on_progress=cancel_after_10)
    assert max(seen) == 10
    assert _one(engine, _params(0.5)).samples.shape == (1, 16000)  # engine still usable


def test_invalid_numbers_are_rejected(engine: MusicgenEngine) -> None:
    for bad in (_params(0.0), _params(1.0, num_outputs=5), _params(1.0, top_p=1.5)):
        with pytest.raises(AppError) as excinfo:
            engine.generate(bad)
        assert excinfo.value.code == ErrorCode.VALIDATION_ERROR


def test_unknown_random_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError) as excinfo:
        MusicgenEngine("random:huge", tmp_path).load()
    assert excinfo.value.code == ErrorCode.MODEL_UNAVAILABLE
    for known in known_random_models():
        assert known in excinfo.value.message


@pytest.mark.parametrize("make_ref", [lambda p: str(p / "missing"), str])
def test_bad_local_path(tmp_path: Path, make_ref: Callable[[Path], str]) -> None:
    # A path that does not exist, and an existing folder that is not a model.
    with pytest.raises(ModelUnavailableError) as excinfo:
        MusicgenEngine(make_ref(tmp_path), tmp_path).load()
    assert "MUSICGEN_MODEL" in excinfo.value.message


def test_local_folder_ref_loads_the_same_model(engine: MusicgenEngine, cache_dir: Path) -> None:
    by_path = MusicgenEngine(str(cache_dir / "random-tiny"), cache_dir, device="cpu")
    assert by_path.info.random_weights is True
    assert np.array_equal(_one(by_path, _params(seed=5)).samples, _one(engine, _params(seed=5)).samples)


def test_unreachable_hub_model_fails_fast(tmp_path: Path) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    hub_id = "facebook/musicgen-small"
    if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        pytest.skip(f"{hub_id} is in the local HF cache")
    try:
        get_hf_file_metadata(hf_hub_url(hub_id, "config.json"), timeout=3)
    except Exception:  # noqa: S110 - the hub is unreachable, which is what this test is about
        pass
    else:
        pytest.skip("huggingface.co is reachable: the engine would download the real model")
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as excinfo:
        MusicgenEngine(hub_id, tmp_path).load()
    elapsed = time.perf_counter() - started
    print(f"\nhub failure after {elapsed:.2f} s")
    assert elapsed < 30
    message = excinfo.value.message
    for hint in ("huggingface.co", "HF_HOME", "MUSICGEN_MODEL", "random:tiny"):
        assert hint in message


@pytest.mark.parametrize("duration_s", [3.0, 10.0])
def test_generation_speed_on_cpu(engine: MusicgenEngine, duration_s: float) -> None:
    timings = []
    for seed in (1, 2):  # the first call at a new length pays one-off allocation/kernel set-up costs
        started = time.perf_counter()
        audio = _one(engine, _params(duration_s, seed=seed))
        timings.append(time.perf_counter() - started)
        assert audio.samples.shape == (1, round(duration_s * SAMPLE_RATE))
    print(f"\nrandom:tiny {duration_s:g} s of audio: first {timings[0]:.3f} s, then {timings[1]:.3f} s")
    if duration_s == 3.0:
        assert min(timings) < 5.0  # typically ~0.15 s; loose so a busy CI machine does not flake


def test_zero_temperature_is_greedy_and_seed_independent(engine: MusicgenEngine) -> None:
    first = _one(engine, _params(seed=1, temperature=0.0, duration_s=0.5))
    second = _one(engine, _params(seed=2, temperature=0.0, duration_s=0.5))
    assert np.array_equal(first.samples, second.samples)


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 10.0])
def test_every_documented_guidance_scale_generates(engine: MusicgenEngine, scale: float) -> None:
    audio = _one(engine, _params(seed=11, duration_s=0.5, guidance_scale=scale))
    assert audio.samples.shape == (1, 16000)
    assert np.isfinite(audio.samples).all()


def test_a_checkpoint_that_is_not_musicgen_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    folder = tmp_path / "not-musicgen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelUnavailableError) as excinfo:
        MusicgenEngine(str(folder), tmp_path).load()
    assert "'bert' checkpoint, not a MusicGen one" in excinfo.value.message
