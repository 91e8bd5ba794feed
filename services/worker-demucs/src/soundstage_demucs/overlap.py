"""Streaming overlap-add: demucs' split separation (``demucs.apply.apply_model``), one segment at a time.

``apply_model`` cuts the mix into segments, runs the model on each (padded with the real neighbouring
samples to the length the model needs), weights each output with a triangle and divides by the summed
weights. It keeps the whole track's output in memory and runs segments one by one. A
:class:`StreamingPass` does the same arithmetic but hands out the segment inputs so that they can be
batched (with other segments and other jobs), and releases each stretch of output as soon as no later
segment overlaps it, so memory stays bounded whatever the track's length.

A pass is one sub-model of a bag with one time shift (``shifts``): demucs pads the mix with
``max_shift`` zeros on both sides, starts the pass ``offset`` samples in, and keeps the output from
``max_shift - offset`` on. With no shifts the pass is the mix itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class PassGeometry:
    source_start: int  # where the pass begins in the (padded) source signal
    length: int  # samples the pass covers
    skip: int  # leading output samples that fall before the original mix (shift padding)
    out_length: int  # length of the original mix
    segment_length: int
    stride: int

    @property
    def segment_offsets(self) -> range:
        return range(0, self.length, self.stride)


@dataclass(frozen=True)
class SegmentInput:
    index: int
    samples: torch.Tensor  # (channels, valid_length), what the model is called on
    chunk_length: int  # samples of the pass this segment contributes to


def triangle_weight(segment_length: int, transition_power: float = 1.0) -> np.ndarray:
    """demucs' segment weight: a triangle peaking mid-segment, normalised to 1, to a power."""
    weight = np.concatenate(
        [np.arange(1, segment_length // 2 + 1), np.arange(segment_length - segment_length // 2, 0, -1)]
    ).astype(np.float32)
    shaped: np.ndarray = (weight / weight.max()) ** transition_power
    return shaped


def window(source: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``source[..., start:start + length]`` with zeros where that leaves the signal (TensorChunk.padded)."""
    total = source.shape[-1]
    lo, hi = max(0, start), min(total, start + length)
    piece = source[..., lo:hi]
    if lo - start or start + length - hi:
        piece = torch.nn.functional.pad(piece, (lo - start, start + length - hi))
    return piece


class StreamingPass:
    """One pass of the overlap-add; segments are handed out and must come back in order."""

    def __init__(
        self,
        model: Any,
        source: torch.Tensor,
        geometry: PassGeometry,
        *,
        valid_length: Callable[[int], int],
        sources: int,
        weight: np.ndarray,
    ) -> None:
        self.model = model  # the (sub-)model this pass runs
        self.source = source
        self.geometry = geometry
        self._valid_length = valid_length
        self._weight = weight
        self._offsets = list(geometry.segment_offsets)
        self._handed_out = 0
        self._done = 0
        channels = source.shape[0]
        # Accumulators cover pass positions [self._base, self._base + width).
        self._base = geometry.skip
        self._sum = np.zeros((sources, channels, 0), dtype=np.float32)
        self._weights = np.zeros(0, dtype=np.float32)

    @property
    def total_segments(self) -> int:
        return len(self._offsets)

    @property
    def remaining(self) -> int:
        return len(self._offsets) - self._handed_out

    def next_inputs(self, count: int) -> list[SegmentInput]:
        inputs = []
        for index in range(self._handed_out, min(self._handed_out + count, len(self._offsets))):
            offset = self._offsets[index]
            chunk = min(self.geometry.length - offset, self.geometry.segment_length)
            valid = self._valid_length(chunk)
            start = self.geometry.source_start + offset - (valid - chunk) // 2
            inputs.append(SegmentInput(index, window(self.source, start, valid), chunk))
        self._handed_out += len(inputs)
        return inputs

    def add(self, segment: SegmentInput, output: np.ndarray) -> None:
        """Add the model's output for ``segment`` (sources, channels, n), center-trimmed as demucs does."""
        if segment.index != self._done:
            raise ValueError(f"segment {segment.index} came back before segment {self._done}")
        chunk = segment.chunk_length
        trim = (output.shape[-1] - chunk) // 2
        output = output[..., trim : trim + chunk]
        offset = self._offsets[segment.index]
        lo = max(offset, self._base)  # positions before the mix (shift padding) are never kept
        hi = offset + chunk
        if hi > lo:
            self._grow(hi - self._base)
            weight = self._weight[lo - offset : hi - offset]
            self._sum[..., lo - self._base : hi - self._base] += weight * output[..., lo - offset : hi - offset]
            self._weights[lo - self._base : hi - self._base] += weight
        self._done += 1

    @property
    def finished(self) -> bool:
        return self._done == len(self._offsets)

    def final_until(self) -> int:
        """Original-mix position up to which the output is final (no later segment reaches back before it)."""
        edge = self.geometry.length if self.finished else self._offsets[self._done]
        return min(max(edge - self.geometry.skip, 0), self.geometry.out_length)

    def take(self, end: int) -> np.ndarray:
        """The final output of original-mix positions [taken so far, end): (sources, channels, n)."""
        count = end + self.geometry.skip - self._base
        if count <= 0:
            return self._sum[..., :0]
        self._grow(count)
        block = self._sum[..., :count] / self._weights[:count]
        self._sum = self._sum[..., count:]
        self._weights = self._weights[count:]
        self._base += count
        return block

    def _grow(self, width: int) -> None:
        missing = width - self._weights.shape[0]
        if missing > 0:
            sources, channels, _ = self._sum.shape
            self._sum = np.concatenate([self._sum, np.zeros((sources, channels, missing), np.float32)], axis=-1)
            self._weights = np.concatenate([self._weights, np.zeros(missing, np.float32)])
