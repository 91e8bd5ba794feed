"""SQLAlchemy 2 models: jobs and the files they produced.

The schema itself is created only by the Alembic migrations in `soundstage.migrations`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


ID_LENGTH = 36
"""Job ids are canonical UUID strings (`str(uuid4())`), as musicgen-api and its clients use them."""


def new_job_id() -> str:
    """A fresh job id: a canonical UUID string (36 characters, as musicgen-api's clients expect), safe in
    object names and URLs."""
    return str(uuid.uuid4())


class Job(Base):
    """One job. A multi-step job (a soundtrack) is a parent whose steps are child jobs (``parent_id``), each
    on the pool that owns its model; the rows are the one source of truth for the whole pipeline."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("parent_id", "step", name="uq_jobs_parent_step"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    queue: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str | None] = mapped_column(String(512))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # {current_scene, total_scenes, stage, message} (schemas.jobs.ProgressDetail), or null.
    progress_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # a hash of the submitting API key
    audio_seconds: Mapped[float | None] = mapped_column(Float)  # audio asked for: counts against a daily quota
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Refreshed by the worker running the job (claim and every progress write).
    heartbeat_at: Mapped[datetime | None]
    # Pipelines: a child names its parent and its step (unique per parent, so a redelivered stage that
    # creates its steps again finds them instead of making a second set); `stage` is where a parent is
    # (generating, separating, ...) or which stage a child belongs to; `pipeline` holds what the parent
    # needs of a child while it runs: the share of the parent's progress it covers and the detail to show.
    parent_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(32))
    pipeline: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    files: Mapped[list[JobFile]] = relationship(
        back_populates="job", order_by="JobFile.position", lazy="selectin", cascade="all, delete-orphan"
    )


class JobFile(Base):
    """One output file; `name` is the object's name in storage (unique across jobs)."""

    __tablename__ = "job_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(index=True)

    job: Mapped[Job] = relationship(back_populates="files")


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` and the job it created: the same key and request give that job again
    (for IDEMPOTENCY_HOURS); the same key with another request is refused. Removed with its job."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)  # whose key: a hash of the API key
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request (route, query, body)
    job_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)


class ApiKey(Base):
    """An API key made with ``soundstage keys create``: only its SHA-256 is kept, never the key. A revoked
    key stays listed (and keeps auth on: revoking the last key never opens the API)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # short: typed to revoke it
    name: Mapped[str] = mapped_column(String(128))
    shown: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
