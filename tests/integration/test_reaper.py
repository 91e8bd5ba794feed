"""The reaper and the hand-back, on a real database (SQLite and PostgreSQL) and a real Redis registry: a job
whose worker died is queued again (and a poison job ends `attempts_exhausted`), a live or recently written
job is left alone, a stopping worker gives its running jobs back at once, and a queued job whose message the
broker lost (real Kombu messages in Redis: queued, delivered, missing) is sent again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from soundstage import broker_contents, reaper, workers
from soundstage.db import ClaimOutcome, Job, JobRepository, NewChild, Progress, create_db_engine, create_session_factory
from soundstage.db.models import utcnow
from soundstage.errors import ErrorCode
from soundstage.pools import TaskName
from soundstage.queue import create_celery_app, enqueue_job
from soundstage.schemas import WorkerInfo
from soundstage.settings import Settings
from tests.support.servers import RedisServer

SWEEPER = "host-a:1"
DEAD = "host-b:2"


@pytest.fixture
def repo(database_url: str) -> JobRepository:
    return JobRepository(create_session_factory(create_db_engine(database_url)))


@pytest.fixture
def registry(redis_server: RedisServer) -> object:
    """A clean Redis whose worker registry lists the sweeping worker (as its heartbeat would)."""
    client = redis_server.client()
    client.flushall()
    register(client, SWEEPER)
    return client


@pytest.fixture
def broker(redis_server: RedisServer, registry: object) -> Iterator[Any]:
    """A Celery app on that Redis, publishing real task messages as the API does."""
    app = create_celery_app(Settings(redis_url=redis_server.url))
    yield app
    app.close()


def register(redis: object, hostname: str) -> None:
    info = WorkerInfo(
        hostname=hostname,
        queue="musicgen",
        model="random:tiny",
        device="cpu",
        gpu_available=False,
        random_weights=True,
        model_loaded=True,
        seen_at=utcnow(),
    )
    workers.publish(redis, info)


def running(repo: JobRepository, worker: str) -> str:
    job_id = repo.create(kind="generate", queue="musicgen", model="random:tiny", params={}).id
    assert repo.claim(job_id, worker=worker, max_attempts=3, stale_after_s=300).outcome is ClaimOutcome.RUN
    return job_id


def sweep(repo: JobRepository, redis: object, published: list[str], *, idle_seconds: float = 0.0) -> list[str] | None:
    redis.delete(reaper.LOCK_KEY)  # type: ignore[attr-defined]  # a new period
    return reaper.sweep(repo, redis, lambda job: published.append(job.id), sweeper=SWEEPER, idle_seconds=idle_seconds)


def test_a_job_whose_worker_left_the_registry_is_queued_again_and_published(
    repo: JobRepository, registry: object
) -> None:
    lost = running(repo, DEAD)
    alive = running(repo, "host-c:3")
    register(registry, "host-c:3")
    published: list[str] = []
    assert sweep(repo, registry, published) == [lost]
    assert published == [lost]
    job = repo.get(lost)
    assert job is not None and job.status == "queued" and job.worker is None and job.attempts == 1
    still = repo.get(alive)
    assert still is not None and still.status == "processing" and still.worker == "host-c:3"
    # The next claim is the job's second attempt; the dead run, if it ever wakes, is told it lost the job.
    assert repo.claim(lost, worker=SWEEPER, max_attempts=3, stale_after_s=300).outcome is ClaimOutcome.RUN
    assert repo.get(lost).attempts == 2  # type: ignore[union-attr]
    assert repo.update_progress(lost, 50.0, "late", worker=DEAD) is Progress.NOT_OURS
    assert sweep(repo, registry, published) == []  # its new worker is alive


def test_a_recently_written_job_and_a_pipeline_parent_are_left_alone(
    repo: JobRepository, registry: object, broker: Any
) -> None:
    recent = running(repo, DEAD)
    parent = repo.create(kind="soundtrack", queue="pipeline", model=None, params={}).id
    with repo.family(parent) as family:
        family.start(DEAD)  # the pipeline worker that started it died: its steps advance it anyway
        child = family.add_child(
            NewChild(step="scene:0", kind="generate", queue="musicgen", model=None, params={}, stage="x")
        )
    enqueue_job(broker, TaskName.MUSICGEN_GENERATE, child.id)  # its message waits in the queue
    published: list[str] = []
    assert sweep(repo, registry, published, idle_seconds=3600) == []
    assert sweep(repo, registry, published) == [recent]
    assert repo.get(parent).status == "processing"  # type: ignore[union-attr]


def test_one_sweep_per_period_and_none_while_the_registry_lacks_the_sweeper(
    repo: JobRepository, registry: object
) -> None:
    running(repo, DEAD)
    published: list[str] = []
    idle = {"sweeper": SWEEPER, "idle_seconds": 0.0}
    registry.delete(reaper.LOCK_KEY)  # type: ignore[attr-defined]
    assert reaper.sweep(repo, registry, lambda job: published.append(job.id), **idle) is not None  # type: ignore[arg-type]
    assert reaper.sweep(repo, registry, lambda job: published.append(job.id), **idle) is None  # type: ignore[arg-type]
    registry.flushall()  # type: ignore[attr-defined]  # Redis lost its data: every worker looks dead
    other = running(repo, DEAD)
    assert sweep(repo, registry, published) is None
    assert repo.get(other).status == "processing"  # type: ignore[union-attr]


def test_a_job_that_kills_its_worker_every_time_ends_attempts_exhausted(repo: JobRepository, registry: object) -> None:
    job_id = repo.create(kind="generate", queue="musicgen", model="random:tiny", params={}).id
    published: list[str] = []
    for attempt in range(1, 4):
        worker = f"host-b:{attempt}"
        claim = repo.claim(job_id, worker=worker, max_attempts=3, stale_after_s=300)
        assert claim.outcome is ClaimOutcome.RUN and claim.job is not None and claim.job.attempts == attempt
        assert sweep(repo, registry, published) == [job_id]  # each worker dies
    gave_up = repo.claim(job_id, worker="host-b:4", max_attempts=3, stale_after_s=300)
    assert gave_up.outcome is ClaimOutcome.GAVE_UP
    job = repo.get(job_id)
    assert job is not None and job.status == "failed" and job.error_code == ErrorCode.ATTEMPTS_EXHAUSTED.value
    assert published == [job_id] * 3


def test_a_stopping_worker_hands_its_jobs_back_without_using_an_attempt(repo: JobRepository) -> None:
    mine = [running(repo, SWEEPER), running(repo, SWEEPER)]
    other = running(repo, DEAD)
    published: list[str] = []
    assert sorted(repo.hand_back(SWEEPER, lambda job: published.append(job.id))) == sorted(mine)
    assert sorted(published) == sorted(mine)
    for job_id in mine:
        job = repo.get(job_id)
        assert job is not None and job.status == "queued" and job.attempts == 0 and job.worker is None
        assert repo.update_progress(job_id, 60.0, "still going", worker=SWEEPER) is Progress.NOT_OURS
        assert not repo.complete(job_id, [], {}, worker=SWEEPER)
    assert repo.get(other).status == "processing"  # type: ignore[union-attr]


def test_a_hand_back_that_cannot_publish_changes_nothing(repo: JobRepository) -> None:
    job_id = running(repo, SWEEPER)

    def broker_down(job: Job) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        repo.hand_back(SWEEPER, broker_down)
    job = repo.get(job_id)
    assert job is not None and job.status == "processing" and job.worker == SWEEPER and job.attempts == 1


def queued(repo: JobRepository) -> str:
    return repo.create(kind="generate", queue="musicgen", model="random:tiny", params={}).id


def test_a_queued_job_whose_message_the_broker_lost_is_sent_again(
    repo: JobRepository, registry: Any, broker: Any
) -> None:
    waiting, delivered, lost = queued(repo), queued(repo), queued(repo)
    enqueue_job(broker, TaskName.MUSICGEN_GENERATE, delivered)
    enqueue_job(broker, TaskName.MUSICGEN_GENERATE, waiting)
    with broker.connection_for_read() as connection:
        # A consumer takes the first message and has not acknowledged it: Kombu keeps it in `unacked`.
        consumer = connection.SimpleQueue("musicgen", no_ack=False)
        message = consumer.get(timeout=5)
        assert registry.hlen(broker_contents.UNACKED_KEY) == 1 and registry.llen("musicgen") == 1
        published: list[str] = []
        assert sweep(repo, registry, published, idle_seconds=3600) == []  # sent too recently to judge
        assert sweep(repo, registry, published) == [lost]
        assert published == [lost]
        resent = repo.get(lost)
        assert resent is not None and resent.status == "queued" and resent.attempts == 0
        # Sent again just now: the next sweep leaves it to the message it was given.
        assert sweep(repo, registry, published, idle_seconds=3600) == []
        message.ack()
        consumer.close()


def test_the_jobs_of_a_queue_too_long_to_look_into_are_left_alone(
    repo: JobRepository, registry: Any, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_contents, "MAX_SCANNED", 1)
    for _ in range(2):
        enqueue_job(broker, TaskName.MUSICGEN_GENERATE, queued(repo))
    queued(repo)  # its message may be further down a long queue: nothing is concluded
    assert sweep(repo, registry, []) == []


def test_job_of_reads_the_job_of_a_real_message_and_nothing_of_anything_else(registry: Any, broker: Any) -> None:
    enqueue_job(broker, TaskName.MUSICGEN_GENERATE, "job-1")
    (envelope,) = registry.lrange("musicgen", 0, -1)
    assert broker_contents.job_of(envelope) == "job-1"
    for junk in (
        b"",
        b"not json",
        b"{}",
        b'{"body": "!!"}',
        b'{"body": "e30=", "properties": {}}',
        b'{"body": "e30=", "properties": null}',
        b"[1]",
    ):
        assert broker_contents.job_of(junk) is None
