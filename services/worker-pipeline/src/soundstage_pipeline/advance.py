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
from soundstage.db import Family, Job, utcnow
from soundstage.errors import ErrorCode
from soundstage.jobrunner import transient_errors
from soundstage.pool import JobServices, PoolRuntime
from soundstage.pools import task_for_kind
from soundstage.queue import enqueue_job
from soundstage.schemas import JobKind, JobStatus, JobTaskPayload
from soundstage.schemas.common import TERMINAL_VALUES
from soundstage.settings import Settings
from soundstage_pipeline.decisions import Decision
from soundstage_pipeline.engine import MixEngine

logger = logging.getLogger(__name__)


Machine = Callable[[Family, Settings], Decision]


def _machines() -> dict[str, Machine]:
    from soundstage_pipeline.soundtrack.machine import advance_soundtrack

    return {JobKind.SOUNDTRACK.value: advance_soundtrack}


GAVE_UP_MESSAGE = (
    "The job could not move on to its next stage (an unexpected error in the pipeline worker; its log has the details)."
)


def advance_task(runtime: PoolRuntime[MixEngine], payload: JobTaskPayload) -> None:
    """`pipeline.advance`: platform errors (database, broker, storage down) are raised for Celery to retry;
    anything else ends the job at once (``give_up``), since no other task would ever advance it."""
    try:
        advance(runtime.services, runtime.settings, payload.job_id)
    except transient_errors():
        raise
    except Exception:
        logger.exception("job %s: advancing it failed", payload.job_id)
        give_up(runtime.services, payload.job_id)


def give_up(services: JobServices, parent_id: str) -> None:
    """Fail a multi-step job that can no longer advance: its steps are cancelled, their files deleted."""
    with services.repo.family(parent_id) as family:
        parent = family.parent
        if parent is None or parent.status in TERMINAL_VALUES:
            return
        family.cancel_children()
        family.finish(
            JobStatus.FAILED, message="failed", error_code=ErrorCode.INTERNAL_ERROR.value, error=GAVE_UP_MESSAGE
        )
        to_delete = family.drop_step_files()
    for name in to_delete:
        _delete(services, name)
    _ended(services, parent, 0.0)


def advance(services: JobServices, settings: Settings, parent_id: str) -> None:
    """Advance the multi-step job ``parent_id`` once (see the module docstring)."""
    with services.repo.family(parent_id) as family:
        outcome = _advance_in(family, services, settings, parent_id)
        for child in family.created:
            enqueue_job(services.publisher, task_for_kind(JobKind(child.kind)), child.id)
        if family.created:
            logger.info("job %s: started steps %s", parent_id, ", ".join(c.step or c.id for c in family.created))
    # After the commit: a file is deleted only once no row names it any more.
    for name in outcome.delete:
        _delete(services, name)
    if outcome.ended is not None:
        _ended(services, outcome.ended, outcome.audio_seconds)


@dataclass
class _Outcome:
    delete: list[str] = field(default_factory=list)
    ended: Job | None = None
    audio_seconds: float = 0.0


def _advance_in(family: Family, services: JobServices, settings: Settings, parent_id: str) -> _Outcome:
    parent = family.parent
    if parent is None:
        logger.info("job %s: nothing to advance (unknown job)", parent_id)
        return _Outcome()
    if parent.status in TERMINAL_VALUES:
        # A step still running when the job failed or was cancelled ends later: its files go too.
        logger.info("job %s: nothing to advance (%s)", parent.id, parent.status)
        return _Outcome(delete=family.drop_step_files() if parent.status != JobStatus.COMPLETED.value else [])
    if family.start(services.hostname):
        _safe(telemetry.record_started, services.redis, parent.kind, parent.model or "", _age(parent))
    outcome = _Outcome()
    machine = _machines().get(parent.kind)
    if machine is None:
        message = f"No pipeline knows how to run a {parent.kind!r} job."
        family.finish(JobStatus.FAILED, message="failed", error_code=ErrorCode.INTERNAL_ERROR.value, error=message)
    elif not _wound_up(family):
        decision = machine(family, settings)
        if decision.completion is not None:
            family.record_files(decision.completion.files)  # the steps' files that are the job's own move to it
            parent.result = decision.completion.result
            family.finish(JobStatus.COMPLETED, message="done")
            outcome.audio_seconds = decision.completion.audio_seconds
    if parent.status in TERMINAL_VALUES:
        outcome.ended = parent
        outcome.delete = family.drop_step_files()
    return outcome


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
    elif all(step.status in TERMINAL_VALUES for step in steps):
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
