"""Job repository: every read and state transition of a job row, in one place.

State changes are conditional UPDATEs (`... WHERE status = ...`) so that the API and
any number of workers can race without a job ever moving backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soundstage.db import handback, usage
from soundstage.db import idempotency as idempotency_rows
from soundstage.db import retention as retention_rows
from soundstage.db.family import MAX_DEPTH, Family, cancel_jobs, move_parent_progress, new_job
from soundstage.db.handback import Publish
from soundstage.db.idempotency import IdempotencyRaceError, IdempotencyRecord, Prior
from soundstage.db.models import Job, JobFile, utcnow
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.common import TERMINAL_VALUES, JobStatus


@dataclass(frozen=True)
class NewFile:
    """An output file already written to storage, to be recorded on the job."""

    name: str
    content_type: str
    size_bytes: int
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


class ClaimOutcome(Enum):
    RUN = "run"
    SKIP = "skip"  # terminal already (duplicate delivery) or unknown job
    CANCELLED = "cancelled"  # cancel was requested before a redelivery
    GAVE_UP = "gave_up"  # delivered too many times (crashed its worker each time)
    BUSY = "busy"  # running elsewhere with a fresh heartbeat: look again later


class Progress(Enum):
    """What a progress write found."""

    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    NOT_OURS = "not_ours"  # the row no longer names this run's worker: handed back or reaped


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job: Job | None = None


def detail(message: str | None) -> dict[str, Any] | None:
    """A progress detail (schemas.jobs.ProgressDetail) that only says what is happening."""
    return None if message is None else {"message": message}


class JobRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ API side
    def create(
        self,
        *,
        kind: str,
        queue: str,
        model: str | None,
        params: dict[str, Any],
        job_id: str | None = None,
        idempotency: IdempotencyRecord | None = None,
        owner: str | None = None,
        audio_seconds: float | None = None,
    ) -> Job:
        """Insert a queued job. ``job_id`` (from :func:`new_job_id`) lets a caller name objects
        after the job before the row exists; by default a new id is made. With ``idempotency`` the key's
        row is written in the same transaction; :class:`IdempotencyRaceError` when another request took
        the key first (nothing was written)."""
        job = new_job(
            kind=kind, queue=queue, model=model, params=params, job_id=job_id, owner=owner, audio_seconds=audio_seconds
        )
        try:
            with self._sessions.begin() as session:
                session.add(job)
                if idempotency is not None:
                    session.flush()  # the job first: the key's row refers to it
                    idempotency_rows.record(session, idempotency, job.id)
        except IntegrityError as error:
            if idempotency is None:
                raise
            raise IdempotencyRaceError from error
        return job

    def prior_job(self, scope: str, key: str, since: datetime) -> Prior | None:
        """The job ``key`` of ``scope`` created since ``since``, if any."""
        with self._sessions() as session:
            return idempotency_rows.find(session, scope, key, since)

    def delete(self, job_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(Job).where(Job.id == job_id))

    def get(self, job_id: str) -> Job | None:
        with self._sessions() as session:
            return session.get(Job, job_id)

    def list_jobs(
        self,
        *,
        status: str | None,
        kind: str | None,
        limit: int,
        skip: int,
        parent_id: str | None = None,
        only_owner: str | None = None,
    ) -> tuple[list[Job], int]:
        """Jobs newest first: those a client submitted, or with ``parent_id`` the steps of that job; with
        ``only_owner``, only that owner's."""
        conditions = [Job.parent_id.is_(None) if parent_id is None else Job.parent_id == parent_id]
        if only_owner is not None:
            conditions.append(Job.owner == only_owner)
        if status:
            conditions.append(Job.status == status)
        if kind:
            conditions.append(Job.kind == kind)
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            rows = session.scalars(
                select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(skip)
            ).all()
            return list(rows), total

    def request_cancel(self, job_id: str) -> tuple[Job, bool]:
        """Cancel a job: a queued one is cancelled at once, a running one at its next progress update.
        The job's steps (child jobs, and theirs) are cancelled the same way.

        Returns the job and whether this call cancelled a queued job (it never reaches a worker,
        so the caller counts it)."""
        with self._sessions.begin() as session:
            cancelled_queued = cancel_jobs(session, [job_id]) > 0
            level = [job_id]
            for _ in range(MAX_DEPTH):
                level = list(session.scalars(select(Job.id).where(Job.parent_id.in_(level))))
                if not level:
                    break
                cancel_jobs(session, level)
        job = self.get(job_id)
        if job is None:
            raise AppError(ErrorCode.JOB_NOT_FOUND, f"No job with id {job_id!r}.", status_code=404)
        if job.status in (JobStatus.COMPLETED.value, JobStatus.FAILED.value):
            raise AppError(
                ErrorCode.JOB_ALREADY_FINISHED,
                f"Job {job_id} already ended with status {job.status!r}; nothing to cancel.",
                status_code=409,
            )
        return job, bool(cancelled_queued)

    @contextmanager
    def family(self, parent_id: str) -> Iterator[Family]:
        """A parent job locked for one transaction, with all of its children (see :mod:`soundstage.db.family`).
        Everything done through the Family is committed together when the block ends."""
        with self._sessions.begin() as session:
            parent = session.get(Job, parent_id, with_for_update=True)
            children = session.scalars(select(Job).where(Job.parent_id == parent_id)).all() if parent else []
            yield Family(session=session, parent=parent, children={child.step or child.id: child for child in children})

    def children(self, parent_id: str) -> list[Job]:
        """The steps of a job, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.created_at, Job.id))
            return list(rows.all())

    def list_files(self, *, limit: int, skip: int, only_owner: str | None = None) -> list[JobFile]:
        """The outputs of the jobs clients submitted, newest first (a multi-step job's steps' intermediate
        audio is not listed: it is theirs, and it goes when the job ends); with ``only_owner``, that owner's."""
        owned = [Job.owner == only_owner] if only_owner is not None else []
        with self._sessions() as session:
            rows = session.scalars(
                select(JobFile)
                .join(Job, JobFile.job_id == Job.id)
                .where(Job.parent_id.is_(None), *owned)
                .order_by(JobFile.created_at.desc(), JobFile.id.desc())
                .limit(limit)
                .offset(skip)
            ).all()
            return list(rows)

    def active_jobs(self, owner: str) -> int:
        with self._sessions() as session:
            return usage.active_jobs(session, owner)

    def audio_seconds_since(self, owner: str, since: datetime) -> float:
        with self._sessions() as session:
            return usage.audio_seconds_since(session, owner, since)

    def count_by_status(self) -> dict[str, int]:
        """Jobs clients submitted, by status (steps of multi-step jobs are counted in their job)."""
        with self._sessions() as session:
            rows = session.execute(
                select(Job.status, func.count()).where(Job.parent_id.is_(None)).group_by(Job.status)
            ).all()
            return dict(rows)

    def expired_jobs(self, before: datetime, limit: int) -> list[str]:
        """Finished jobs clients submitted that ended before ``before``, oldest first."""
        with self._sessions() as session:
            return retention_rows.expired(session, before, limit)

    def jobs_over_file_cap(self, cap: int, limit: int) -> list[str]:
        """The oldest finished jobs whose removal brings the listed outputs (``GET /files/``) down to ``cap``."""
        with self._sessions() as session:
            return retention_rows.over_file_cap(session, cap, limit)

    def family_ids(self, job_id: str) -> list[str]:
        """``job_id`` and the ids of all its steps."""
        with self._sessions() as session:
            return retention_rows.family(session, job_id, MAX_DEPTH)

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))

    # --------------------------------------------------------------- worker side
    def claim(self, job_id: str, *, worker: str, max_attempts: int, stale_after_s: float) -> Claim:
        """Take a delivered job: mark it processing and count the attempt.

        A job already processing is taken over only when its heartbeat is older than
        ``stale_after_s`` (its worker died); otherwise the delivery is a duplicate of a live
        run (BUSY) and must not start a second one."""
        now = utcnow()
        with self._sessions.begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.status in TERMINAL_VALUES:
                return Claim(ClaimOutcome.SKIP, job)
            if (
                job.status == JobStatus.PROCESSING.value
                and job.heartbeat_at is not None
                and (now - job.heartbeat_at).total_seconds() < stale_after_s
            ):
                return Claim(ClaimOutcome.BUSY, job)
            if job.cancel_requested:
                _finish(job, JobStatus.CANCELLED, now, detail="cancelled")
                return Claim(ClaimOutcome.CANCELLED, job)
            if job.attempts >= max_attempts:
                _finish(job, JobStatus.FAILED, now, detail="failed")
                job.error_code = ErrorCode.ATTEMPTS_EXHAUSTED.value
                job.error = (
                    f"The job was started {job.attempts} times (MAX_JOB_ATTEMPTS) and its worker stopped "
                    "each time before it finished (a crash or out of memory); giving up."
                )
                return Claim(ClaimOutcome.GAVE_UP, job)
            job.status = JobStatus.PROCESSING.value
            job.attempts += 1
            job.worker = worker
            job.started_at = now
            job.heartbeat_at = now
            job.progress = 0.0
            job.progress_detail = detail("starting")
            return Claim(ClaimOutcome.RUN, job)

    def update_progress(self, job_id: str, progress: float, message: str | None, *, worker: str) -> Progress:
        """Store the progress of ``worker``'s run of a job, and say whether its cancellation was requested or
        the job is no longer that run's. A step of a pipeline moves its parent's progress too (within the
        share the step covers, never backwards), and the parent shows the step's detail."""
        percent = max(0.0, min(progress, 100.0))
        now = utcnow()
        with self._sessions.begin() as session:
            row = session.execute(
                select(Job.parent_id, Job.pipeline, Job.status, Job.worker).where(Job.id == job_id)
            ).one_or_none()
            if row is None or row.status != JobStatus.PROCESSING.value or row.worker != worker:
                return Progress.NOT_OURS
            # The parent's row first, then the step's: the order in which the parent's advance and a
            # cancellation lock them (parent, then steps), so the two can never deadlock.
            if row.parent_id is not None and row.pipeline:
                move_parent_progress(session, row.parent_id, row.pipeline, percent, now)
            written = cast(
                CursorResult[Any],
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.PROCESSING.value, Job.worker == worker)
                    .values(progress=percent, progress_detail=detail(message), heartbeat_at=now)
                ),
            )
            if not written.rowcount:
                return Progress.NOT_OURS  # handed back between the read and the write
            cancelled = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
            return Progress.CANCEL_REQUESTED if cancelled else Progress.RUNNING

    def hand_back(self, worker: str, publish: Publish) -> list[str]:
        """Queue every job ``worker`` runs again, at once (it is stopping); see soundstage.db.handback."""
        with self._sessions.begin() as session:
            return handback.hand_back(session, worker, publish)

    def requeue_abandoned(
        self, live_workers: set[str], idle_before: datetime, publish: Publish, *, limit: int = 100
    ) -> list[str]:
        """Queue again the running jobs whose worker is not in ``live_workers`` and whose rows were last
        written before ``idle_before`` (their worker died); returns their ids."""
        with self._sessions() as session:
            candidates = handback.abandoned_candidates(session, idle_before, limit)
        requeued = []
        for job_id, worker in candidates:
            if worker in live_workers:
                continue
            with self._sessions.begin() as session:
                if handback.requeue_abandoned(session, job_id, worker, idle_before, publish):
                    requeued.append(job_id)
        return requeued

    def send_unsent(
        self,
        held: Callable[[set[str]], tuple[set[str], set[str]]],
        sent_before: datetime,
        publish: Publish,
        *,
        limit: int = 500,
    ) -> list[str]:
        """Publish once more the queued jobs last sent before ``sent_before`` whose message the broker holds
        nowhere: ``held`` gets the candidates' queues and answers the ids the broker holds and the queues it
        could not look into (see soundstage.broker_contents); returns the ids sent again."""
        with self._sessions() as session:
            candidates = handback.unsent_candidates(session, sent_before, limit)
        if not candidates:
            return []
        found, unlooked = held({queue for _, queue in candidates})
        sent = []
        for job_id, queue in candidates:
            if job_id in found or queue in unlooked:
                continue
            with self._sessions.begin() as session:
                if handback.send_again(session, job_id, sent_before, publish):
                    sent.append(job_id)
        return sent

    def complete(self, job_id: str, files: list[NewFile], result: dict[str, Any], *, worker: str) -> bool:
        """Record the outputs of ``worker``'s run and complete the job; False if it is no longer that run's
        (finished, handed back, taken over), or its cancellation was asked for while it finished (it ends
        `cancelled` then, and the caller drops the outputs)."""
        now = utcnow()
        with self._sessions.begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.status != JobStatus.PROCESSING.value or job.worker != worker:
                return False
            if job.cancel_requested:
                _finish(job, JobStatus.CANCELLED, now, detail="cancelled")
                return False
            # A redelivered job rewrites the same object names; replace, never duplicate.
            session.execute(delete(JobFile).where(JobFile.job_id == job_id))
            session.flush()
            for position, new_file in enumerate(files):
                session.add(JobFile(job_id=job_id, position=position, created_at=now, **vars(new_file)))
            job.result = result
            job.progress = 100.0
            _finish(job, JobStatus.COMPLETED, now, detail="done")
            return True

    def fail(self, job_id: str, code: ErrorCode, message: str) -> None:
        now = utcnow()
        with self._sessions.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.notin_(TERMINAL_VALUES))
                .values(
                    status=JobStatus.FAILED.value,
                    error_code=code.value,
                    error=message,
                    finished_at=now,
                    progress_detail=detail("failed"),
                )
            )

    def mark_cancelled(self, job_id: str) -> None:
        now = utcnow()
        with self._sessions.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.notin_(TERMINAL_VALUES))
                .values(status=JobStatus.CANCELLED.value, finished_at=now, progress_detail=detail("cancelled"))
            )


def _finish(job: Job, status: JobStatus, now: datetime, *, detail: str) -> None:
    job.status = status.value
    job.finished_at = now
    job.progress_detail = {"message": detail}
