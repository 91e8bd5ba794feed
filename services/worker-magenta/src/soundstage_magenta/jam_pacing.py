"""A jam's pacing and playback clock, as pure functions of what the session knows (unit-tested apart).

**Pacing.** Chunk k is generated only while it is at most `max_ahead` chunks past what the client consumed
(or, with ``Consumption.DELIVERED``, past what was sent to it, until it sends a `consume`); at
``Pace.REALTIME`` also only once wall-clock playback is within `max_ahead` chunks of it.

**Lateness.** A chunk's playback deadline is when its client would start playing it if it played on
without a break from the last chunk it consumed (from the first chunk until it consumes one). A chunk
ready after its deadline is late: an underrun (the client had nothing to play), counted in the session's
figures, its `chunk` event and the fleet's metrics (``telemetry.record_jam_chunk``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

IDLE_POLL_SECONDS = 0.5
"""How often a session waiting for its window checks its client and its controls."""


@dataclass
class SessionFigures:
    """What a session reports of itself (`/health`, the `status` route)."""

    chunks: int = 0
    underruns: int = 0
    max_lateness: float = 0.0
    first_chunk_seconds: float | None = None
    compute_seconds: float = 0.0
    started_at: float = field(default_factory=time.time)

    def real_time_factor(self, chunk_seconds: float) -> float | None:
        """Seconds of audio made per second spent making it."""
        return round(self.chunks * chunk_seconds / self.compute_seconds, 3) if self.compute_seconds > 0 else None


def window_wait(
    index: int,
    *,
    acknowledged: int,
    max_ahead: int,
    realtime: bool,
    anchor: tuple[float, int] | None,
    chunk_seconds: float,
    now: float,
) -> float:
    """Seconds chunk ``index`` waits before it is made (0: now): it must be at most ``max_ahead`` chunks past
    the last one ``acknowledged`` (consumed, or delivered); in real time, also at most ``max_ahead`` chunks
    past what plays now (``anchor``: (time, chunk) when that chunk started playing)."""
    if index == 1:
        return 0.0
    if index > acknowledged + max_ahead:
        return IDLE_POLL_SECONDS
    if realtime and anchor is not None:
        anchor_time, anchor_index = anchor
        return max(0.0, anchor_time + (index - anchor_index - max_ahead) * chunk_seconds - now)
    return 0.0


def lateness_of(index: int, ready: float, anchor: tuple[float, int], chunk_seconds: float) -> float:
    """How long after its playback deadline chunk ``index`` was ready at ``ready`` (0: in time): the deadline
    is when it would start playing, playing on without a break from ``anchor`` ((time, chunk) when that
    chunk started playing)."""
    anchor_time, anchor_index = anchor
    return max(0.0, ready - (anchor_time + (index - anchor_index) * chunk_seconds))
