"""Long-form window planning (pure)."""

from __future__ import annotations

import pytest

from soundstage_musicgen.windows import CONTEXT_FRAMES, EXTEND_STRIDE_FRAMES, WINDOW_FRAMES, plan_windows


def test_short_piece_is_one_full_window() -> None:
    assert [(w.context_frames, w.new_frames) for w in plan_windows(1500)] == [(0, 1500)]
    assert [(w.context_frames, w.new_frames) for w in plan_windows(123)] == [(0, 123)]


def test_long_piece_extends_by_the_stride_with_twelve_seconds_of_context() -> None:
    windows = plan_windows(3500)  # 70 s
    # The last, short window keeps as much context as fits: 26 s before its 4 s.
    assert [(w.context_frames, w.new_frames) for w in windows] == [(0, 1500), (600, 900), (600, 900), (1300, 200)]
    assert sum(w.new_frames for w in windows) == 3500
    assert CONTEXT_FRAMES == 600 and EXTEND_STRIDE_FRAMES == 900


@pytest.mark.parametrize("total", [1, 4, 1499, 1500, 1501, 2400, 2401, 30000, 30001])
@pytest.mark.parametrize("prompt", [0, 1, 200, 600, 1000, 1500, 5000])
def test_every_window_fits_the_model_and_the_total_is_exact(total: int, prompt: int) -> None:
    windows = plan_windows(total, prompt)
    assert sum(w.new_frames for w in windows) == total
    available = prompt
    for window in windows:
        assert window.context_frames + window.new_frames <= WINDOW_FRAMES
        assert window.context_frames <= available
        assert window.new_frames > 0
        available += window.new_frames


def test_a_short_continuation_keeps_the_whole_prompt_as_context() -> None:
    assert [(w.context_frames, w.new_frames) for w in plan_windows(250, prompt_frames=1000)] == [(1000, 250)]
    assert [(w.context_frames, w.new_frames) for w in plan_windows(250, prompt_frames=5000)] == [(1250, 250)]


def test_nothing_to_generate_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan_windows(0)
