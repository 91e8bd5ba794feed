"""What one key (its owner hash) has in flight and has asked for: the admission checks' queries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soundstage.db.models import Job
from soundstage.schemas.common import JobStatus

_ACTIVE = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)
_NOT_CHARGED = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)


def active_jobs(session: Session, owner: str) -> int:
    """The owner's submissions (not their steps) that are queued or running."""
    query = select(func.count()).where(Job.owner == owner, Job.parent_id.is_(None), Job.status.in_(_ACTIVE))
    return int(session.scalar(query) or 0)


def audio_seconds_since(session: Session, owner: str, since: datetime) -> float:
    """Seconds of audio the owner's submissions since ``since`` asked for, failed and cancelled ones aside."""
    query = select(func.coalesce(func.sum(Job.audio_seconds), 0.0)).where(
        Job.owner == owner,
        Job.parent_id.is_(None),
        Job.created_at >= since,
        Job.status.not_in(_NOT_CHARGED),
    )
    return float(session.scalar(query) or 0.0)
