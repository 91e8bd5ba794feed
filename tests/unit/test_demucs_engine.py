"""The Demucs engine against demucs' own `apply_model`, on random-weight models built offline.

The engine re-implements apply_model's split overlap-add so that it can stream and batch; these tests
hold it to the very numbers apply_model computes on the same model and settings.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from soundstage_demucs.batcher import SegmentBatcher
from soundstage_demucs.engine import DemucsEngine, SeparationSettings

RATE = 44100


@pytest.fixture(scope="module")
def demucs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demucs-models")


def make_engine(cache: Path, batch_segments: int = 1, ref: str = "random:tiny") -> DemucsEngine:
    engine = DemucsEngine(ref, model_dir=None, cache_dir=cache, device="cpu", batch_segments=batch_segments)
    engine.load()
    return engine


def noise(seconds: float, seed: int = 0, channels: int = 2) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, int(RATE * seconds))) * 0.1).astype(np.float32)


def separate(engine: DemucsEngine, mix: np.ndarray, **settings: object) -> tuple[np.ndarray, list[np.ndarray]]:
    blocks: list[np.ndarray] = []
    engine.separate(mix, SeparationSettings(**settings), blocks.append, lambda done, total: None)  # type: ignore[arg-type]
    return np.concatenate(blocks, axis=-1), blocks


def reference(
    engine: DemucsEngine, mix: np.ndarray, *, shifts: int, overlap: float, segment: float | None
) -> np.ndarray:
    from demucs.apply import apply_model

    random.seed(3)  # apply_model draws its (single) shift from the global generator
    out = apply_model(engine.load().model, torch.from_numpy(mix)[None], shifts=shifts, overlap=overlap, segment=segment)
    return out[0].numpy()


@pytest.mark.parametrize(
    ("shifts", "overlap", "segment", "batch"),
    [(0, 0.25, None, 1), (1, 0.25, None, 1), (0, 0.25, 3.0, 3), (0, 0.0, None, 1), (1, 0.1, 4.5, 2)],
)
def test_engine_computes_what_apply_model_computes(
    demucs_cache: Path, shifts: int, overlap: float, segment: float | None, batch: int
) -> None:
    engine = make_engine(demucs_cache, batch)
    mix = noise(11.3)
    ours, blocks = separate(engine, mix, shifts=shifts, overlap=overlap, segment=segment, seed=3, normalize=False)
    expected = reference(engine, mix, shifts=shifts, overlap=overlap, segment=segment)
    assert ours.shape == expected.shape == (4, 2, mix.shape[-1])
    np.testing.assert_allclose(ours, expected, atol=2e-6, rtol=0)
    assert len(blocks) > 1  # streamed, not produced at the end in one piece


def test_normalisation_matches_demucs_separate(demucs_cache: Path) -> None:
    engine = make_engine(demucs_cache)
    mix = noise(9.0) * 3 + 0.05
    ours, _ = separate(engine, mix, shifts=0)
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std()
    expected = reference(engine, (mix - mean) / (std + 1e-8), shifts=0, overlap=0.25, segment=None) * std + mean
    np.testing.assert_allclose(ours, expected, atol=2e-5 * std)


def test_silence_separates_to_silence_not_nan(demucs_cache: Path) -> None:
    ours, _ = separate(make_engine(demucs_cache), np.zeros((2, RATE * 3), np.float32), shifts=1)
    assert np.isfinite(ours).all()


def test_shifts_are_reproducible_per_seed(demucs_cache: Path) -> None:
    engine = make_engine(demucs_cache)
    mix = noise(8.0, seed=1)
    first, _ = separate(engine, mix, shifts=2, seed=11)
    again, _ = separate(engine, mix, shifts=2, seed=11)
    other, _ = separate(engine, mix, shifts=2, seed=12)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-4


def test_unneeded_bag_members_are_not_run(demucs_cache: Path) -> None:
    """A bag with one-hot weights (as htdemucs_ft): a vocals-only job runs only the vocals model."""
    from demucs.apply import BagOfModels

    engine = make_engine(demucs_cache)
    loaded = engine.load()
    single = loaded.sub_models[0]
    bag = BagOfModels([single, single], weights=[[1, 1, 1, 0], [0, 0, 0, 1]])
    object.__setattr__(loaded, "model", bag)
    object.__setattr__(loaded, "sub_models", list(bag.models))
    object.__setattr__(loaded, "weights", bag.weights)
    mix = noise(8.0, seed=2)
    assert engine.batcher is not None
    calls = engine.batcher.calls
    full, _ = separate(engine, mix, shifts=0, normalize=False)
    full_calls = engine.batcher.calls - calls
    calls = engine.batcher.calls
    vocals_only, _ = separate(engine, mix, shifts=0, normalize=False, needed_sources=["vocals"])
    assert engine.batcher.calls - calls == full_calls // 2
    np.testing.assert_allclose(vocals_only[3], full[3], atol=1e-6)


def test_segment_longer_than_a_transformer_model_takes_is_refused(demucs_cache: Path) -> None:
    from soundstage.errors import AppError

    with pytest.raises(AppError, match=r"at most 7\.8 seconds"):
        separate(make_engine(demucs_cache), noise(3.0), segment=9.0)


def test_concurrent_jobs_share_model_calls_and_get_their_own_results(demucs_cache: Path) -> None:
    engine = make_engine(demucs_cache, batch_segments=4)
    mixes = [noise(12.0, seed=seed) for seed in (5, 6)]
    alone = [separate(engine, mix, shifts=0, segment=3.0)[0] for mix in mixes]
    assert engine.batcher is not None
    shared_before = engine.batcher.shared_calls
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(2)

    def job(index: int) -> None:
        start.wait()
        results[index] = separate(engine, mixes[index], shifts=0, segment=3.0)[0]

    threads = [threading.Thread(target=job, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert engine.batcher.shared_calls > shared_before
    for index in range(2):
        np.testing.assert_allclose(results[index], alone[index], atol=1e-5)


def test_a_failing_job_does_not_fail_its_batch_mates() -> None:
    class Model(torch.nn.Module):
        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            if bool((batch < -50).any()):
                raise RuntimeError("poisoned input")
            return batch[:, None].repeat(1, 2, 1, 1)

    model = Model()
    batcher = SegmentBatcher(max_rows=8, device="cpu")
    good = [torch.ones(2, 10) * k for k in range(3)]
    bad = [torch.full((2, 10), -100.0)]
    outcome: dict[str, object] = {}
    gate = threading.Event()

    # Hold the model busy so that both requests are waiting, and then taken in one call.
    real_forward = batcher._forward

    def slow_forward(model_: object, rows: list[torch.Tensor]) -> list[np.ndarray]:
        gate.wait(5)
        return real_forward(model_, rows)

    batcher._forward = slow_forward  # type: ignore[method-assign]

    def run(name: str, rows: list[torch.Tensor]) -> None:
        try:
            outcome[name] = batcher.run(model, rows)
        except RuntimeError as error:
            outcome[name] = error

    threads = [threading.Thread(target=run, args=("warm", [torch.zeros(2, 10)]))]
    threads[0].start()
    threads += [threading.Thread(target=run, args=(name, rows)) for name, rows in (("good", good), ("bad", bad))]
    for thread in threads[1:]:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(timeout=30)
    assert isinstance(outcome["bad"], RuntimeError)
    good_out = outcome["good"]
    assert isinstance(good_out, list) and [float(o[0, 0, 0]) for o in good_out] == [0.0, 1.0, 2.0]
