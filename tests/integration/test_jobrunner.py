"""The shared job lifecycle: every way `execute` can end, on a real database, store and Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded

from soundstage import telemetry
from soundstage.db import Job, JobRepository, NewFile, create_db_engine, create_session_factory, utcnow
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, JobRunner, ProgressReporter
from soundstage.storage import LocalObjectStore
from tests.support.servers import RedisServer

Execute = Callable[[Job, ProgressReporter], JobOutput]


@pytest.fixture
def parts(
    database_url: str, redis_server: RedisServer, tmp_path: Path
) -> tuple[JobRepository, LocalObjectStore, JobRunner]:
    redis_server.client().flushall()
    repo = JobRepository(create_session_factory(create_db_engine(database_url)))
    store = LocalObjectStore(tmp_path / "files")
    runner = JobRunner(repo=repo, store=store, redis=redis_server.client(), worker_name="w", max_attempts=3)
    return repo, store, runner


def run(parts: tuple[JobRepository, LocalObjectStore, JobRunner], execute: Execute) -> Job:
    repo, _, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None
    return job


def test_success_stores_files_and_counts(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner], redis_server: RedisServer
) -> None:
    _, store, _ = parts

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        report(50.0, "half", force=True)
        stored = store.put_bytes(f"{job.id}_generated.wav", b"RIFF....")
        return JobOutput(files=[NewFile(stored.name, "audio/wav", stored.size)], result={"seed": 3}, audio_seconds=2.0)

    job = run(parts, execute)
    assert job.status == "completed" and job.result == {"seed": 3} and len(job.files) == 1
    counters = telemetry.read_snapshot(redis_server.client()).counters
    assert counters[telemetry.COMPLETED] == {("generate", "m", ""): 1.0}
    assert counters[telemetry.AUDIO_SECONDS] == {("generate", "m"): 2.0}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AppError(ErrorCode.DURATION_EXCEEDS_MODEL_LIMIT, "too long", status_code=422), "duration_exceeds_model_limit"),
        (RuntimeError("CUDA kernel exploded"), "generation_failed"),
        (SoftTimeLimitExceeded(), "job_timeout"),
    ],
)
def test_failures_end_the_job_with_a_code(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner], error: BaseException, code: str
) -> None:
    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        raise error

    job = run(parts, execute)
    assert job.status == "failed" and job.error_code == code and job.error


def test_platform_errors_propagate_for_celery_to_retry(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
) -> None:
    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        raise sqlalchemy.exc.OperationalError("select 1", {}, Exception("server closed the connection"))

    with pytest.raises(sqlalchemy.exc.OperationalError):
        run(parts, execute)


def test_cancel_during_execution(parts: tuple[JobRepository, LocalObjectStore, JobRunner]) -> None:
    repo, _, _ = parts

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        repo.request_cancel(job.id)
        report(10.0, "step", force=True)  # raises JobCancelledError
        raise AssertionError("not reached")

    assert run(parts, execute).status == "cancelled"


def test_outputs_of_a_job_cancelled_at_the_finish_are_deleted(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner], tmp_path: Path
) -> None:
    repo, store, _ = parts

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        stored = store.put_bytes(f"{job.id}_generated.wav", b"data")
        repo.request_cancel(job.id)
        repo.mark_cancelled(job.id)
        return JobOutput(files=[NewFile(stored.name, "audio/wav", stored.size)])

    job = run(parts, execute)
    assert job.status == "cancelled" and job.files == []
    assert list((tmp_path / "files").iterdir()) == []


def test_a_cancel_asked_for_while_the_job_finishes_ends_it_cancelled_without_files(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner], tmp_path: Path
) -> None:
    """The cancel comes after the last progress write: the job still ends cancelled, and keeps nothing."""
    repo, store, _ = parts

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        stored = store.put_bytes(f"{job.id}_generated.wav", b"data")
        repo.request_cancel(job.id)
        return JobOutput(files=[NewFile(stored.name, "audio/wav", stored.size)])

    job = run(parts, execute)
    assert job.status == "cancelled" and job.files == []
    assert list((tmp_path / "files").iterdir()) == []


def test_a_job_whose_process_on_this_host_died_is_taken_over_at_once(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
) -> None:
    import socket
    import subprocess

    repo, _, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    dead = subprocess.Popen(["true"])  # a process of this host that has exited
    dead.wait()
    dead_worker = f"{socket.gethostname()}:{dead.pid}"
    repo.claim(job_id, worker=dead_worker, max_attempts=3, stale_after_s=300)
    repo.update_progress(job_id, 50.0, "running", worker=dead_worker)  # a fresh heartbeat

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        return JobOutput(files=[])

    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "completed" and job.attempts == 2


def test_a_live_job_elsewhere_is_busy(parts: tuple[JobRepository, LocalObjectStore, JobRunner]) -> None:
    from soundstage.jobrunner import JobBusyError

    repo, _, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    repo.claim(job_id, worker="another-host:1234", max_attempts=3, stale_after_s=300)
    with pytest.raises(JobBusyError):
        runner.run(job_id, lambda job, report: JobOutput(files=[]))


def test_the_deadline_stops_a_job_at_its_next_progress_report(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner], redis_server: RedisServer
) -> None:
    """JOB_TIMEOUT_SECONDS inside the job: Celery's time limits do not reach the threads pool."""
    repo, store, _ = parts
    runner = JobRunner(
        repo=repo, store=store, redis=redis_server.client(), worker_name="w", max_attempts=3, timeout_s=0.5
    )
    reports = 0

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        nonlocal reports
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a model step, then its (throttled) report
            time.sleep(0.01)
            reports += 1
            report(1.0, "step")
        raise AssertionError("not stopped")

    started = time.monotonic()
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "failed" and job.error_code == "job_timeout"
    assert 0.5 <= time.monotonic() - started < 3 and reports > 10


def test_a_run_whose_job_was_handed_back_stops_and_leaves_row_and_files_to_the_next(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
) -> None:
    repo, store, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    published: list[str] = []

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        store.put_bytes(f"{job.id}_generated.wav", b"RIFF", "audio/wav")
        repo.hand_back("w", lambda handed: published.append(handed.id))  # the worker is told to stop
        report(50.0, "next step", force=True)
        raise AssertionError("not stopped")

    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 0 and published == [job_id]
    assert store.read_bytes(f"{job_id}_generated.wav") == b"RIFF"


def test_a_run_taken_over_before_it_completes_keeps_the_files_of_the_run_that_took_it(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
) -> None:
    repo, store, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    name = f"{job_id}_generated.wav"

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        stored = store.put_bytes(name, b"RIFF", "audio/wav")
        # This worker looked dead: the reaper gave the job to another, which is running it now.
        repo.requeue_abandoned(set(), utcnow(), lambda _: None)
        repo.claim(job_id, worker="w2", max_attempts=3, stale_after_s=300)
        return JobOutput(files=[NewFile(name=name, content_type="audio/wav", size_bytes=stored.size)])

    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "processing" and job.worker == "w2" and job.attempts == 2
    assert store.read_bytes(name) == b"RIFF"  # the other run writes the same name: deleting it would delete its output


def _device_errors() -> list[tuple[BaseException, str, bool]]:
    import torch

    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (/opt/secret/model.bin)")
    return [
        (oom, "model_oom", False),
        (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), "device_error", True),
        (RuntimeError("CUDA error: device-side assert triggered"), "device_error", True),
        (RuntimeError("shape mismatch in /opt/secret/model.bin"), "generation_failed", False),
    ]


@pytest.mark.parametrize("case", _device_errors())
def test_a_model_error_gets_a_code_a_message_for_the_client_and_an_incident_id_in_the_log(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    case: tuple[BaseException, str, bool],
) -> None:
    """(error raised by the model, code the client gets, whether the worker stops)"""
    error, code, stops = case
    repo, store, _ = parts
    stopped: list[bool] = []
    runner = JobRunner(
        repo=repo,
        store=store,
        redis=redis_server.client(),
        worker_name="w",
        max_attempts=3,
        on_broken_device=lambda: stopped.append(True),
    )

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        raise error

    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    with caplog.at_level("ERROR", logger="soundstage.jobrunner"):
        runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "failed" and job.error_code == code and job.error
    assert "/opt/secret" not in job.error and str(error) not in job.error  # never the exception's own text
    incident = job.error.split("incident ", 1)[1][:12]
    logged = [record for record in caplog.records if incident in record.getMessage()]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[1] is error
    assert stopped == ([True] if stops else [])


def test_a_retry_of_a_run_of_this_process_that_ended_unrecorded_is_taken_over_at_once(
    parts: tuple[JobRepository, LocalObjectStore, JobRunner],
) -> None:
    """The row names this very process and its heartbeat is fresh, but no run of it is alive here: the run
    ended without recording it (the database was away), and the task's retry came back to this process."""
    from soundstage.jobrunner import JobBusyError

    repo, _, runner = parts
    job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    repo.claim(job_id, worker="w", max_attempts=3, stale_after_s=300)
    repo.update_progress(job_id, 50.0, "running", worker="w")
    busy: list[BaseException] = []

    def execute(job: Job, report: ProgressReporter) -> JobOutput:
        try:  # a duplicate delivery while this run is alive here is still busy
            runner.run(job.id, lambda job, report: JobOutput(files=[]))
        except JobBusyError as error:
            busy.append(error)
        return JobOutput(files=[])

    runner.run(job_id, execute)
    job = repo.get(job_id)
    assert job is not None and job.status == "completed" and job.attempts == 2
    assert len(busy) == 1


def test_a_run_that_finishes_while_the_database_is_down_completes_when_it_is_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    import threading

    from tests.support.servers import PostgresServer

    with PostgresServer() as database:
        from soundstage import migrations

        migrations.upgrade(database.url)
        repo = JobRepository(create_session_factory(create_db_engine(database.url)))
        store = LocalObjectStore(tmp_path / "files")
        runner = JobRunner(repo=repo, store=store, redis=redis_server.client(), worker_name="w", max_attempts=3)
        job_id = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
        restarted = threading.Event()

        def restart_later() -> None:
            time.sleep(2)
            database.start()
            restarted.set()

        def execute(job: Job, report: ProgressReporter) -> JobOutput:
            stored = store.put_bytes(f"{job.id}_generated.wav", b"RIFF....")
            database.stop()  # a restart of PostgreSQL just as the run finishes
            threading.Thread(target=restart_later, daemon=True).start()
            return JobOutput(files=[NewFile(stored.name, "audio/wav", stored.size)])

        runner.run(job_id, execute)
        assert restarted.is_set()
        job = repo.get(job_id)
        assert job is not None and job.status == "completed" and job.attempts == 1 and len(job.files) == 1
