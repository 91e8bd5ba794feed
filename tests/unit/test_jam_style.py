"""The style ramp of a jam: each chunk closes min(1, chunk / ramp) of the gap to the target; without a ramp
the target is taken at once; the tokens follow the current embedding."""

from __future__ import annotations

import numpy as np
import pytest
from soundstage_magenta.jam_style import StyleRamp


def _tokens(embedding: np.ndarray) -> list[int]:
    return [round(float(value) * 1000) for value in embedding]


def test_each_chunk_closes_its_share_of_the_gap() -> None:
    start, target = np.zeros(2, np.float32), np.array([1.0, -1.0], np.float32)
    ramp = StyleRamp(_tokens, start, ramp_seconds=8.0)
    assert ramp.tokens == [0, 0]
    ramp.retarget(target)
    assert ramp.step(2.0) == [250, -250]  # 2 s chunks, 8 s ramp: a quarter of the gap
    assert ramp.step(2.0) == [438, -438]  # a quarter of what is left: 0.25 + 0.75 * 0.25
    for _ in range(40):
        ramp.step(2.0)
    assert ramp.tokens == [1000, -1000] and ramp.current is ramp.target  # arrived, then taken as is


def test_a_chunk_as_long_as_the_ramp_arrives_at_once_and_no_ramp_jumps() -> None:
    ramp = StyleRamp(_tokens, np.zeros(2, np.float32), ramp_seconds=2.0)
    ramp.retarget(np.ones(2, np.float32))
    assert ramp.step(4.0) == [1000, 1000]
    ramp.retarget(np.full(2, 3.0, np.float32), ramp_seconds=0.0)
    assert ramp.tokens == [3000, 3000]  # at once, before the next step
    assert ramp.step(2.0) == [3000, 3000]


@pytest.mark.parametrize("target", [None, np.ones(2, np.float32)])
def test_from_or_to_no_style_is_at_once(target: np.ndarray | None) -> None:
    ramp = StyleRamp(_tokens, None if target is not None else np.ones(2, np.float32), ramp_seconds=10.0)
    ramp.retarget(target)
    assert ramp.tokens == (None if target is None else [1000, 1000])
