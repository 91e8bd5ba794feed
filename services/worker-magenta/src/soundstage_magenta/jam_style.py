"""A jam's style on its way to the one asked for: the style ramp of the WebSocket protocol.

The style is a MusicCoCa embedding (a blend of prompts); the model is conditioned on its tokens. With a
ramp of R seconds, each chunk of C seconds moves the current embedding toward the target by
``min(1, C / R)`` of the gap that is left, so a change of style glides over about R seconds instead of
jumping at a chunk boundary; without a ramp (R = 0) the target is taken at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from soundstage_magenta.job import Embedding

ARRIVED = 1e-3
"""A gap smaller than this (relative to the target's size) counts as arrived: the target is taken as is."""


class StyleRamp:
    def __init__(self, tokens_of: Callable[[Embedding], list[int]], target: Embedding | None, ramp_seconds: float):
        """Start at ``target`` (None: no style conditioning); ``tokens_of`` tokenises an embedding."""
        self._tokens_of = tokens_of
        self.ramp_seconds = ramp_seconds
        self.current = target
        self.target = target
        self._tokens = None if target is None else tokens_of(target)

    @property
    def tokens(self) -> list[int] | None:
        return self._tokens

    def retarget(self, target: Embedding | None, ramp_seconds: float | None = None) -> None:
        """Head for ``target`` from the next chunk (without a ramp, or from or to no style: at once)."""
        if ramp_seconds is not None:
            self.ramp_seconds = ramp_seconds
        self.target = target
        if self.ramp_seconds <= 0 or target is None or self.current is None:
            self._arrive()

    def step(self, chunk_seconds: float) -> list[int] | None:
        """The tokens of the next chunk's style: ``min(1, chunk / ramp)`` of the gap closer to the target."""
        if self.target is None or self.current is None or self.current is self.target:
            return self._tokens
        fraction = 1.0 if self.ramp_seconds <= 0 else min(1.0, chunk_seconds / self.ramp_seconds)
        moved = (self.current + np.float32(fraction) * (self.target - self.current)).astype(np.float32)
        scale = float(np.linalg.norm(self.target)) or 1.0
        if fraction >= 1.0 or float(np.linalg.norm(self.target - moved)) <= ARRIVED * scale:
            self._arrive()
        else:
            self.current = moved
            self._tokens = self._tokens_of(moved)
        return self._tokens

    def _arrive(self) -> None:
        self.current = self.target
        self._tokens = None if self.target is None else self._tokens_of(self.target)
