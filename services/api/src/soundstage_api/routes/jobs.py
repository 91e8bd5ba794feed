"""`/jobs`: poll, list and cancel jobs."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query

from soundstage import events, telemetry
from soundstage.db import Job
from soundstage.pools import task_for_kind
from soundstage.queue import enqueue_job
from soundstage.retention import remove_stored
from soundstage.schemas import ErrorBody, JobKind, JobList, JobStatus, JobView
from soundstage.schemas.jobs import MAX_LIST_SKIP
from soundstage_api.auth import ApiKey
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.state import AppState, State
from soundstage_api.viewer import current as current_viewer
from soundstage_api.viewer import visible_job
from soundstage_api.views import job_view

logger = logging.getLogger(__name__)
router = APIRouter(route_class=GuardedRoute, tags=["jobs"], dependencies=[ApiKey])

JobId = Annotated[str, Path(description="The id returned by the submitting call.")]
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorBody, "description": "Unknown job"}}


@router.get("/jobs/{job_id}", response_model=JobView, responses=_NOT_FOUND, summary="Job status and result")
def get_job(job_id: JobId, state: State) -> JobView:
    """Another key's job is 404, as an unknown id (soundstage_api.viewer)."""
    job = visible_job(state.repo, job_id)
    return job_view(job, _children(state, job))


def _children(state: AppState, job: Job) -> list[Job]:
    """The steps of a multi-step job (only those jobs have any: the query is skipped for the others)."""
    return state.repo.children(job.id) if job.kind == JobKind.SOUNDTRACK.value else []


@router.get(
    "/jobs",
    response_model=JobList,
    responses={404: {"model": ErrorBody, "description": "Unknown `parent_id`"}},
    summary="List jobs, newest first",
)
def list_jobs(  # noqa: PLR0917 - FastAPI query parameters
    state: State,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size, 1-200. Default 50.")] = 50,
    skip: Annotated[
        int, Query(ge=0, le=MAX_LIST_SKIP, description=f"Jobs to skip, 0-{MAX_LIST_SKIP:,}. Default 0.")
    ] = 0,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status.")] = None,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
    parent_id: Annotated[
        str | None,
        Query(max_length=64, description="The steps of this multi-step job instead of the jobs clients submitted."),
    ] = None,
) -> JobList:
    """The jobs clients submitted, newest first; with `parent_id`, the steps of that job. A key sees its
    own jobs only (an admin key every job)."""
    if parent_id is not None:
        visible_job(state.repo, parent_id)
    jobs, total = state.repo.list_jobs(
        only_owner=current_viewer().only_owner,
        status=status.value if status else None,
        kind=kind.value if kind else None,
        limit=limit,
        skip=skip,
        parent_id=parent_id,
    )
    return JobList(jobs=[job_view(job) for job in jobs], total=total, limit=limit, skip=skip)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="Cancel a job",
    responses={**_NOT_FOUND, 409: {"model": ErrorBody, "description": "Job already completed or failed"}},
)
def cancel_job(job_id: JobId, state: State) -> JobView:
    """A queued job never runs; a running job stops at its next progress update and ends `cancelled`
    (until then it shows `cancel_requested: true`). Cancelling a cancelled job is a no-op. Cancelling a
    multi-step job cancels every step; it ends `cancelled` once the running ones have stopped."""
    visible_job(state.repo, job_id)  # another key's job is 404, and stays as it is
    job, cancelled_queued = state.repo.request_cancel(job_id)
    if JobStatus(job.status).is_terminal:
        events.announce_finished(state.redis, job.id, job.status)  # for requests waiting on it
    if job.status == JobStatus.PROCESSING.value and job.kind == JobKind.SOUNDTRACK.value:
        # Its steps were cancelled with it; the pipeline pool winds it up (no step might be running to say so).
        try:
            enqueue_job(state.celery, task_for_kind(JobKind.SOUNDTRACK), job.id)
        except Exception as error:  # the cancel is recorded: the steps' ends (redelivered) wind it up later
            logger.warning("job %s: could not ask the pipeline pool to wind it up now: %s", job.id, error)
    if cancelled_queued:
        try:  # a queued job that never runs keeps nothing: its uploaded or fetched input goes now
            remove_stored(state.store, job.id)
        except Exception as error:  # storage is away: retention removes it with the job later
            logger.warning("job %s: could not remove its stored input: %s", job.id, error)
        try:
            telemetry.record_finished(
                state.redis, kind=job.kind, model=job.model or "", outcome="cancelled", duration_s=None
            )
        except Exception as error:
            logger.warning("could not count cancelled job: %s", error)
    return job_view(job, _children(state, job))
