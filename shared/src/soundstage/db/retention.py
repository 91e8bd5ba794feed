"""Which finished jobs retention removes (soundstage.retention): those past RETENTION_HOURS, and the
oldest beyond MAX_STORED_FILES outputs. Only jobs clients submitted (their steps go with them, by the
foreign keys) and only finished ones: a queued or running job is never removed under its worker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soundstage.db.models import Job, JobFile
from soundstage.schemas.common import TERMINAL_VALUES

_FINISHED_AT = func.coalesce(Job.finished_at, Job.created_at)


def expired(session: Session, before: datetime, limit: int) -> list[str]:
    """Finished top-level jobs that ended before ``before``, oldest first."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.parent_id.is_(None), Job.status.in_(TERMINAL_VALUES), before > _FINISHED_AT)
            .order_by(_FINISHED_AT, Job.id)
            .limit(limit)
        )
    )


def over_file_cap(session: Session, cap: int, limit: int) -> list[str]:
    """The oldest finished top-level jobs whose removal brings the listed outputs down to ``cap``."""
    listed = (
        select(JobFile.job_id, func.count().label("files"))
        .join(Job, JobFile.job_id == Job.id)
        .where(Job.parent_id.is_(None))
        .group_by(JobFile.job_id)
        .subquery()
    )
    total = session.scalar(select(func.coalesce(func.sum(listed.c.files), 0))) or 0
    excess = int(total) - cap
    if excess <= 0:
        return []
    rows = session.execute(
        select(Job.id, listed.c.files)
        .join(listed, listed.c.job_id == Job.id)
        .where(Job.status.in_(TERMINAL_VALUES))
        .order_by(_FINISHED_AT, Job.id)
        .limit(limit)
    ).all()
    chosen: list[str] = []
    for job_id, files in rows:
        if excess <= 0:
            break
        chosen.append(job_id)
        excess -= int(files)
    return chosen


def family(session: Session, job_id: str, depth: int) -> list[str]:
    """``job_id`` and every step under it (their stored objects are named after them)."""
    ids, level = [job_id], [job_id]
    for _ in range(depth):
        level = list(session.scalars(select(Job.id).where(Job.parent_id.in_(level))))
        if not level:
            break
        ids.extend(level)
    return ids
