"""A jam's window and playback clock: a chunk waits while it would be more than max_ahead chunks past the
last one acknowledged, in real time also past what plays now; lateness counts from the playback deadline."""

from __future__ import annotations

import pytest
from soundstage_magenta.jam_pacing import IDLE_POLL_SECONDS, lateness_of, window_wait


def _wait(index: int, **overrides: object) -> float:
    fields: dict[str, object] = {
        "acknowledged": 0,
        "max_ahead": 2,
        "realtime": False,
        "anchor": None,
        "chunk_seconds": 2.0,
        "now": 100.0,
    }
    return window_wait(index, **(fields | overrides))  # type: ignore[arg-type]


def test_the_first_chunk_never_waits_and_the_window_is_max_ahead_past_what_was_acknowledged() -> None:
    assert _wait(1) == 0.0
    assert _wait(2) == 0.0 and _wait(3) == IDLE_POLL_SECONDS  # 2 ahead of nothing consumed: chunks 1 and 2
    assert _wait(3, acknowledged=1) == 0.0 and _wait(4, acknowledged=1) == IDLE_POLL_SECONDS


def test_in_real_time_a_chunk_waits_for_the_playback_clock() -> None:
    anchor = (100.0, 1)  # chunk 1 started playing at t=100
    assert _wait(3, acknowledged=5, realtime=True, anchor=anchor) == 0.0  # 2 ahead of chunk 1: now
    assert _wait(4, acknowledged=5, realtime=True, anchor=anchor) == pytest.approx(2.0)  # once chunk 2 plays
    assert _wait(4, acknowledged=5, realtime=True, anchor=anchor, now=103.0) == 0.0
    assert _wait(4, acknowledged=5, realtime=False, anchor=anchor) == 0.0  # asap: no clock
    assert _wait(8, acknowledged=1, realtime=True, anchor=anchor, now=1000.0) == IDLE_POLL_SECONDS  # window too


def test_lateness_is_measured_from_the_playback_deadline() -> None:
    anchor = (100.0, 1)
    assert lateness_of(2, 101.5, anchor, 2.0) == 0.0  # due at 102
    assert lateness_of(2, 102.5, anchor, 2.0) == pytest.approx(0.5)
    assert lateness_of(5, 106.0, (105.0, 4), 2.0) == 0.0  # a consume moved the anchor: due at 107
