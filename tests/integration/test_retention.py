"""Retention on a real database (SQLite and PostgreSQL), a real local store and a real Redis: finished jobs
past RETENTION_HOURS go with their outputs, inputs and steps; MAX_STORED_FILES removes the oldest finished
jobs first; running and queued jobs stay; one process sweeps per period; listings stay right."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from soundstage import retention
from soundstage.db import Job, JobRepository, NewChild, NewFile, create_db_engine, create_session_factory, utcnow
from soundstage.storage import LocalObjectStore
from tests.support.servers import RedisServer


@pytest.fixture
def repo(database_url: str) -> JobRepository:
    return JobRepository(create_session_factory(create_db_engine(database_url)))


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "files")


@pytest.fixture
def redis(redis_server: RedisServer) -> Any:
    client = redis_server.client()
    client.flushall()
    return client


def finished(repo: JobRepository, store: LocalObjectStore, hours_ago: float, *, outputs: int = 1) -> str:
    """A completed job with an uploaded input and ``outputs`` stored outputs, that ended ``hours_ago``."""
    job = repo.create(kind="generate", queue="musicgen", model="m", params={})
    store.put_bytes(f"{job.id}_prompt.wav", b"input")
    files = []
    for index in range(outputs):
        name = f"{job.id}_generated_{index}.wav"
        store.put_bytes(name, b"output")
        files.append(NewFile(name=name, content_type="audio/wav", size_bytes=6))
    repo.claim(job.id, worker="w", max_attempts=3, stale_after_s=0)
    assert repo.complete(job.id, files, {}, worker="w")
    age(repo, job.id, hours_ago)
    return job.id


def age(repo: JobRepository, job_id: str, hours_ago: float) -> None:
    then = utcnow() - timedelta(hours=hours_ago)
    with repo._sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(created_at=then, finished_at=then))


def sweep(repo: JobRepository, store: LocalObjectStore, redis: Any, **limits: Any) -> list[str] | None:
    redis.delete(retention.LOCK_KEY)  # a new period
    options = {"retention_hours": 24.0, "max_stored_files": 0, **limits}
    return retention.sweep(repo, store, redis, sweeper="w", **options)


def test_finished_jobs_past_the_retention_go_with_their_files(
    repo: JobRepository, store: LocalObjectStore, redis: Any
) -> None:
    old = finished(repo, store, 25)
    recent = finished(repo, store, 23)
    running = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    repo.claim(running, worker="w", max_attempts=3, stale_after_s=0)
    age(repo, running, 30)  # running for 30 hours: not finished, so never removed under its worker
    queued = repo.create(kind="generate", queue="musicgen", model="m", params={}).id
    age(repo, queued, 30)
    assert sweep(repo, store, redis) == [old]
    assert repo.get(old) is None and store.names(f"{old}_") == []
    assert {job.id for job in repo.list_jobs(status=None, kind=None, limit=10, skip=0)[0]} == {recent, running, queued}
    assert [file.job_id for file in repo.list_files(limit=10, skip=0)] == [recent]
    assert store.names(f"{recent}_") == [f"{recent}_generated_0.wav", f"{recent}_prompt.wav"]
    assert repo.count_by_status() == {"completed": 1, "processing": 1, "queued": 1}


def test_a_multi_step_job_goes_with_its_steps_and_their_files(
    repo: JobRepository, store: LocalObjectStore, redis: Any
) -> None:
    parent = finished(repo, store, 30)
    with repo.family(parent) as family:
        step = family.add_child(
            NewChild(step="scene:0", kind="generate", queue="musicgen", model=None, params={}, stage="x")
        )
    store.put_bytes(f"{step.id}_scene.wav", b"step output")
    assert sweep(repo, store, redis) == [parent]
    assert repo.get(step.id) is None and store.names(f"{step.id}_") == []


def test_max_stored_files_removes_the_oldest_finished_jobs_first(
    repo: JobRepository, store: LocalObjectStore, redis: Any
) -> None:
    jobs = [finished(repo, store, hours, outputs=2) for hours in (5, 4, 3, 2, 1)]  # oldest first, 10 files
    assert sweep(repo, store, redis, max_stored_files=6) == jobs[:2]
    assert len(repo.list_files(limit=100, skip=0)) == 6
    assert sweep(repo, store, redis, max_stored_files=5) == jobs[2:3]  # whole jobs: 4 files remain
    assert sweep(repo, store, redis, max_stored_files=5) == []


def test_one_process_sweeps_per_period_and_zero_turns_it_off(
    repo: JobRepository, store: LocalObjectStore, redis: Any
) -> None:
    old = finished(repo, store, 25)
    assert retention.sweep(repo, store, redis, retention_hours=24, max_stored_files=0, sweeper="a") == [old]
    assert retention.sweep(repo, store, redis, retention_hours=24, max_stored_files=0, sweeper="b") is None
    assert sweep(repo, store, redis, retention_hours=0, max_stored_files=0) is None
    kept = finished(repo, store, 24 * 365)
    assert sweep(repo, store, redis, retention_hours=0, max_stored_files=10) == []
    assert repo.get(kept) is not None
