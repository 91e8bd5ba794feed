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
from tests.support.stack import ServiceProcess, Stack, child_pids, poll_job
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


def start_with_running_job(stack: Stack, *worker_args: str) -> tuple[ServiceProcess, str]:
    """The API and one worker of ``stack``, with LONG_JOB submitted and making progress on that worker."""
    stack.start_api()
    worker = stack.start_worker(*worker_args)
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id: str = client.post("/generate", json=LONG_JOB).json()["job_id"]
    wait_running(stack, job_id)
    return worker, job_id


def completes_once(client: httpx.Client, stack: Stack, job_id: str, *, attempts: int) -> dict[str, object]:
    """Wait for ``job_id`` to finish: completed, on its ``attempts``-th attempt, with one result."""
    job = poll_job(client, job_id, {"completed", "failed"}, timeout=180)
    assert job["status"] == "completed", (job, stack.logs())
    assert job["attempts"] == attempts
    assert len(job["result_urls"]) == 1
    return job


def test_sigkill_of_pool_process_redelivers_the_job(make_stack: StackFactory, s3_server: S3Server) -> None:
    stack = make_stack()
    # One job per process, so a killed pool process is replaced and its job requeued at once.
    worker, job_id = start_with_running_job(stack, "--pool", "prefork")
    with stack.client() as client:
        (pool_process,) = child_pids(worker.pid)
        os.kill(pool_process, signal.SIGKILL)
        completes_once(client, stack, job_id, attempts=2)
        assert stored_objects(s3_server, stack, job_id) == [f"outputs/{job_id}_generated.wav"]


def test_sigkill_of_whole_worker_is_redelivered_to_the_next_worker(
    make_stack: StackFactory, s3_server: S3Server
) -> None:
    # A short visibility timeout stands in for the production one (longer than any job).
    # The heartbeat timeout stays above the longest gap between heartbeats on a busy machine (the
    # redelivered job waits for the new worker to load its model before its first progress write).
    stack = make_stack(BROKER_VISIBILITY_TIMEOUT="4", JOB_HEARTBEAT_TIMEOUT="10")
    first, job_id = start_with_running_job(stack)
    with stack.client() as client:
        first.kill_group()
        assert client.get(f"/jobs/{job_id}").json()["status"] == "processing"
        stack.start_worker()
        completes_once(client, stack, job_id, attempts=2)
        assert stored_objects(s3_server, stack, job_id) == [f"outputs/{job_id}_generated.wav"]


def test_a_job_whose_worker_died_is_queued_again_within_a_minute(make_stack: StackFactory, s3_server: S3Server) -> None:
    """The broker's visibility timeout stays at its default (over an hour): the reaper gives the job back."""
    stack = make_stack(JOB_REAP_AFTER_SECONDS="5")
    first, job_id = start_with_running_job(stack)
    with stack.client() as client:
        first.kill_group()
        died = time.monotonic()
        stack.start_worker()

        def taken_again() -> dict[str, object] | None:
            job: dict[str, object] = client.get(f"/jobs/{job_id}").json()
            return job if job["attempts"] == 2 or job["status"] != "processing" else None

        wait_until(taken_again, 75, interval=0.2, message=f"job {job_id} to be queued again\n{stack.logs()}")
        # The dead worker's registry entry lives 30 s; the reaper sweeps every 10 s.
        assert time.monotonic() - died <= 60
        completes_once(client, stack, job_id, attempts=2)
        assert stored_objects(s3_server, stack, job_id) == [f"outputs/{job_id}_generated.wav"]
    assert "lost its worker; queued again" in stack.logs()


def test_a_stopping_worker_hands_its_running_job_back_at_once(make_stack: StackFactory) -> None:
    stack = make_stack()
    first, job_id = start_with_running_job(stack)
    with stack.client() as client:
        assert first.proc is not None
        stopping = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=30)
        stopped_in = time.monotonic() - stopping
        job = client.get(f"/jobs/{job_id}").json()
        # Given back, not finished during the stop; and the stop did not count as an attempt.
        assert (job["status"], job["attempts"], job["progress"]) == ("queued", 0, 0), (job, stack.logs())
        assert stopped_in < 10, (stopped_in, first.log_text())
        stack.start_worker()
        completes_once(client, stack, job_id, attempts=1)
    assert "handed back to the queue at once: 1 running job(s)" in first.log_text()


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
    with stack.client() as client:
        # No worker is up yet: the job is queued for one.
        job_id = client.post("/generate", json={"prompt": "x", "duration": 5}).json()["job_id"]
        started = time.monotonic()
        stack.start_worker()
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=90)
        assert job["status"] == "failed" and job["error_code"] == "model_unavailable"
        assert "HF_HOME" in job["error"] and "random:tiny" in job["error"]
        assert time.monotonic() - started < 60
        health = client.get("/health").json()
        workers = health["workers"]
        assert workers and workers[0]["model_loaded"] is False and workers[0]["load_error"]
        # Health tells the truth: the pool is up but cannot serve, and says why.
        assert health["status"] == "degraded" and "no worker could load" in health["problems"]["musicgen"]
        assert set(workers[0]["load_errors"]) == {"facebook/musicgen-small"}
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["down"] == ["workers"]
        # Now that its only live worker said it cannot load the model, a new job is refused at once, with the fix.
        refused = client.post("/generate", json={"prompt": "x", "duration": 5})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        assert "HF_HOME" in refused.json()["error"]["message"] and "retry-after" not in refused.headers
        assert client.get("/jobs").json()["total"] == 1


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
            # The worker registry lives in the broker's Redis too: no pool can be shown to serve.
            assert ready.status_code == 503 and ready.json()["down"] == ["broker", "workers"]
            assert client.get("/jobs").json()["total"] == 0  # the refused job left no row behind
            broker.start()
            again = wait_until(lambda: accepted(client), 30, message="API to accept jobs again")
            assert again.status_code == 200
            # The worker reconnects by itself and runs the job.
            job = poll_job(client, again.json()["job_id"], {"completed", "failed"}, timeout=120)
            assert job["status"] == "completed", (job, stack.logs())


def test_jobs_whose_messages_a_restarted_broker_lost_are_sent_again_and_complete(make_stack: StackFactory) -> None:
    """Redis without persistence comes back empty: the queued jobs' messages (one waiting, one prefetched by
    the busy worker) are gone, and the reaper sends the jobs again once their rows say they were sent
    JOB_REAP_AFTER_SECONDS ago (the same path covers a message lost in a crash mid-delivery)."""
    with RedisServer() as broker:
        stack = make_stack(redis=broker, MUSICGEN_MAX_BATCH="1", JOB_REAP_AFTER_SECONDS="3")
        _, busy = start_with_running_job(stack)
        with stack.client() as client:
            waiting = [client.post("/generate", json={"prompt": "x", "duration": 1}).json()["job_id"] for _ in range(2)]
            broker.stop()
            broker.start()
            assert broker.client().llen("musicgen") == 0
            for job_id in [busy, *waiting]:
                job = poll_job(client, job_id, {"completed", "failed"}, timeout=150)
                assert job["status"] == "completed", (job, stack.logs())
                assert len(job["result_urls"]) == 1
    assert stack.logs().count("the broker held no message for it; sent again") >= 2
