"""Database rows to response models."""

from __future__ import annotations

from soundstage.db import Job, JobFile
from soundstage.schemas import JobKind, JobResult, JobStatus, JobView, OutputFile, StoredFile


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


def job_view(job: Job) -> JobView:
    result = None
    if job.result is not None:
        result = JobResult.model_validate({**job.result, "files": [output_file(f) for f in job.files]})
    return JobView(
        job_id=job.id,
        status=JobStatus(job.status),
        progress=round(job.progress, 2),
        progress_detail=job.progress_detail,
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
    )


def stored_file(row: JobFile) -> StoredFile:
    return StoredFile(
        filename=row.name,
        url=file_url(row.name),
        created_at=row.created_at,
        size_kb=round(row.size_bytes / 1024, 1),
        job_id=row.job_id,
        content_type=row.content_type,
    )
