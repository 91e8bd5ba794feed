"""Every request, response and task payload, defined once."""

from soundstage.schemas.common import TERMINAL_STATUSES, AudioFormat, JobKind, JobStatus
from soundstage.schemas.compat import (
    HostedGenerateRequest,
    JobPending,
    SRocksFile,
    SRocksGenerated,
    SRocksGenerateRequest,
    SRocksHealth,
)
from soundstage.schemas.generate import ContinueRequest, GenerateJobParams, GenerateRequest
from soundstage.schemas.jobs import ChildJob, JobCreated, JobList, JobResult, JobView, OutputFile, ProgressDetail
from soundstage.schemas.separate import STEMS_BY_MODE, SeparateJobParams, SeparateOptions, SeparateUrlRequest
from soundstage.schemas.soundtrack import (
    SceneRequest,
    SceneResult,
    SoundtrackJobParams,
    SoundtrackRequest,
    TransitionAttempt,
    TransitionResult,
)
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
    "HostedGenerateRequest",
    "JobCreated",
    "JobKind",
    "JobList",
    "JobPending",
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
    "SRocksFile",
    "SRocksGenerateRequest",
    "SRocksGenerated",
    "SRocksHealth",
    "SceneRequest",
    "SceneResult",
    "SeparateJobParams",
    "SeparateOptions",
    "SeparateUrlRequest",
    "SoundtrackJobParams",
    "SoundtrackRequest",
    "StoredFile",
    "TransitionAttempt",
    "TransitionResult",
    "WorkerInfo",
]
