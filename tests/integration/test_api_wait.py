"""Waiting for a job in the request: `Prefer: wait` on `POST /generate` and the shared waiter, in-process
against real Redis and each real database. No worker process runs: where a job must end, the test ends it
with the real job runner (`soundstage.jobrunner`, what every pool runs), which announces the end on the
job's channel exactly as a worker does; a `DELETE /jobs/{id}` announces a cancelled queued job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from soundstage.db import Job, NewFile
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, JobRunner, ProgressReporter
from soundstage_api.state import AppState
from soundstage_api.waiting import requested_wait
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.support.audio_files import encode, synth
from tests.support.servers import RedisServer
from tests.support.waiting import wait_until

RATE = 32000


def app_state(client: TestClient) -> AppState:
    state: AppState = client.app.state.soundstage  # type: ignore[attr-defined]
    return state


def finish_job(state: AppState, job_id: str, *, fail: bool = False) -> None:
    """Run the job as a MusicGen worker would, through the real job runner: a WAV of the job's duration
    (a tone) is stored as `{job_id}_generated.wav`, or the job fails with `generation_failed`."""

    def execute(job: Job, _: ProgressReporter) -> JobOutput:
        if fail:
            raise AppError(ErrorCode.GENERATION_FAILED, "The model raised an error on this input.")
        seconds = float(job.params["duration"])
        stored = state.store.put_bytes(f"{job.id}_generated.wav", encode("wav", synth(RATE, 1, seconds), RATE))
        files = [NewFile(stored.name, "audio/wav", stored.size, duration_s=seconds, sample_rate=RATE, channels=1)]
        return JobOutput(files=files, result={"seed": job.params["seed"]}, audio_seconds=seconds)

    runner = JobRunner(repo=state.repo, store=state.store, redis=state.redis, worker_name="test:1", max_attempts=3)
    runner.run(job_id, execute)


def queued_job_id(client: TestClient) -> str:
    """The one job the request in flight has submitted, once its row exists."""

    def submitted() -> str | None:
        jobs = app_state(client).repo.list_jobs(status=None, kind=None, limit=1, skip=0)[0]
        return jobs[0].id if jobs else None

    return wait_until(submitted, 10, message="the waiting request to submit its job")


def in_flight(pool: ThreadPoolExecutor, send: Callable[[], httpx.Response]) -> Future[httpx.Response]:
    return pool.submit(send)


def answer_once_finished(
    client: TestClient, send: Callable[[], httpx.Response], *, fail: bool = False
) -> httpx.Response:
    """Send a request that waits for the job it submits, and end that job (as a worker would) while it waits."""
    with ThreadPoolExecutor(1) as pool:
        answer = in_flight(pool, send)
        finish_job(app_state(client), queued_job_id(client), fail=fail)
        return answer.result(timeout=30)


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(database_url, redis, tmp_path, sync_wait_seconds=30) as client:
        yield client


def _generate(client: TestClient, prefer: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Prefer": prefer} if prefer is not None else {}
    return client.post("/generate", json={"prompt": "gentle guitar", "duration": 2, **body}, headers=headers)


def test_without_prefer_the_answer_is_todays(client: TestClient, redis: RedisServer) -> None:
    response = _generate(client)
    assert response.status_code == 200 and response.json() == {"job_id": response.json()["job_id"], "status": "queued"}
    assert "preference-applied" not in response.headers and "location" not in response.headers
    assert len(queued_payloads(redis)) == 1


def test_prefer_wait_past_the_limit_is_202_with_location(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, sync_wait_seconds=0.4) as client:
        started = time.monotonic()
        response = _generate(client, prefer="wait=20")
        waited = time.monotonic() - started
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert response.json() == {"job_id": job_id, "status": "queued"}
        assert response.headers["location"] == f"/jobs/{job_id}"
        assert response.headers["preference-applied"] == "wait=0.4"  # capped by SYNC_WAIT_SECONDS
        assert 0.4 <= waited < 5, waited
        assert client.get(response.headers["location"]).json()["status"] == "queued"
        assert len(queued_payloads(redis)) == 1


def test_prefer_wait_shorter_than_the_limit_is_applied_as_asked(client: TestClient) -> None:
    started = time.monotonic()
    response = _generate(client, prefer="respond-async, wait=1")
    assert response.status_code == 202 and response.headers["preference-applied"] == "wait=1"
    assert 1 <= time.monotonic() - started < 10


def test_a_job_that_finishes_while_waiting_is_200_with_the_job_view(client: TestClient) -> None:
    state = app_state(client)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = in_flight(pool, lambda: _generate(client, prefer="wait=25", seed=7))
        job_id = queued_job_id(client)
        finish_job(state, job_id)
        response = answer.result(timeout=30)
    assert time.monotonic() - started < 15, "the waiter woke on the event, not at its deadline"
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=25"
    body = response.json()
    assert body == client.get(f"/jobs/{job_id}").json(), "the body is GET /jobs/{id}'s"
    assert body["status"] == "completed" and body["result_urls"] == [f"/files/{job_id}_generated.wav"]
    assert body["params"]["seed"] == 7 and body["result"]["files"][0]["duration"] == 2


def test_a_failed_job_is_200_with_its_error(client: TestClient) -> None:
    with ThreadPoolExecutor(1) as pool:
        answer = in_flight(pool, lambda: _generate(client, prefer="wait=25"))
        finish_job(app_state(client), queued_job_id(client), fail=True)
        response = answer.result(timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["error_code"]) == ("failed", "generation_failed")


def test_cancelling_a_queued_job_announces_it_to_the_waiter(client: TestClient) -> None:
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = in_flight(pool, lambda: _generate(client, prefer="wait=25"))
        job_id = queued_job_id(client)
        assert client.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
        response = answer.result(timeout=30)
    assert time.monotonic() - started < 15, "DELETE announced the end; the waiter did not sit out its wait"
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_a_job_already_finished_when_the_wait_starts_is_read_at_once(client: TestClient) -> None:
    """The waiter reads the row after subscribing: an end announced before the subscription is not lost."""
    job_id = _generate(client).json()["job_id"]
    finish_job(app_state(client), job_id)
    state = app_state(client)

    async def wait() -> Job | None:
        from starlette.concurrency import run_in_threadpool

        return await state.waiter.wait(job_id, 20, lambda: run_in_threadpool(state.repo.get, job_id))

    started = time.monotonic()
    job = client.portal.call(wait)  # type: ignore[union-attr]
    assert job is not None and job.status == "completed" and time.monotonic() - started < 5


def test_invalid_requests_are_refused_before_any_wait(client: TestClient, redis: RedisServer) -> None:
    started = time.monotonic()
    response = _generate(client, prefer="wait=25", duration=0)
    assert response.status_code == 422 and time.monotonic() - started < 5
    assert queued_payloads(redis) == []


def test_openapi_documents_prefer_and_the_202(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/generate"]["post"]
    prefer = next(p for p in operation["parameters"] if p["name"] == "prefer")
    assert prefer["in"] == "header" and "wait=" in prefer["description"]
    assert operation["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobPending")
    assert "Prefer: wait" in operation["responses"]["200"]["description"]


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ([], None),
        (["wait=10"], 10),
        (["respond-async, wait=5"], 5),
        (["WAIT = 7"], 7),
        (['wait="3"'], 3),
        (["handling=lenient", "wait=4;x=y"], 4),
        (["wait=-1"], None),
        (["wait=soon"], None),
        (["wait"], None),
        (["return=minimal"], None),
    ],
)
def test_prefer_parsing(headers: list[str], seconds: int | None) -> None:
    assert requested_wait(headers) == seconds
