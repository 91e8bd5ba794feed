"""Every request, response and task payload, defined once."""

from soundstage.schemas.common import TERMINAL_STATUSES, AudioFormat, JobKind, JobStatus
from soundstage.schemas.generate import ContinueRequest, GenerateJobParams, GenerateRequest
from soundstage.schemas.jobs import ChildJob, JobCreated, JobList, JobResult, JobView, OutputFile, ProgressDetail
from soundstage.schemas.separate import STEMS_BY_MODE, SeparateJobParams, SeparateOptions, SeparateUrlRequest
from soundstage.schemas.system import (
    ErrorBody,
    ErrorDetail,
    Health,
    KindTimes,
    MetricsJson,
    ModelCapabilities,
    QueueInfo,
    Ready,
    ReadyCheck,
    StoredFile,
    WorkerInfo,
)
from soundstage.schemas.tasks import JobTaskPayload

__all__ = [
    "STEMS_BY_MODE",
    "TERMINAL_STATUSES",
    "AudioFormat",
    "ChildJob",
    "ContinueRequest",
    "ErrorBody",
    "ErrorDetail",
    "GenerateJobParams",
    "GenerateRequest",
    "Health",
    "JobCreated",
    "JobKind",
    "JobList",
    "JobResult",
    "JobStatus",
    "JobTaskPayload",
    "JobView",
    "KindTimes",
    "MetricsJson",
    "ModelCapabilities",
    "OutputFile",
    "ProgressDetail",
    "QueueInfo",
    "Ready",
    "ReadyCheck",
    "SeparateJobParams",
    "SeparateOptions",
    "SeparateUrlRequest",
    "StoredFile",
    "WorkerInfo",
]
