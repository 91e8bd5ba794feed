"""The Demucs engine of a worker: one loaded model, separations streamed segment by segment.

:meth:`DemucsEngine.separate` computes what ``demucs.apply.apply_model(model, mix, shifts, split=True,
overlap, segment)`` computes, wrapped in demucs' own input normalisation (as ``demucs.separate`` does),
but it streams the result: each stretch of output is handed to ``on_block`` as soon as it is final, so a
long track never sits in memory as stems. Segments go through the engine's :class:`SegmentBatcher`,
shared by every job the worker runs, so concurrent separations share the model's calls.

Shifts are drawn from ``random.Random(seed)`` in apply_model's order (sub-model, then shift), so a job
with a fixed seed (the worker derives it from the job id) gives the same stems when it is retried.
Sub-models of a bag whose weights are zero for every source a job needs are not run at all (e.g. the
vocals-only model of ``htdemucs_ft`` for a two-stem job).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import ModelCapabilities
from soundstage_demucs.batcher import SegmentBatcher
from soundstage_demucs.loading import LoadedSeparator, load_separator
from soundstage_demucs.overlap import PassGeometry, SegmentInput, StreamingPass, triangle_weight

logger = logging.getLogger(__name__)

MAX_SHIFT_SECONDS = 0.5  # demucs: shifts move the mix by up to half a second
NORMALIZE_EPSILON = 1e-8


@dataclass(frozen=True)
class SeparationSettings:
    shifts: int = 1
    overlap: float = 0.25
    segment: float | None = None  # seconds; None: each model's own
    seed: int = 0
    needed_sources: Sequence[str] | None = None  # None: every source
    normalize: bool = True  # demucs.separate's mix normalisation (mean/std of the mono mix)


BlockSink = Callable[[np.ndarray], None]
Progress = Callable[[int, int], None]


class DemucsEngine:
    def __init__(
        self, model_ref: str, *, model_dir: Path | None, cache_dir: Path, device: str, batch_segments: int
    ) -> None:
        self.model_ref = model_ref
        self._model_dir = model_dir
        self._cache_dir = cache_dir
        self._device = device
        self._batch_segments = batch_segments
        self._lock = threading.Lock()
        self._loaded: LoadedSeparator | None = None
        self.batcher: SegmentBatcher | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> LoadedSeparator:
        """Load the model once (thread-safe); later calls return it at once."""
        with self._lock:
            if self._loaded is None:
                loaded = load_separator(
                    self.model_ref, model_dir=self._model_dir, cache_dir=self._cache_dir, device=self._device
                )
                rows = self._batch_segments or (8 if loaded.device == "cuda" else 1)
                self.batcher = SegmentBatcher(max_rows=rows, device=loaded.device)
                self._loaded = loaded
            return self._loaded

    @property
    def info(self) -> LoadedSeparator:
        """The loaded model and its facts (loads it on first use)."""
        return self.load()

    def capabilities(self) -> ModelCapabilities:
        """What the loaded model can do, for the worker's heartbeat (the API validates requests against it)."""
        loaded = self.load()
        return ModelCapabilities(
            model=self.model_ref,
            sample_rate=loaded.sample_rate,
            channels=loaded.audio_channels,
            sources=list(loaded.sources),
            max_segment=loaded.max_segment,
            random_weights=loaded.random_weights,
        )

    def separate(
        self, mix: np.ndarray, settings: SeparationSettings, on_block: BlockSink, on_progress: Progress
    ) -> None:
        """Separate ``mix`` (channels, samples) at the model's rate and channel count. ``on_block`` gets the
        sources (sources, channels, n) in order, covering the mix exactly once."""
        loaded = self.load()
        batcher = self.batcher
        if batcher is None:  # set by load()
            raise RuntimeError("engine not loaded")
        self._check_segment(settings.segment, loaded)
        wav = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))
        mean, std = 0.0, 1.0
        if settings.normalize:
            reference = wav.mean(0)
            mean, std = float(reference.mean()), float(reference.std()) + NORMALIZE_EPSILON
            wav = (wav - mean) / std
        passes, weights = self._plan(wav, settings, loaded)
        total = sum(p.total_segments for p in passes)
        done = 0
        emitted = 0
        length = wav.shape[-1]
        on_progress(0, total)
        with batcher.joined():
            while emitted < length:
                done = self._advance(batcher, passes, done, total, on_progress)
                end = min(stream.final_until() for stream in passes)
                if end > emitted:
                    block = sum(
                        (w[:, None, None] * stream.take(end) for stream, w in zip(passes, weights, strict=True)),
                        start=np.zeros((len(loaded.sources), wav.shape[0], end - emitted), np.float32),
                    )
                    on_block((block * std + mean).astype(np.float32, copy=False))
                    emitted = end

    @staticmethod
    def _advance(
        batcher: SegmentBatcher, passes: list[StreamingPass], done: int, total: int, on_progress: Progress
    ) -> int:
        """Run each pass's next segments (this job's share of a model call); returns segments done."""
        for stream in passes:
            if stream.remaining:
                segments = stream.next_inputs(batcher.share)
                outputs = batcher.run(stream.model, [s.samples for s in segments])
                for segment, output in zip(segments, outputs, strict=True):
                    stream.add(segment, output)
                done += len(segments)
                on_progress(done, total)
        return done

    def _plan(
        self, wav: torch.Tensor, settings: SeparationSettings, loaded: LoadedSeparator
    ) -> tuple[list[StreamingPass], list[np.ndarray]]:
        """One pass per (sub-model, shift), weighted as apply_model weights bags and averages shifts."""
        length = wav.shape[-1]
        needed = [loaded.sources.index(name) for name in (settings.needed_sources or loaded.sources)]
        totals = np.sum(np.asarray(loaded.weights, dtype=np.float32), axis=0)
        max_shift = int(MAX_SHIFT_SECONDS * loaded.sample_rate)
        shifts = settings.shifts
        source = torch.nn.functional.pad(wav, (max_shift, max_shift)) if shifts else wav
        rng = random.Random(settings.seed)  # noqa: S311 - reproducible shifts, not security
        passes: list[StreamingPass] = []
        weights: list[np.ndarray] = []
        for model, model_weights in zip(loaded.sub_models, loaded.weights, strict=True):
            weight = np.asarray(model_weights, dtype=np.float32) / totals / max(shifts, 1)
            offsets = [rng.randint(0, max_shift) for _ in range(shifts)] if shifts else [None]
            if not any(weight[index] for index in needed):
                continue  # contributes nothing this job keeps (the random draws above keep apply_model's order)
            segment = settings.segment if settings.segment is not None else float(model.segment)
            segment_length = int(loaded.sample_rate * segment)
            stride = int((1 - settings.overlap) * segment_length)
            for offset in offsets:
                if offset is None:
                    geometry = PassGeometry(0, length, 0, length, segment_length, stride)
                else:
                    geometry = PassGeometry(offset, length + max_shift - offset, max_shift - offset, length,
                                            segment_length, stride)  # fmt: skip
                stream = StreamingPass(
                    model,
                    source,
                    geometry,
                    valid_length=_valid_length(model, settings.segment, loaded.sample_rate),
                    sources=len(loaded.sources),
                    weight=triangle_weight(segment_length),
                )
                passes.append(stream)
                weights.append(weight)
        return passes, weights

    @staticmethod
    def _check_segment(segment: float | None, loaded: LoadedSeparator) -> None:
        limit = loaded.max_segment
        if segment is not None and limit is not None and segment > limit:
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                f"segment must be at most {limit:g} seconds for this model (a transformer model cannot take "
                "longer segments than it was trained on).",
                status_code=422,
            )


def _valid_length(model: Any, segment: float | None, sample_rate: int) -> Callable[[int], int]:
    """The input length the model is called with for a chunk of n samples (as apply_model decides it)."""
    from demucs.htdemucs import HTDemucs

    if isinstance(model, HTDemucs) and segment is not None:
        fixed = int(segment * sample_rate)
        return lambda _: fixed
    if hasattr(model, "valid_length"):
        return lambda n: int(model.valid_length(n))
    return lambda n: n


__all__ = ["DemucsEngine", "LoadedSeparator", "SegmentInput", "SeparationSettings"]
