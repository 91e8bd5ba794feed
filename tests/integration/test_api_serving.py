"""A job no live worker can serve is refused at submission (503 `model_unavailable`), from the heartbeats
the workers write to a real Redis; a pool without any live worker still queues (its workers restart)."""

from __future__ import annotations

from pathlib import Path

from soundstage import workers
from soundstage.db import utcnow
from soundstage.schemas import WorkerInfo
from tests.integration.test_api import make_client
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support.heartbeats import DEMUCS_TINY, MUSICGEN_TINY, report
from tests.support.servers import RedisServer

MODEL = "random:tiny"
BODY = {"prompt": "x", "duration": 1}
SOUNDTRACK = {"base_prompt": "x", "scenes": [{"duration": 6}, {"duration": 6}]}
REASON = "weights for 'facebook/musicgen-small' are not in HF_HOME and this machine is offline"


def loading(redis: RedisServer, hostname: str, *, error: str | None = None) -> None:
    """The heartbeat of a MusicGen worker that has not loaded MODEL yet (or, with ``error``, failed to)."""
    workers.publish(
        redis.client(),
        WorkerInfo(
            hostname=hostname,
            queue="musicgen",
            model=MODEL,
            device="cpu",
            gpu_available=False,
            random_weights=True,
            model_loaded=False,
            load_error=f"{MODEL}: {error}" if error else None,
            load_errors={MODEL: error} if error else {},
            seen_at=utcnow(),
        ),
    )


def test_with_no_live_worker_the_job_waits_in_the_queue(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    redis.client().flushall()
    with make_client(database_url, redis, tmp_path, musicgen={"model": MODEL}) as client:
        assert client.post("/generate", json=BODY).status_code == 200


def test_while_the_model_loads_a_submission_is_503_with_retry_after(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    redis.client().flushall()
    loading(redis, "host-a:1")
    with make_client(database_url, redis, tmp_path, musicgen={"model": MODEL}) as client:
        response = client.post("/generate", json=BODY)
        error = _error(response, 503, "model_unavailable")
        assert "still loading" in error["message"] and response.headers["retry-after"] == "10"
        _error(client.post("/generate/soundtrack", json=SOUNDTRACK), 503, "model_unavailable")
        assert client.get("/jobs").json()["total"] == 0  # nothing was queued to fail


def test_when_every_worker_failed_to_load_the_reason_is_the_answer(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    redis.client().flushall()
    loading(redis, "host-a:1", error=REASON)
    loading(redis, "host-b:2", error=REASON)
    with make_client(database_url, redis, tmp_path, musicgen={"model": MODEL}) as client:
        response = client.post("/generate", json=BODY)
        error = _error(response, 503, "model_unavailable")
        assert REASON in error["message"] and "retry-after" not in response.headers
        assert client.get("/jobs").json()["total"] == 0


def test_one_worker_with_the_model_loaded_serves(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    redis.client().flushall()
    loading(redis, "host-a:1", error=REASON)
    report(redis.client(), "musicgen", MUSICGEN_TINY, hostname="host-b:2")
    # A stem-aware soundtrack needs the Demucs pool too: its only worker is still loading. (Published
    # before the API starts: the API reads heartbeats at most every 2 s.)
    workers.publish(
        redis.client(),
        report(redis.client(), "demucs", DEMUCS_TINY, hostname="host-c:3").model_copy(
            update={"models_loaded": [], "model_loaded": False, "capabilities": []}
        ),
    )
    with make_client(database_url, redis, tmp_path, musicgen={"model": MODEL}) as client:
        assert client.post("/generate", json=BODY).status_code == 200
        _error(client.post("/generate/soundtrack", json=SOUNDTRACK), 503, "model_unavailable")


def test_a_worker_whose_device_failed_its_check_serves_nothing(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    redis.client().flushall()
    broken = report(redis.client(), "musicgen", MUSICGEN_TINY, hostname="host-a:1")
    workers.publish(redis.client(), broken.model_copy(update={"device_error": "device cuda:0 failed a test operation"}))
    with make_client(database_url, redis, tmp_path, musicgen={"model": MODEL}) as client:
        response = client.post("/generate", json=BODY)
        error = _error(response, 503, "model_unavailable")
        assert "failed a test operation" in error["message"] and "retry-after" not in response.headers
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "failed a test operation" in health["problems"]["musicgen"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and "workers" in ready.json()["down"]
