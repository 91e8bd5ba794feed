"""`pipeline.advance`: move a multi-step job on, from what its rows say.

Called when the job is submitted, when any of its steps ends (the step's worker sends it), and when a
client cancels it. Each call is one transaction on the parent row, locked, with all of its steps
(:meth:`JobRepository.family`): it decides from the rows alone, so it can run any number of times, in any
order, on any pipeline worker, and the same rows give the same decision. A step that exists already is
found, not created again; new steps are published inside the transaction (a worker that sees a step's
message a moment before the commit retries, see ``JobMissingError``), so none is ever created and lost.

What is common to every kind of multi-step job is here: starting it, cancelling it, failing it when a
step failed, and finishing it. What a kind does between is its *machine* (the soundtrack's is
:mod:`soundstage_pipeline.soundtrack.machine`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from soundstage import events, telemetry
from soundstage.db import Family, Job, NewFile, utcnow
from soundstage.pool import JobServices, PoolRuntime
from soundstage.pools import task_for_kind
from soundstage.queue import enqueue_job
from soundstage.schemas import JobKind, JobStatus, JobTaskPayload
from soundstage.schemas.common import TERMINAL_STATUSES
from soundstage.settings import Settings
from soundstage_pipeline.engine import MixEngine

logger = logging.getLogger(__name__)

_TERMINAL = {status.value for status in TERMINAL_STATUSES}


@dataclass
class Completion:
    """What a machine hands back when the job is done: its files (steps' files move to it) and result."""

    files: list[NewFile]
    result: dict[str, object]
    audio_seconds: float = 0.0


@dataclass
class Decision:
    """What a machine decided; the steps it created are already in the Family."""

    completion: Completion | None = None
    keep: set[str] = field(default_factory=set)
    """Names of step files that must outlive the job's end (they became the job's own files)."""


Machine = Callable[[Family, Settings], Decision]


def _machines() -> dict[str, Machine]:
    from soundstage_pipeline.soundtrack.machine import advance_soundtrack

    return {JobKind.SOUNDTRACK.value: advance_soundtrack}


def advance_task(runtime: PoolRuntime[MixEngine], payload: JobTaskPayload) -> None:
    advance(runtime.services, runtime.settings, payload.job_id)


def advance(services: JobServices, settings: Settings, parent_id: str) -> None:
    """Advance the multi-step job ``parent_id`` once (see the module docstring)."""
    to_delete: list[str] = []
    ended: Job | None = None
    audio_seconds = 0.0
    with services.repo.family(parent_id) as family:
        parent = family.parent
        if parent is None or parent.status in _TERMINAL:
            logger.info("job %s: nothing to advance (%s)", parent_id, parent.status if parent else "unknown job")
            return
        if family.start(services.hostname):
            _safe(telemetry.record_started, services.redis, parent.kind, parent.model or "", _age(parent))
        machine = _machines().get(parent.kind)
        if machine is None:
            family.finish(JobStatus.FAILED, message="failed", error_code="internal_error",
                          error=f"No pipeline knows how to run a {parent.kind!r} job.")  # fmt: skip
        elif not _wound_up(family):
            decision = machine(family, settings)
            if decision.completion is not None:
                family.record_files(decision.completion.files)
                parent.result = decision.completion.result
                family.finish(JobStatus.COMPLETED, message="done")
                audio_seconds = decision.completion.audio_seconds
                to_delete = [name for name in family.drop_step_files() if name not in decision.keep]
        if parent.status in _TERMINAL:
            ended = parent
            if parent.status != JobStatus.COMPLETED.value:
                to_delete = family.drop_step_files()
        for child in family.created:
            enqueue_job(services.publisher, task_for_kind(JobKind(child.kind)), child.id)
        if family.created:
            logger.info("job %s: started steps %s", parent_id, ", ".join(c.step or c.id for c in family.created))
    for name in to_delete:
        _delete(services, name)
    if ended is not None:
        _ended(services, ended, audio_seconds)


def _wound_up(family: Family) -> bool:
    """Cancel the job (asked for, or one of its steps was cancelled) or fail it (a step failed), once every
    step has stopped; True when the job is ending this way, whether or not it has ended yet."""
    parent = family.parent
    assert parent is not None  # noqa: S101 - checked by the caller
    steps = list(family.children.values())
    failed = next((step for step in steps if step.status == JobStatus.FAILED.value), None)
    cancelled = parent.cancel_requested or any(step.status == JobStatus.CANCELLED.value for step in steps)
    if failed is None and not cancelled:
        return False
    family.cancel_children()
    if failed is not None:
        # Fail at once: the steps still running stop at their next progress update and keep no files.
        family.finish(
            JobStatus.FAILED,
            message="failed",
            error_code=failed.error_code or "internal_error",
            error=f"Step {failed.step} failed: {failed.error or 'no reason given'}",
        )
    elif all(step.status in _TERMINAL for step in steps):
        family.finish(JobStatus.CANCELLED, message="cancelled")
    return True


def _ended(services: JobServices, job: Job, audio_seconds: float) -> None:
    events.announce_finished(services.redis, job.id, job.status)
    duration = (utcnow() - job.started_at).total_seconds() if job.started_at else None
    _safe(
        telemetry.record_finished,
        services.redis,
        kind=job.kind,
        model=job.model or "",
        outcome=job.status,
        duration_s=duration,
        audio_s=audio_seconds,
        error_code=job.error_code or "",
    )
    logger.info("job %s: %s", job.id, job.status)


def _delete(services: JobServices, name: str) -> None:
    try:
        services.store.delete(name)
    except Exception:
        logger.warning("could not delete the intermediate file %s", name, exc_info=True)


def _age(job: Job) -> float:
    return (utcnow() - job.created_at).total_seconds()


def _safe(fn: Callable[..., None], *args: object, **kwargs: object) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        logger.warning("could not record metrics", exc_info=True)
