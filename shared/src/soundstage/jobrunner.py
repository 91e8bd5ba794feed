"""The job lifecycle every worker pool shares: claim, run, store, complete or fail.

A pool's task is thin: it hands a job id and its own `execute` function to
:meth:`JobRunner.run`, which owns every state transition and its metrics.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from soundstage import events, runs_here, telemetry
from soundstage.db.models import Job, utcnow
from soundstage.db.repository import ClaimOutcome, JobRepository, NewFile, Progress
from soundstage.db.retrying import RECORD_RETRY_SECONDS, through_outage
from soundstage.device_faults import DeviceFault, device_fault
from soundstage.errors import AppError, ErrorCode, JobCancelledError, JobHandedBackError, JobTimedOutError
from soundstage.retention import remove_stored
from soundstage.schemas.common import TERMINAL_VALUES, JobStatus
from soundstage.storage import ObjectStore, StorageUnavailableError

logger = logging.getLogger(__name__)


# Progress is written at most this often: enough for a polling client, cheap for the DB.
PROGRESS_INTERVAL_S = 0.5


@dataclass
class JobBusyError(Exception):
    """The job is running on another worker (fresh heartbeat): look again in ``retry_in`` seconds."""

    def __init__(self, job_id: str, retry_in: float) -> None:
        super().__init__(f"job {job_id} is running elsewhere")
        self.retry_in = retry_in


class JobMissingError(Exception):
    """No row for a delivered job. A pipeline publishes its new steps inside the transaction that creates
    them, so a fast worker can see a step's message a moment before the row is committed: look again
    shortly (a job that never appears is dropped after a few tries)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} does not exist (yet)")
        self.job_id = job_id


@dataclass
class JobOutput:
    """What `execute` produced: files already written to storage, and the result envelope."""

    files: list[NewFile]
    result: dict[str, Any] = field(default_factory=dict)
    audio_seconds: float = 0.0


class ProgressReporter:
    """Throttled progress writes; raises JobCancelledError once cancellation was requested,
    JobHandedBackError once the job is no longer this run's, and JobTimedOutError on any call (throttled
    or not: it costs a clock read) past the job's deadline.

    A write the database refuses for a moment (a dropped connection, a lock timeout) is skipped, not
    raised: the job goes on and the next write tries again. Raising would end this run while the row
    still shows it running with a fresh heartbeat, so its redelivery would wait for that heartbeat to go
    stale before taking over."""

    def __init__(self, repo: JobRepository, job_id: str, *, worker: str, deadline: float | None = None) -> None:
        """``worker``: whose run this is (the row must still name it); ``deadline``: the
        ``time.monotonic()`` past which the job is stopped; None for none."""
        self._repo = repo
        self._job_id = job_id
        self._worker = worker
        self._last_write = 0.0
        self._deadline = deadline

    def __call__(self, percent: float, detail: str | None = None, *, force: bool = False) -> None:
        import sqlalchemy.exc

        now = time.monotonic()
        if self._deadline is not None and now > self._deadline:
            raise JobTimedOutError(self._job_id)
        if not force and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        try:
            found = self._repo.update_progress(self._job_id, percent, detail, worker=self._worker)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            logger.warning("job %s: progress not written (%s); going on", self._job_id, type(error).__name__)
            return
        if found is Progress.CANCEL_REQUESTED:
            raise JobCancelledError(self._job_id)
        if found is Progress.NOT_OURS:
            raise JobHandedBackError(self._job_id)


Execute = Callable[[Job, ProgressReporter], JobOutput]


def _died_on_this_host(worker: str | None) -> bool:
    """Whether ``worker`` (``host:pid``, as runtimes name themselves) was a process of this host
    that no longer exists. Other hosts cannot be checked: their jobs wait for the heartbeat."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors of the platform, not of the job: the task is retried later (Celery autoretry)."""
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    return (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,  # publishing a pipeline's next step while the broker is down
        StorageUnavailableError,
    )


class JobRunner:
    def __init__(
        self,
        *,
        repo: JobRepository,
        store: ObjectStore,
        redis: Any,
        worker_name: str,
        max_attempts: int,
        stale_after_s: float = 300.0,
        timeout_s: float | None = None,
        notify_parent: Callable[[str], None] | None = None,
        on_broken_device: Callable[[], None] | None = None,
    ) -> None:
        """``timeout_s``: how long one run of a job may take (JOB_TIMEOUT_SECONDS), enforced through its
        progress reports. ``notify_parent(parent_id)`` is called whenever a step of a pipeline is found
        finished (the pipeline pool then advances the parent); it must be safe to call more than once.
        ``on_broken_device()`` is called after a job failed on a device that no longer works
        (soundstage.device_faults): it stops this process."""
        self._repo = repo
        self._store = store
        self._redis = redis
        self._worker = worker_name
        self._max_attempts = max_attempts
        self._stale_after_s = stale_after_s
        self._timeout_s = timeout_s
        self._notify_parent = notify_parent
        self._on_broken_device = on_broken_device

    def run(self, job_id: str, execute: Execute) -> None:
        """Run a delivered job. Raises JobBusyError when it is running elsewhere right now."""
        with runs_here.running(job_id):
            self._run(job_id, execute)

    def _run(self, job_id: str, execute: Execute) -> None:
        claim = self._repo.claim(
            job_id, worker=self._worker, max_attempts=self._max_attempts, stale_after_s=self._stale_after_s
        )
        job = claim.job
        if claim.outcome is ClaimOutcome.BUSY and job is not None and self._run_is_gone(job):
            # Its process on this machine is gone (a killed pool process), or it is this process and the
            # run ended without recording it: take over now instead of waiting for the heartbeat to go stale.
            claim = self._repo.claim(job_id, worker=self._worker, max_attempts=self._max_attempts, stale_after_s=0)
            job = claim.job
        if claim.outcome is ClaimOutcome.BUSY and job is not None:
            logger.info("job %s: already running on %s; checking again later", job_id, job.worker)
            raise JobBusyError(job_id, self._stale_after_s)
        if job is None:
            raise JobMissingError(job_id)
        if claim.outcome is ClaimOutcome.SKIP:
            logger.info("job %s: nothing to do (%s)", job_id, job.status)
            self._finished(job)  # a redelivery after a crash between finishing and telling the parent
            return
        if claim.outcome is ClaimOutcome.CANCELLED:
            self._record(job, "cancelled")
            self._finished(job)
            return
        if claim.outcome is ClaimOutcome.GAVE_UP:
            logger.error("job %s: gave up after %d attempts", job_id, job.attempts)
            self._record(job, "failed", error_code=ErrorCode.ATTEMPTS_EXHAUSTED.value)
            self._finished(job)
            return
        self._safe_metric(
            telemetry.record_started,
            self._redis,
            job.kind,
            job.model or "",
            (utcnow() - job.created_at).total_seconds(),
        )
        logger.info("job %s: started (attempt %d)", job_id, job.attempts)
        self._execute(job, execute)
        self._finished(job)

    def _run_is_gone(self, job: Job) -> bool:
        if job.worker == self._worker:
            return not runs_here.others_running(job.id)
        return _died_on_this_host(job.worker)

    def fail(self, job_id: str, code: ErrorCode, message: str) -> None:
        """Fail a job from outside `run` (for example after the task's retries ran out)."""
        self._repo.fail(job_id, code, message)
        job = self._repo.get(job_id)
        if job is not None and job.status == "failed":
            self._record(job, "failed", error_code=code.value)
        if job is not None:
            self._finished(job)

    def _finished(self, job: Job) -> None:
        """The job ended: announce it (for requests waiting on it), and if it is a step of a pipeline, tell
        the pool that advances its parent."""
        final = self._repo.get(job.id)
        if final is not None and final.status in TERMINAL_VALUES:
            events.announce_finished(self._redis, job.id, final.status)
        if job.parent_id is None or self._notify_parent is None:
            return
        try:
            self._notify_parent(job.parent_id)
        except Exception:
            # The broker is down: the parent hears of it when the step's message is redelivered (it was
            # not acknowledged, as this raises out of the task) and this job is found finished.
            logger.warning("job %s: could not notify its parent %s", job.id, job.parent_id, exc_info=True)
            raise

    def _execute(self, job: Job, execute: Execute) -> None:
        started = time.monotonic()
        deadline = None if self._timeout_s is None else started + self._timeout_s
        reporter = ProgressReporter(self._repo, job.id, worker=self._worker, deadline=deadline)
        try:
            output = execute(job, reporter)
        except JobHandedBackError:
            logger.info("job %s: handed back to the queue; this run stops", job.id)
            return
        except JobCancelledError:
            logger.info("job %s: cancelled while running", job.id)
            self._repo.mark_cancelled(job.id)
            self._drop_stored(job.id)
            self._record(job, "cancelled")
            return
        except transient_errors():
            raise
        except (JobTimedOutError, SoftTimeLimitExceeded):
            logger.warning("job %s: exceeded the job time limit", job.id)
            message = "The job ran past JOB_TIMEOUT_SECONDS and was stopped."
            self._fail(job.id, ErrorCode.JOB_TIMEOUT, message)
            self._record(job, "failed", error_code=ErrorCode.JOB_TIMEOUT.value)
            return
        except AppError as error:
            logger.warning("job %s: failed: %s (%s)", job.id, error.message, error.code.value)
            self._fail(job.id, error.code, error.message)
            self._record(job, "failed", error_code=error.code.value)
            return
        except Exception as error:  # a bug, a model error or a device fault
            self._model_error(job, error)
            return
        completed = through_outage(
            lambda: self._repo.complete(job.id, output.files, output.result, worker=self._worker),
            what=f"job {job.id}: recording its completion",
            give_up_after=RECORD_RETRY_SECONDS
            if deadline is None
            else min(RECORD_RETRY_SECONDS, deadline - time.monotonic()),
        )
        if completed:
            duration = time.monotonic() - started
            logger.info("job %s: completed in %.2f s", job.id, duration)
            self._record(job, "completed", duration_s=duration, audio_s=output.audio_seconds)
        else:
            now = self._repo.get(job.id)
            if now is not None and (now.status == JobStatus.COMPLETED.value or now.worker != self._worker):
                # Finished or taken over by another run meanwhile: the object names are the same, so the files
                # are that run's now (deleting them would delete its outputs).
                logger.info("job %s: completed or taken over elsewhere meanwhile; keeping the files", job.id)
                return
            # Cancelled while we produced the files: drop ours.
            logger.info("job %s: cancelled at completion; discarding outputs", job.id)
            for new in output.files:
                self._store.delete(new.name)
            self._drop_stored(job.id)
            self._record(job, "cancelled")

    def _fail(self, job_id: str, code: ErrorCode, message: str) -> None:
        through_outage(lambda: self._repo.fail(job_id, code, message), what=f"job {job_id}: recording its failure")

    def _drop_stored(self, job_id: str) -> None:
        """A cancelled job keeps nothing: its inputs (and anything it wrote) go at once, not at retention."""
        try:
            removed = remove_stored(self._store, job_id)
        except Exception:  # storage is away: retention removes them with the job later
            logger.warning("job %s: could not remove its stored inputs", job_id, exc_info=True)
            return
        if removed:
            logger.info("job %s: removed %d stored input(s) of the cancelled job", job_id, removed)

    def _model_error(self, job: Job, error: Exception) -> None:
        """Fail the job with a code and a message written for the client, with an incident id that finds the
        exception in this worker's log (its text may hold paths or internals: clients never see it). A
        broken device also stops this worker (``on_broken_device``) so that a fresh process replaces it."""
        incident = uuid.uuid4().hex[:12]
        fault = device_fault(error)
        if fault is DeviceFault.OUT_OF_MEMORY:
            code = ErrorCode.MODEL_OOM
            message = (
                f"The model ran out of memory on this job (incident {incident}): try a shorter duration, fewer "
                "stems, or again when fewer jobs run."
            )
        elif fault is DeviceFault.BROKEN:
            code = ErrorCode.DEVICE_ERROR
            message = (
                f"The worker's accelerator failed during this job (incident {incident}); the worker is replaced. "
                "Submit the job again."
            )
        else:
            code = ErrorCode.GENERATION_FAILED
            message = (
                f"Generation failed: an unexpected error in the worker (incident {incident}); its log has details."
            )
        logger.error("job %s: %s (incident %s)", job.id, code.value, incident, exc_info=error)
        self._fail(job.id, code, message)
        self._record(job, "failed", error_code=code.value)
        if fault is DeviceFault.BROKEN and self._on_broken_device is not None:
            logger.critical("job %s: the device is broken for this process (incident %s); stopping", job.id, incident)
            self._on_broken_device()

    def _record(
        self, job: Job, outcome: str, *, duration_s: float | None = None, audio_s: float = 0.0, error_code: str = ""
    ) -> None:
        self._safe_metric(
            telemetry.record_finished,
            self._redis,
            kind=job.kind,
            model=job.model or "",
            outcome=outcome,
            duration_s=duration_s,
            audio_s=audio_s,
            error_code=error_code,
        )

    @staticmethod
    def _safe_metric(fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        # Metrics must never fail a job that otherwise worked.
        try:
            fn(*args, **kwargs)
        except Exception:
            logger.warning("could not record metrics", exc_info=True)
