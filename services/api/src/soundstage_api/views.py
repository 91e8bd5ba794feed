"""Database rows to response models."""

from __future__ import annotations

from typing import Any

from soundstage.db import Job, JobFile
from soundstage.schemas import (
    ChildJob,
    JobKind,
    JobResult,
    JobStatus,
    JobView,
    OutputFile,
    ProgressDetail,
    StoredFile,
)


def file_url(name: str) -> str:
    return f"/files/{name}"


def output_file(row: JobFile) -> OutputFile:
    return OutputFile(
        name=row.name,
        url=file_url(row.name),
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        duration=row.duration_s,
        sample_rate=row.sample_rate,
        channels=row.channels,
    )


def job_view(job: Job, children: list[Job] | None = None) -> JobView:
    """The envelope of a job; ``children`` are its steps (for a multi-step job)."""
    result = None
    if job.result is not None:
        result = JobResult.model_validate(
            {**job.result, "files": [output_file(f) for f in job.files], "stems": _stem_urls(job.result)}
        )
    return JobView(
        job_id=job.id,
        status=JobStatus(job.status),
        progress=round(job.progress, 2),
        progress_detail=ProgressDetail.model_validate(job.progress_detail) if job.progress_detail else None,
        result_urls=[file_url(f.name) for f in job.files],
        error=job.error,
        error_code=job.error_code,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        model=job.model,
        kind=JobKind(job.kind),
        params=job.params,
        result=result,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        parent_id=job.parent_id,
        stage=job.stage,
        children=[child_view(child) for child in children or []],
    )


def child_view(job: Job) -> ChildJob:
    return ChildJob(
        job_id=job.id,
        step=job.step or "",
        kind=JobKind(job.kind),
        stage=job.stage,
        status=JobStatus(job.status),
        progress=round(job.progress, 2),
        error_code=job.error_code,
    )


def _stem_urls(result: dict[str, Any]) -> dict[str, str] | None:
    """Workers record each stem's file name; clients get its URL."""
    stems = result.get("stems")
    if not isinstance(stems, dict):
        return None
    return {str(stem): file_url(str(name)) for stem, name in stems.items()}


def stored_file(row: JobFile) -> StoredFile:
    return StoredFile(
        filename=row.name,
        url=file_url(row.name),
        created_at=row.created_at,
        size_kb=round(row.size_bytes / 1024, 1),
        job_id=row.job_id,
        content_type=row.content_type,
    )
