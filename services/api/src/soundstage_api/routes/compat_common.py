"""What the compatibility APIs (S.Rocks, the hosted MusicGen API) share: an ordinary text-to-music job,
validated and submitted exactly as `POST /generate` submits one, then waited for with the shared waiter
(up to SYNC_WAIT_SECONDS). They answer with the result, so a job that did not finish in time is a 202
(`{job_id, status}`, `Location: /jobs/{job_id}`), a failed one a 500 with the job's own error code."""

from __future__ import annotations

from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from soundstage.db import Job
from soundstage.errors import AppError, ErrorCode
from soundstage.pools import TaskName
from soundstage.schemas import ErrorBody, GenerateRequest, JobKind, JobPending, JobStatus
from soundstage_api.routes.generate import job_params, submit, validate_generation
from soundstage_api.state import AppState
from soundstage_api.waiting import is_finished, pending_response, wait_for_job

WAIT_RESPONSES: dict[int | str, dict[str, object]] = {
    202: {"model": JobPending, "description": "Not finished within SYNC_WAIT_SECONDS: poll `Location` (`/jobs/{id}`)"},
    409: {"model": ErrorBody, "description": "The job was cancelled (`DELETE /jobs/{id}`) before it finished"},
    500: {"model": ErrorBody, "description": "Generation failed: the job's error, with its code"},
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}


async def generate_and_wait(state: AppState, body: GenerateRequest) -> Job | Response:
    """Submit `body` as `POST /generate` would and wait for it: the completed job (with its files), or the
    202 to answer. Raises 500 with the job's code for a failed job, 409 `job_cancelled` for a cancelled one."""
    model = validate_generation(body, state.settings)
    created = await run_in_threadpool(
        submit, state, kind=JobKind.GENERATE, task=TaskName.MUSICGEN_GENERATE, model=model, params=job_params(body)
    )
    return await finished_or_pending(state, created.job_id, state.settings.sync_wait_seconds)


async def finished_or_pending(
    state: AppState, job_id: str, seconds: float, headers: dict[str, str] | None = None, *, needs_files: bool = True
) -> Job | Response:
    """Wait up to ``seconds`` for a job: the completed job (with its files), or the 202 to answer. Raises 500
    with the job's code for a failed job, 409 `job_cancelled` for a cancelled one. ``needs_files``: a
    completed job without files is a failure (every kind but `embed` writes its output as files)."""
    job = await wait_for_job(state.waiter, lambda: state.repo.get(job_id), job_id, seconds)
    if job is None:
        raise AppError(ErrorCode.JOB_NOT_FOUND, f"Job {job_id} no longer exists.", status_code=404)
    if not is_finished(job):
        return pending_response(job.id, job.status, headers)
    if job.status == JobStatus.CANCELLED.value:
        raise AppError(
            ErrorCode.JOB_CANCELLED,
            f"Job {job.id} was cancelled before it finished.",
            status_code=409,
            details={"job_id": job.id},
        )
    if job.status != JobStatus.COMPLETED.value or (needs_files and not job.files):
        raise job_failure(job)
    return job


def job_failure(job: Job) -> AppError:
    """A failed job as a 500 carrying the job's own error code and message."""
    try:
        code = ErrorCode(job.error_code or ErrorCode.GENERATION_FAILED.value)
    except ValueError:
        code = ErrorCode.GENERATION_FAILED
    message = job.error or f"Job {job.id} ended without output."
    return AppError(code, message, status_code=500, details={"job_id": job.id})
