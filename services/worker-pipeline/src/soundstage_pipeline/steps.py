"""`pipeline.step`: run one CPU step of a multi-step job (a job of kind `mix`) on the pipeline pool.

A step's `params["operation"]` names what it does; each operation is a function of the step's job row
and the job store, like any pool's job function (the engine is the pool's warmed-up analysis).
"""

from __future__ import annotations

from collections.abc import Callable

from soundstage.db import Job
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.storage import ObjectStore
from soundstage_pipeline.engine import MixEngine

Operation = Callable[[Job, ObjectStore, ProgressReporter], JobOutput]


def _operations() -> dict[str, Operation]:
    from soundstage_pipeline.soundtrack.steps import OPERATIONS

    return dict(OPERATIONS)


def run_step(job: Job, engine: MixEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    engine.load()  # analysis warmed up (a job that arrives during the warm-up waits for it)
    operation = _operations().get(str(job.params.get("operation")))
    if operation is None:
        raise AppError(
            ErrorCode.INTERNAL_ERROR,
            f"Unknown pipeline step operation {job.params.get('operation')!r}.",
            status_code=500,
        )
    return operation(job, store, report)
