"""Faults: killed workers, a database or broker outage, a model that cannot load, cancellation."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime

import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.support.servers import PostgresServer, RedisServer, S3Server
from tests.support.stack import Stack, child_pids, poll_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

LONG_JOB = {"prompt": "a long piece to interrupt", "duration": 30}


def wait_running(client_stack: Stack, job_id: str) -> None:
    with client_stack.client() as client:
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").json()["progress"] > 0,
            90,
            interval=0.05,
            message=f"job {job_id} to make progress\n{client_stack.logs()}",
        )


def accepted(client: httpx.Client) -> httpx.Response | None:
    """A `/generate` response once the API accepts jobs again, else None (keep polling)."""
    response = client.post("/generate", json={"prompt": "after the outage", "duration": 1})
    return response if response.status_code == 200 else None


def stored_objects(s3: S3Server, stack: Stack, job_id: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=stack.bucket)  # type: ignore[attr-defined]
    return [item["Key"] for item in listing.get("Contents", []) if job_id in item["Key"]]


def test_sigkill_of_pool_process_redelivers_the_job(make_stack: StackFactory, s3_server: S3Server) -> None:
    stack = make_stack()
    stack.start_api()
    # One job per process, so a killed pool process is replaced and its job requeued at once.
    worker = stack.start_worker("--pool", "prefork")
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = client.post("/generate", json=LONG_JOB).json()["job_id"]
        wait_running(stack, job_id)
        (pool_process,) = child_pids(worker.pid)
        os.kill(pool_process, signal.SIGKILL)
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=180)
        assert job["status"] == "completed", (job, stack.logs())
        assert job["attempts"] == 2
        assert len(job["result_urls"]) == 1
        assert stored_objects(s3_server, stack, job_id) == [f"outputs/{job_id}_generated.wav"]


def test_sigkill_of_whole_worker_is_redelivered_to_the_next_worker(
    make_stack: StackFactory, s3_server: S3Server
) -> None:
    # A short visibility timeout stands in for the production one (longer than any job).
    # The heartbeat timeout stays above the longest gap between heartbeats on a busy machine (the
    # redelivered job waits for the new worker to load its model before its first progress write).
    stack = make_stack(BROKER_VISIBILITY_TIMEOUT="4", JOB_HEARTBEAT_TIMEOUT="10")
    stack.start_api()
    first = stack.start_worker()
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = client.post("/generate", json=LONG_JOB).json()["job_id"]
        wait_running(stack, job_id)
        first.kill_group()
        assert client.get(f"/jobs/{job_id}").json()["status"] == "processing"
        stack.start_worker()
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=180)
        assert job["status"] == "completed", (job, stack.logs())
        assert job["attempts"] == 2
        assert stored_objects(s3_server, stack, job_id) == [f"outputs/{job_id}_generated.wav"]


def test_database_outage_is_503_and_recovers(make_stack: StackFactory) -> None:
    with PostgresServer() as database:
        stack = make_stack(database_url=database.url)
        stack.start_api()
        stack.start_worker()
        stack.wait_for_workers(1)
        with stack.client() as client:
            job_id = client.post("/generate", json={"prompt": "x", "duration": 1}).json()["job_id"]
            assert poll_job(client, job_id, {"completed", "failed"})["status"] == "completed"
            database.stop()
            started = time.monotonic()
            response = client.post("/generate", json={"prompt": "x", "duration": 1})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "database_unavailable"
            assert time.monotonic() - started < 10
            assert client.get(f"/jobs/{job_id}").json()["error"]["code"] == "database_unavailable"
            ready = client.get("/ready")
            assert ready.status_code == 503 and "database" in ready.json()["down"]
            database.start()
            again = wait_until(lambda: accepted(client), 30, message="API to accept jobs again")
            assert again.status_code == 200
            job = poll_job(client, again.json()["job_id"], {"completed", "failed"})
            assert job["status"] == "completed", (job, stack.logs())


def test_unavailable_model_fails_fast_with_a_fix(make_stack: StackFactory, tmp_path: object) -> None:
    stack = make_stack(MUSICGEN_MODEL="facebook/musicgen-small", HF_HOME=str(tmp_path))
    stack.start_api()
    stack.start_worker()
    with stack.client() as client:
        started = time.monotonic()
        job_id = client.post("/generate", json={"prompt": "x", "duration": 5}).json()["job_id"]
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=90)
        assert job["status"] == "failed" and job["error_code"] == "model_unavailable"
        assert "HF_HOME" in job["error"] and "random:tiny" in job["error"]
        assert time.monotonic() - started < 60
        health = client.get("/health").json()
        workers = health["workers"]
        assert workers and workers[0]["model_loaded"] is False and workers[0]["load_error"]
        # Health tells the truth: the pool is up but cannot serve, and says why.
        assert health["status"] == "degraded" and "no worker could load" in health["problems"]["musicgen"]


def test_a_job_past_job_timeout_seconds_is_stopped_and_the_worker_goes_on(make_stack: StackFactory) -> None:
    """The default threads pool, where Celery's own time limits never fire: the deadline is the job's."""
    stack = make_stack(JOB_TIMEOUT_SECONDS="10")
    stack.start_api()
    stack.start_worker()
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = client.post("/generate", json={"prompt": "far too long for ten seconds", "duration": 300}).json()[
            "job_id"
        ]
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=120)
        assert job["status"] == "failed" and job["error_code"] == "job_timeout", (job, stack.logs())
        assert "JOB_TIMEOUT_SECONDS" in job["error"] and job["result_urls"] == []
        ran = (_parsed(job["finished_at"]) - _parsed(job["started_at"])).total_seconds()
        assert 10 <= ran < 40, ran
        after = client.post("/generate", json={"prompt": "short", "duration": 1}).json()["job_id"]
        assert poll_job(client, after, {"completed", "failed"}, timeout=60)["status"] == "completed"


def _parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_cancelled_queued_job_never_runs(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_api()
    with stack.client() as client:
        cancelled = client.post("/generate", json={"prompt": "never", "duration": 1}).json()["job_id"]
        assert client.delete(f"/jobs/{cancelled}").json()["status"] == "cancelled"
        stack.start_worker()
        stack.wait_for_workers(1)
        later = client.post("/generate", json={"prompt": "later", "duration": 1}).json()["job_id"]
        assert poll_job(client, later, {"completed", "failed"})["status"] == "completed"
        job = client.get(f"/jobs/{cancelled}").json()
        assert job["status"] == "cancelled" and job["attempts"] == 0 and job["started_at"] is None


def test_broker_outage_is_503_and_api_and_worker_recover(make_stack: StackFactory) -> None:
    with RedisServer() as broker:
        stack = make_stack(redis=broker)
        stack.start_api()
        stack.start_worker()
        stack.wait_for_workers(1)
        with stack.client() as client:
            broker.stop()
            started = time.monotonic()
            response = client.post("/generate", json={"prompt": "x", "duration": 1})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "broker_unavailable"
            assert time.monotonic() - started < 10
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["down"] == ["broker"]
            assert client.get("/jobs").json()["total"] == 0  # the refused job left no row behind
            broker.start()
            again = wait_until(lambda: accepted(client), 30, message="API to accept jobs again")
            assert again.status_code == 200
            # The worker reconnects by itself and runs the job.
            job = poll_job(client, again.json()["job_id"], {"completed", "failed"}, timeout=120)
            assert job["status"] == "completed", (job, stack.logs())
