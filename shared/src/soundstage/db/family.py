"""Parent and child jobs: the rows of a pipeline, read and changed together.

A multi-step job (a soundtrack) is a parent; each of its steps is a child job with a ``step`` name unique
under that parent, run by the pool that owns its model. Whoever advances a parent (the pipeline pool,
after a child finished) does it inside :meth:`JobRepository.family`: one transaction that holds the parent
row locked, sees every child, and creates the next steps. A step that exists already is found, not made
again, so a redelivered advance never produces a second set of steps or outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, case, delete, select, update
from sqlalchemy.orm import Session

from soundstage.db.models import Job, JobFile, new_job_id, utcnow
from soundstage.schemas.common import TERMINAL_VALUES, JobStatus

MAX_DEPTH = 8
"""Pipelines nest at most this deep (a soundtrack and its steps are two levels)."""


def new_job(
    *,
    kind: str,
    queue: str,
    model: str | None,
    params: dict[str, Any],
    job_id: str | None = None,
    parent_id: str | None = None,
    step: str | None = None,
    stage: str | None = None,
    pipeline: dict[str, Any] | None = None,
    owner: str | None = None,
    audio_seconds: float | None = None,
) -> Job:
    """A queued job row, not yet added to a session."""
    return Job(
        id=job_id or new_job_id(),
        kind=kind,
        queue=queue,
        status=JobStatus.QUEUED.value,
        model=model,
        params=params,
        progress=0.0,
        attempts=0,
        cancel_requested=False,
        created_at=utcnow(),
        audio_seconds=audio_seconds,
        parent_id=parent_id,
        step=step,
        stage=stage,
        pipeline=pipeline,
        owner=owner,
        files=[],
    )


def cancel_jobs(session: Session, job_ids: list[str]) -> int:
    """Cancel jobs: queued ones at once, running ones at their next progress update. Returns how many were
    queued (they never reach a worker, so the caller may count them)."""
    now = utcnow()
    queued = cast(
        CursorResult[Any],
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.CANCELLED.value,
                cancel_requested=True,
                finished_at=now,
                progress_detail={"message": "cancelled before it started"},
            )
        ),
    ).rowcount
    session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == JobStatus.PROCESSING.value)
        .values(cancel_requested=True, progress_detail={"message": "cancelling"})
    )
    return int(queued)


def move_parent_progress(
    session: Session, parent_id: str, pipeline: dict[str, Any], percent: float, now: datetime
) -> None:
    """A step's progress seen on its parent: ``pipeline["span"]`` is the ``[low, high]`` share of the
    parent's 0-100 the step covers; the parent's progress only ever rises. ``pipeline["detail"]`` (the
    parent's progress detail while the step runs) replaces the parent's detail."""
    low, high = pipeline.get("span") or (None, None)
    values: dict[str, Any] = {"heartbeat_at": now}
    if low is not None and high is not None:
        target = float(low) + (float(high) - float(low)) * percent / 100.0
        values["progress"] = case((Job.progress < target, target), else_=Job.progress)
    if pipeline.get("detail") is not None:
        values["progress_detail"] = pipeline["detail"]
    session.execute(update(Job).where(Job.id == parent_id, Job.status == JobStatus.PROCESSING.value).values(**values))


@dataclass
class NewChild:
    """A step to create under a parent (see :meth:`Family.add_child`)."""

    step: str
    kind: str
    queue: str
    model: str | None
    params: dict[str, Any]
    stage: str
    pipeline: dict[str, Any] | None = None


@dataclass
class Family:
    """A parent row (locked for the transaction) and all of its children, as one transaction sees them."""

    session: Session
    parent: Job | None
    children: dict[str, Job] = field(default_factory=dict)
    """By step name."""
    created: list[Job] = field(default_factory=list)
    """Children this transaction added (they need enqueueing)."""

    def add_child(self, new: NewChild) -> Job:
        """The child for ``new.step``: the existing one, or a new queued job (then also in ``created``)."""
        if self.parent is None:
            raise RuntimeError("no parent to add a step to")
        existing = self.children.get(new.step)
        if existing is not None:
            return existing
        job = new_job(
            kind=new.kind,
            queue=new.queue,
            model=new.model,
            params=new.params,
            parent_id=self.parent.id,
            step=new.step,
            stage=new.stage,
            pipeline=new.pipeline,
            owner=self.parent.owner,  # a step is its job's submitter's
        )
        self.session.add(job)
        self.children[new.step] = job
        self.created.append(job)
        return job

    def start(self, worker: str) -> bool:
        """Move a queued parent to processing (its first advance); False if it is not queued."""
        parent = self._parent()
        if parent.status != JobStatus.QUEUED.value:
            return False
        now = utcnow()
        parent.status = JobStatus.PROCESSING.value
        parent.attempts += 1
        parent.worker = worker
        parent.started_at = now
        parent.heartbeat_at = now
        return True

    def show(self, *, stage: str, detail: dict[str, Any], progress: float | None = None) -> None:
        """Set where the parent is; its progress only rises."""
        parent = self._parent()
        parent.stage = stage
        parent.progress_detail = detail
        parent.heartbeat_at = utcnow()
        if progress is not None:
            parent.progress = max(parent.progress, min(progress, 100.0))

    def finish(
        self, status: JobStatus, *, message: str, error_code: str | None = None, error: str | None = None
    ) -> None:
        parent = self._parent()
        parent.status = status.value
        parent.finished_at = utcnow()
        parent.progress_detail = {**(parent.progress_detail or {}), "message": message}
        if status is JobStatus.COMPLETED:
            parent.progress = 100.0
        parent.error_code = error_code
        parent.error = error

    def record_files(self, files: list[Any]) -> None:
        """The parent's outputs (``NewFile``s, in order); files recorded on its steps move to the parent."""
        parent = self._parent()
        names = [new.name for new in files]
        self.session.execute(delete(JobFile).where(JobFile.job_id == parent.id))
        if names:
            self.session.execute(delete(JobFile).where(JobFile.name.in_(names)))
        self.session.flush()
        now = utcnow()
        for position, new_file in enumerate(files):
            self.session.add(JobFile(job_id=parent.id, position=position, created_at=now, **vars(new_file)))

    def drop_step_files(self) -> list[str]:
        """Forget the files the steps recorded (intermediate audio): returns their names, for the caller to
        delete from storage once the transaction is committed."""
        ids = [child.id for child in self.children.values()]
        if not ids:
            return []
        names = list(self.session.scalars(select(JobFile.name).where(JobFile.job_id.in_(ids))))
        self.session.execute(delete(JobFile).where(JobFile.job_id.in_(ids)))
        return names

    def cancel_children(self) -> None:
        """Cancel every step still queued or running (and their own steps)."""
        level = [child.id for child in self.children.values() if child.status not in TERMINAL_VALUES]
        for _ in range(MAX_DEPTH):
            if not level:
                return
            cancel_jobs(self.session, level)
            level = list(self.session.scalars(select(Job.id).where(Job.parent_id.in_(level))))

    def _parent(self) -> Job:
        if self.parent is None:
            raise RuntimeError("the parent job does not exist")
        return self.parent
