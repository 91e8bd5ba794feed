"""Rows of ``Idempotency-Key``: which job a client's key created, and a fingerprint of the request.

Written in the transaction that creates the job, so a key never names a job that does not exist and a
job is never created twice for one key: of two requests racing with the same key, the second one's
insert breaks the primary key, its transaction (its job row too) rolls back, and it answers with the
first one's job (:class:`IdempotencyRaceError`). A key older than the window counts as unused: its row is
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from soundstage.db.models import IdempotencyKey, utcnow


@dataclass(frozen=True)
class IdempotencyRecord:
    scope: str  # whose key it is (a hash of the API key, or "public" with auth off)
    key: str
    fingerprint: str
    since: datetime  # rows created before this are expired


@dataclass(frozen=True)
class Prior:
    """The job a key created earlier, and the fingerprint of the request that created it."""

    job_id: str
    fingerprint: str


class IdempotencyRaceError(Exception):
    """Another request with the same key created its job while this one was being made."""


def find(session: Session, scope: str, key: str, since: datetime) -> Prior | None:
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key, IdempotencyKey.created_at >= since
        )
    )
    return Prior(row.job_id, row.fingerprint) if row is not None else None


def record(session: Session, entry: IdempotencyRecord, job_id: str) -> None:
    """Add the row of ``entry`` for ``job_id`` (flushed: a race shows here), replacing an expired one."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == entry.scope,
            IdempotencyKey.key == entry.key,
            IdempotencyKey.created_at < entry.since,
        )
    )
    session.add(
        IdempotencyKey(
            scope=entry.scope, key=entry.key, fingerprint=entry.fingerprint, job_id=job_id, created_at=utcnow()
        )
    )
    session.flush()
