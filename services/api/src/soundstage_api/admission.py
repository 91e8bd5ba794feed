"""Per-key admission of a new job, from the database: at most MAX_ACTIVE_JOBS_PER_KEY queued or running
(429 `too_many_active_jobs`), and at most DAILY_AUDIO_SECONDS_PER_KEY seconds of audio asked for per UTC
day (429 `quota_exhausted`, 406 on the hosted MusicGen API's route, which answers so when credits run
out). Failed and cancelled jobs give their seconds back. Every answer to a key carries
`X-Remaining-Credits` (the seconds left today) while the quota is on.

Two submissions racing past a limit at the same instant can both be admitted: the limits are counted, not
locked, which costs at most one job per concurrent request over the line.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from soundstage.db import JobRepository
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.common import JobKind
from soundstage.settings import Settings

CREDITS_HEADER = "X-Remaining-Credits"
ACTIVE_RETRY_SECONDS = 5
_quota_status: ContextVar[int] = ContextVar("soundstage_quota_status", default=429)


def answer_quota_with(status_code: int) -> None:
    """Make a spent quota answer ``status_code`` for the rest of this request (406 for the hosted API)."""
    _quota_status.set(status_code)


def requested_seconds(kind: JobKind, params: dict[str, Any]) -> float:
    """Seconds of audio a job asks to generate: a generation's (or style or loop generation's) duration, a
    soundtrack's scenes; 0 for separation, embeddings and mixing (they make no new music)."""
    if kind in (JobKind.GENERATE, JobKind.STYLE, JobKind.LOOP):
        return float(params.get("duration") or 0.0)
    if kind is JobKind.SOUNDTRACK:
        return float(sum(float(scene.get("duration") or 0.0) for scene in params.get("scenes") or []))
    return 0.0


def start_of_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def remaining_credits(settings: Settings, repo: JobRepository, owner: str) -> float:
    return max(0.0, settings.daily_audio_seconds_per_key - repo.audio_seconds_since(owner, start_of_day()))


def admit(settings: Settings, repo: JobRepository, owner: str, seconds: float) -> None:
    """Refuse a job of ``seconds`` for ``owner`` that passes its key's limits (blocking: queries the database)."""
    cap = settings.max_active_jobs_per_key
    if cap and (active := repo.active_jobs(owner)) >= cap:
        raise AppError(
            ErrorCode.TOO_MANY_ACTIVE_JOBS,
            f"This API key has {active} jobs queued or running, the most it may (MAX_ACTIVE_JOBS_PER_KEY); "
            "submit again once one has finished.",
            status_code=429,
            headers={"Retry-After": str(ACTIVE_RETRY_SECONDS)},
            details={"active": active, "limit": cap},
        )
    quota = settings.daily_audio_seconds_per_key
    if not quota or seconds <= 0:
        return
    left = remaining_credits(settings, repo, owner)
    if seconds > left:
        until_midnight = start_of_day() + timedelta(days=1) - datetime.now(UTC)
        raise AppError(
            ErrorCode.QUOTA_EXHAUSTED,
            f"This API key has {left:g} s of audio left today and the request asks for {seconds:g} s "
            "(DAILY_AUDIO_SECONDS_PER_KEY; the day is counted in UTC).",
            status_code=_quota_status.get(),
            headers={CREDITS_HEADER: _credits(left), "Retry-After": str(math.ceil(until_midnight.total_seconds()))},
            details={"remaining_seconds": left, "requested_seconds": seconds, "daily_seconds": quota},
        )


def _credits(seconds: float) -> str:
    return f"{seconds:g}"


def credits_header(settings: Settings, repo: JobRepository, owner: str) -> str:
    return _credits(remaining_credits(settings, repo, owner))
