"""Job state transitions on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from soundstage.db import (
    ClaimOutcome,
    JobRepository,
    NewChild,
    NewFile,
    Progress,
    create_db_engine,
    create_session_factory,
)
from soundstage.errors import AppError, ErrorCode
from tests.support.waiting import wait_until


@pytest.fixture
def repo(database_url: str) -> JobRepository:
    return JobRepository(create_session_factory(create_db_engine(database_url)))


def new_job(repo: JobRepository) -> str:
    return repo.create(kind="generate", queue="musicgen", model="random:tiny", params={"prompt": "x"}).id


def test_claim_progress_complete(repo: JobRepository) -> None:
    job_id = new_job(repo)
    claim = repo.claim(job_id, worker="w1", max_attempts=3, stale_after_s=0)
    assert claim.outcome is ClaimOutcome.RUN and claim.job and claim.job.attempts == 1
    assert repo.update_progress(job_id, 42.0, "decoding", worker="w1") is Progress.RUNNING
    files = [
        NewFile(
            name=f"{job_id}_generated.wav",
            content_type="audio/wav",
            size_bytes=10,
            duration_s=1.0,
            sample_rate=32000,
            channels=1,
        )
    ]
    assert not repo.complete(job_id, files, {"seed": 1}, worker="w2")  # not that run's
    assert repo.complete(job_id, files, {"seed": 1}, worker="w1")
    job = repo.get(job_id)
    assert job and job.status == "completed" and job.progress == 100 and job.finished_at
    assert [f.name for f in job.files] == [f"{job_id}_generated.wav"]
    # A duplicate delivery of a finished job does nothing.
    assert repo.claim(job_id, worker="w2", max_attempts=3, stale_after_s=0).outcome is ClaimOutcome.SKIP
    assert repo.list_files(limit=10, skip=0)[0].job_id == job_id


def test_redelivery_counts_attempts_and_never_duplicates_files(repo: JobRepository) -> None:
    job_id = new_job(repo)
    files = [NewFile(name=f"{job_id}_generated.wav", content_type="audio/wav", size_bytes=10)]
    repo.claim(job_id, worker="w1", max_attempts=3, stale_after_s=0)  # worker dies here
    assert repo.claim(job_id, worker="w2", max_attempts=3, stale_after_s=0).outcome is ClaimOutcome.RUN
    assert repo.update_progress(job_id, 5.0, "late", worker="w1") is Progress.NOT_OURS  # the old run stops
    assert not repo.complete(job_id, files, {}, worker="w1")
    assert repo.complete(job_id, files, {}, worker="w2")
    job = repo.get(job_id)
    assert job and job.attempts == 2 and len(job.files) == 1


def test_gives_up_after_max_attempts(repo: JobRepository) -> None:
    job_id = new_job(repo)
    for _ in range(2):
        assert repo.claim(job_id, worker="w", max_attempts=2, stale_after_s=0).outcome is ClaimOutcome.RUN
    assert repo.claim(job_id, worker="w", max_attempts=2, stale_after_s=0).outcome is ClaimOutcome.GAVE_UP
    job = repo.get(job_id)
    assert job and job.status == "failed" and job.error_code == ErrorCode.ATTEMPTS_EXHAUSTED.value
    assert job.error and "MAX_JOB_ATTEMPTS" in job.error


def test_cancel_queued_running_and_finished(repo: JobRepository) -> None:
    queued = new_job(repo)
    job, cancelled_now = repo.request_cancel(queued)
    assert job.status == "cancelled" and cancelled_now
    assert repo.request_cancel(queued)[1] is False  # a second cancel is a no-op
    assert repo.claim(queued, worker="w", max_attempts=3, stale_after_s=0).outcome is ClaimOutcome.SKIP

    running = new_job(repo)
    repo.claim(running, worker="w", max_attempts=3, stale_after_s=0)
    job, cancelled_now = repo.request_cancel(running)
    assert job.cancel_requested and not cancelled_now
    assert repo.update_progress(running, 10.0, "x", worker="w") is Progress.CANCEL_REQUESTED
    repo.mark_cancelled(running)
    assert not repo.complete(running, [], {}, worker="w")
    job = repo.get(running)
    assert job and job.status == "cancelled"

    done = new_job(repo)
    repo.claim(done, worker="w", max_attempts=3, stale_after_s=0)
    repo.complete(done, [], {}, worker="w")
    with pytest.raises(AppError) as error:
        repo.request_cancel(done)
    assert error.value.status_code == 409
    with pytest.raises(AppError) as missing:
        repo.request_cancel("0" * 32)
    assert missing.value.status_code == 404


def test_fail_is_final(repo: JobRepository) -> None:
    job_id = new_job(repo)
    repo.claim(job_id, worker="w", max_attempts=3, stale_after_s=0)
    repo.fail(job_id, ErrorCode.MODEL_UNAVAILABLE, "no weights")
    repo.fail(job_id, ErrorCode.INTERNAL_ERROR, "later error must not overwrite")
    job = repo.get(job_id)
    assert job and job.error_code == "model_unavailable" and job.error == "no weights"
    assert repo.count_by_status() == {"failed": 1}


def test_a_duplicate_delivery_of_a_live_job_is_busy_not_a_second_run(repo: JobRepository) -> None:
    job_id = new_job(repo)
    assert repo.claim(job_id, worker="w1", max_attempts=3, stale_after_s=60).outcome is ClaimOutcome.RUN
    repo.update_progress(job_id, 10.0, "decoding", worker="w1")
    duplicate = repo.claim(job_id, worker="w2", max_attempts=3, stale_after_s=60)
    assert duplicate.outcome is ClaimOutcome.BUSY
    job = repo.get(job_id)
    assert job and job.attempts == 1 and job.worker == "w1"
    # Once the heartbeat is older than the threshold, the job is taken over.
    assert repo.claim(job_id, worker="w2", max_attempts=3, stale_after_s=0).outcome is ClaimOutcome.RUN


# ------------------------------------------------------------------ pipelines


def _family(repo: JobRepository) -> tuple[str, str]:
    parent = repo.create(kind="soundtrack", queue="pipeline", model=None, params={}).id
    with repo.family(parent) as family:
        family.start("pipeline-worker:1")
        step = family.add_child(
            NewChild(
                step="scene:0",
                kind="generate",
                queue="musicgen",
                model="random:tiny",
                params={},
                stage="generating",
                pipeline={"span": [10.0, 50.0], "detail": {"stage": "generating", "current_scene": 1}},
            )
        )
    return parent, step.id


def test_a_steps_progress_moves_its_parent_within_its_share_and_never_back(repo: JobRepository) -> None:
    parent, step = _family(repo)
    repo.claim(step, worker="w", max_attempts=3, stale_after_s=300)
    assert repo.update_progress(step, 50.0, "half", worker="w") is Progress.RUNNING
    shown = repo.get(parent)
    assert shown is not None and shown.progress == pytest.approx(30.0)
    assert shown.progress_detail == {"stage": "generating", "current_scene": 1}
    # A step's own progress may restart (a retry): the parent's does not.
    repo.update_progress(step, 25.0, "back", worker="w")
    shown = repo.get(parent)
    assert shown is not None and shown.progress == pytest.approx(30.0)


def test_a_duplicate_step_is_found_not_created_again(repo: JobRepository) -> None:
    parent, step = _family(repo)
    with repo.family(parent) as family:
        again = family.add_child(
            NewChild(step="scene:0", kind="generate", queue="musicgen", model=None, params={}, stage="x")
        )
        assert again.id == step and family.created == []
    assert [child.id for child in repo.children(parent)] == [step]


def test_cancelling_a_parent_cancels_its_steps(repo: JobRepository) -> None:
    parent, step = _family(repo)
    repo.claim(step, worker="w", max_attempts=3, stale_after_s=300)
    with repo.family(parent) as family:
        queued = family.add_child(
            NewChild(step="scene:1", kind="generate", queue="musicgen", model=None, params={}, stage="x")
        )
    job, cancelled_queued = repo.request_cancel(parent)
    assert job.cancel_requested and not cancelled_queued  # the parent runs: it ends once its steps stopped
    running, waiting = repo.get(step), repo.get(queued.id)
    assert running is not None and running.status == "processing" and running.cancel_requested
    assert waiting is not None and waiting.status == "cancelled"
    assert repo.update_progress(step, 60.0, None, worker="w") is Progress.CANCEL_REQUESTED


def test_a_steps_progress_waits_for_its_parents_advance_and_never_deadlocks(
    repo: JobRepository, database_url: str
) -> None:
    """The advance locks the parent, then changes its steps; a step's progress write locks the parent
    first too, so it waits for the advance instead of deadlocking with it (PostgreSQL would abort one)."""
    parent, step = _family(repo)
    repo.claim(step, worker="w", max_attempts=3, stale_after_s=300)
    results: list[Progress] = []
    errors: list[BaseException] = []
    with repo.family(parent) as family:
        writer = threading.Thread(target=_record_progress, args=(repo, step, results, errors))
        writer.start()
        if database_url.startswith("postgresql"):  # SQLite has one lock for the whole database: nothing to see
            wait_until(lambda: _waiting_on_a_lock(database_url), 10, message="the progress write to wait on a lock")
        family.cancel_children()
    writer.join(30)
    assert not writer.is_alive() and errors == [] and results == [Progress.CANCEL_REQUESTED]


def _waiting_on_a_lock(database_url: str) -> bool:
    """Whether some session of the database waits for a row lock (the blocked progress write)."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(connection.execute(query).scalar())
    finally:
        engine.dispose()


def _record_progress(repo: JobRepository, step: str, results: list[Progress], errors: list[BaseException]) -> None:
    try:
        results.append(repo.update_progress(step, 40.0, "decoding", worker="w"))
    except BaseException as error:
        errors.append(error)
