"""`POST /generate`: validate, record the job, enqueue it. `submit` is shared with `/generate/continue`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter

from soundstage import telemetry
from soundstage.errors import AppError, ErrorCode
from soundstage.queue import TASK_QUEUES, Queue, TaskName, enqueue_job
from soundstage.schemas import ErrorBody, GenerateJobParams, GenerateRequest, JobCreated, JobKind, JobStatus
from soundstage.schemas.generate import SEED_MAX
from soundstage.settings import Settings
from soundstage.storage import content_type_for
from soundstage_api.auth import ApiKey
from soundstage_api.errors import unavailable
from soundstage_api.state import AppState, State

logger = logging.getLogger(__name__)
router = APIRouter(tags=["generate"], dependencies=[ApiKey])

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "X-API-Key missing"},
    403: {"model": ErrorBody, "description": "X-API-Key wrong"},
    422: {"model": ErrorBody, "description": "Invalid field (code `validation_error` or `unknown_model`)"},
    503: {"model": ErrorBody, "description": "Database or queue down"},
}


@dataclass(frozen=True)
class Attachment:
    """A file a job needs in object storage before a worker may see the job (an uploaded prompt)."""

    name: str
    path: Path


@router.post("/generate", response_model=JobCreated, responses=ERRORS, summary="Generate music from text")
@router.post("/generate/", response_model=JobCreated, include_in_schema=False)
def generate(body: GenerateRequest, state: State) -> JobCreated:
    """Queue a text-to-music job and return its id; poll `GET /jobs/{job_id}` for the result."""
    model = validate_generation(body, state.settings)
    params = job_params(body)
    return submit(state, kind=JobKind.GENERATE, task=TaskName.MUSICGEN_GENERATE, model=model, params=params)


def validate_generation(body: GenerateRequest, settings: Settings) -> str:
    """The checks that depend on the server's settings; returns the served model the request names."""
    _check_duration(body.duration, settings)
    return resolve_model(body.model, settings.served_models(Queue.MUSICGEN))


def job_params(body: GenerateRequest, *, audio_prompt: str | None = None) -> dict[str, object]:
    """What the job row stores (JSON). The seed is resolved here, not in the worker, so a
    redelivered job makes the same audio."""
    seed = secrets.randbelow(SEED_MAX + 1) if body.seed == -1 else body.seed
    params = GenerateJobParams.from_request(body, seed, audio_prompt=audio_prompt)
    return params.model_dump(mode="json", exclude={"model"})


def submit(
    state: AppState,
    *,
    kind: JobKind,
    task: TaskName,
    model: str,
    params: dict[str, object],
    job_id: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> JobCreated:
    """Write the job row, store its attachments, then enqueue it.

    A job whose attachments could not be stored (503 `storage_unavailable`) or that the
    broker refused (503 `broker_unavailable`) is removed again, with what was stored for it.
    """
    job = state.repo.create(kind=kind.value, queue=TASK_QUEUES[task].value, model=model, params=params, job_id=job_id)
    try:
        for attachment in attachments:
            state.store.put_file(attachment.name, attachment.path, content_type_for(attachment.name))
    except Exception as error:
        logger.warning("job %s: storing its input failed (%s); removing it", job.id, error)
        _discard(state, job.id, attachments)
        raise unavailable(ErrorCode.STORAGE_UNAVAILABLE, "file storage") from error
    try:
        enqueue_job(state.celery, task, job.id)
    except Exception as error:
        logger.warning("job %s: enqueue failed (%s); removing it", job.id, error)
        _discard(state, job.id, attachments)
        raise unavailable(ErrorCode.BROKER_UNAVAILABLE, "job queue (Redis)") from error
    try:
        telemetry.record_submitted(state.redis, kind.value, model)
    except Exception as error:
        logger.warning("could not count submitted job: %s", error)
    return JobCreated(job_id=job.id, status=JobStatus.QUEUED)


def _discard(state: AppState, job_id: str, attachments: Sequence[Attachment]) -> None:
    state.repo.delete(job_id)
    for attachment in attachments:
        try:
            state.store.delete(attachment.name)
        except Exception as error:
            logger.warning("job %s: could not remove %s (%s)", job_id, attachment.name, error)


def _check_duration(duration: float, settings: Settings) -> None:
    if duration > settings.max_duration:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            f"Invalid request: duration must be at most {settings.max_duration:g} seconds.",
            status_code=422,
            details=[
                {
                    "loc": ["body", "duration"],
                    "msg": f"Input should be less than or equal to {settings.max_duration:g}",
                    "type": "less_than_equal",
                }
            ],
        )


def resolve_model(requested: str | None, served: list[str]) -> str:
    """The served model a request names (`facebook/musicgen-small` may be written `musicgen-small`)."""
    if requested is None:
        return served[0]
    for name in served:
        if requested in (name, name.rsplit("/", 1)[-1]):
            return name
    raise AppError(
        ErrorCode.UNKNOWN_MODEL,
        f"Unknown model {requested!r}; this server serves: {', '.join(served)}.",
        status_code=422,
        details=[{"loc": ["body", "model"], "msg": "unknown model", "type": "unknown_model", "choices": served}],
    )
