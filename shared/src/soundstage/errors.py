"""Machine-readable error codes shared by the API and every worker.

Codes are part of the public contract: they are only ever added, never renamed
or removed. The API renders an :class:`AppError` as
``{"error": {"code", "message", "details"}, "detail": message}`` and workers
store the same code on the failed job.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # Client errors (4xx)
    VALIDATION_ERROR = "validation_error"
    UNKNOWN_MODEL = "unknown_model"
    NOT_FOUND = "not_found"
    JOB_NOT_FOUND = "job_not_found"
    FILE_NOT_FOUND = "file_not_found"
    REQUEST_NOT_FOUND = "request_not_found"
    JOB_ALREADY_FINISHED = "job_already_finished"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    API_KEY_MISSING = "api_key_missing"
    API_KEY_INVALID = "api_key_invalid"
    API_KEY_SCOPE = "api_key_scope"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_FAILED_KEYS = "too_many_failed_keys"
    TOO_MANY_ACTIVE_JOBS = "too_many_active_jobs"
    QUOTA_EXHAUSTED = "quota_exhausted"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    HTTP_ERROR = "http_error"
    AUDIO_UNDECODABLE = "audio_undecodable"
    AUDIO_EMPTY = "audio_empty"
    AUDIO_TOO_LONG = "audio_too_long"
    AUDIO_TOO_LARGE = "audio_too_large"
    UPLOAD_TOO_LARGE = "upload_too_large"
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    MODEL_NOT_MELODY = "model_not_melody"
    URL_NOT_ALLOWED = "url_not_allowed"
    URL_FETCH_FAILED = "url_fetch_failed"
    URL_TIMEOUT = "url_timeout"
    URL_TOO_LARGE = "url_too_large"
    STEMS_NOT_SUPPORTED = "stems_not_supported"
    AUDIO_REQUIRED = "audio_required"
    JOB_CANCELLED = "job_cancelled"
    UNKNOWN_CHECKPOINT_STEP = "unknown_checkpoint_step"
    CHECKPOINT_REPO_NOT_FOUND = "checkpoint_repo_not_found"
    CHECKPOINT_INVALID = "checkpoint_invalid"
    STEERING_UNAVAILABLE = "steering_unavailable"
    CAPACITY = "capacity"  # 429: every jam slot of every magenta worker is taken
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_ENDED = "session_ended"
    CHUNK_TIMEOUT = "chunk_timeout"  # 408: no chunk within the wait
    BAD_MESSAGE = "bad_message"  # a WebSocket message that is not one of the protocol's
    SESSION_NOT_STARTED = "session_not_started"
    # Dependencies down (503)
    DATABASE_UNAVAILABLE = "database_unavailable"
    BROKER_UNAVAILABLE = "broker_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    SERVICE_UNAVAILABLE = "service_unavailable"
    CHECKPOINT_REPO_UNAVAILABLE = "checkpoint_repo_unavailable"  # 502: Hugging Face cannot be reached
    # Job failures stored on the job row
    MODEL_UNAVAILABLE = "model_unavailable"
    DURATION_EXCEEDS_MODEL_LIMIT = "duration_exceeds_model_limit"
    GENERATION_FAILED = "generation_failed"
    MODEL_OOM = "model_oom"
    DEVICE_ERROR = "device_error"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    JOB_TIMEOUT = "job_timeout"
    INTERNAL_ERROR = "internal_error"
    # Why a jam session ended, when it was not asked to
    WORKER_LOST = "worker_lost"  # its worker stopped refreshing its lease (it died)
    WORKER_STOPPING = "worker_stopping"  # its worker is shutting down
    CLIENT_GONE = "client_gone"  # no client was there for MAGENTA_JAM_IDLE_SECONDS (a dropped socket: seconds)


class AppError(Exception):
    """An error with a stable code, a human message and an HTTP status."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status_code: int = 400,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.details = details
        self.headers = headers

    def to_body(self) -> dict[str, Any]:
        """The JSON body the API answers with (``detail`` for clients of musicgen-api)."""
        return {
            "error": {"code": self.code.value, "message": self.message, "details": self.details},
            "detail": self.message,
        }


class ModelUnavailableError(AppError):
    """The configured model cannot be loaded (no network, missing cache, bad path)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(ErrorCode.MODEL_UNAVAILABLE, message, status_code=503, details=details)


class JobCancelledError(Exception):
    """Raised from a progress callback when the job's cancellation was requested."""


class JobHandedBackError(Exception):
    """Raised from a progress callback once the job is no longer this run's: its worker handed it back to
    the queue (an orderly stop), or the reaper gave it to another worker (this one looked dead). The run
    ends without touching the job's row or files: they belong to the next run."""


class JobTimedOutError(Exception):
    """Raised from a progress callback once the job has run past JOB_TIMEOUT_SECONDS. Celery's time limits
    do not reach a job on the threads pool (the default), so the deadline is enforced inside the job:
    every progress report and every model step checks it."""
