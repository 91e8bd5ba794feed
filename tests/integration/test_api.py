"""The API in-process (ASGI test client) against real Redis and a real database; no workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from soundstage.pools import Queue
from soundstage.settings import Settings
from soundstage_api.app import create_app
from tests.support.heartbeats import MUSICGEN_TINY, report
from tests.support.messages import queued_tasks
from tests.support.servers import RedisServer


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    redis_server.client().flushall()
    yield redis_server


def make_client(database_url: str, redis: RedisServer, tmp_path: Path, **overrides: object) -> TestClient:
    settings = Settings(
        database_url=database_url,
        redis_url=redis.url,
        storage_url=str(tmp_path / "files"),
        data_dir=tmp_path,
        **{"musicgen": {"model": "facebook/musicgen-small"}, **overrides},
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(database_url, redis, tmp_path) as client:
        yield client


def queued_payloads(redis: RedisServer, queue: Queue = Queue.MUSICGEN) -> list[dict[str, Any]]:
    """The messages waiting on ``queue``: their headers and their (validated) payload."""
    return [
        {"headers": task.headers, "payload": task.payload.model_dump()}
        for task in queued_tasks(redis.client(), queue.value)
    ]


def test_generate_records_and_enqueues(client: TestClient, redis: RedisServer) -> None:
    response = client.post("/generate", json={"prompt": "gentle guitar", "duration": 30, "mood": "warm"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"job_id", "status"} and body["status"] == "queued"
    messages = queued_payloads(redis)
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "musicgen.generate"
    assert messages[0]["payload"]["job_id"] == body["job_id"]
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert job["status"] == "queued" and job["progress"] == 0 and job["result_urls"] == []
    assert job["model"] == "facebook/musicgen-small"
    assert 0 <= job["params"]["seed"] <= 2**31 - 1  # -1 resolved at submission
    assert job["params"]["full_prompt"] == "gentle guitar, warm"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"duration": 10}, "prompt"),
        ({"prompt": "", "duration": 10}, "prompt"),
        ({"prompt": "   ", "duration": 10}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "x", "duration": 0}, "duration"),
        ({"prompt": "x", "duration": -5}, "duration"),
        ({"prompt": "x", "duration": 301}, "duration"),
        ({"prompt": "x", "duration": "long"}, "duration"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x", "temperature": 2.5}, "temperature"),
        ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": "x", "seed": -2}, "seed"),
        ({"prompt": "x", "format": "aiff"}, "format"),
        ({"prompt": "x", "model": "facebook/musicgen-large"}, "model"),
        ({"prompt": "x", "durration": 10}, "durration"),
    ],
)
def test_bad_input_is_422_with_field_details(
    client: TestClient, redis: RedisServer, payload: dict[str, object], field: str
) -> None:
    response = client.post("/generate", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("validation_error", "unknown_model")
    assert any(detail["loc"][-1] == field for detail in error["details"]), error
    assert response.json()["detail"] == error["message"]
    assert queued_payloads(redis) == []


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_text_alias_and_short_model_name(client: TestClient) -> None:
    response = client.post(
        "/generate", json={"text": "lofi", "model": "musicgen-small", "guidance_scale": 3.0, "temperature": 1.0}
    )
    assert response.status_code == 200
    assert client.get(f"/jobs/{response.json()['job_id']}").json()["params"]["prompt"] == "lofi"


def test_list_filter_and_cancel_queued(client: TestClient) -> None:
    ids = [client.post("/generate", json={"prompt": f"p{i}"}).json()["job_id"] for i in range(3)]
    listing = client.get("/jobs", params={"limit": 2}).json()
    assert listing["total"] == 3 and [j["job_id"] for j in listing["jobs"]] == ids[::-1][:2]
    assert client.get("/jobs", params={"skip": 2}).json()["jobs"][0]["job_id"] == ids[0]
    cancelled = client.delete(f"/jobs/{ids[1]}").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert client.delete(f"/jobs/{ids[1]}").status_code == 200  # idempotent, counted once
    metrics = client.get("/metrics").text
    assert 'soundstage_jobs_cancelled_total{kind="generate",model="facebook/musicgen-small"} 1.0' in metrics
    assert [j["job_id"] for j in client.get("/jobs", params={"status": "cancelled"}).json()["jobs"]] == [ids[1]]
    assert client.get("/jobs", params={"kind": "generate"}).json()["total"] == 3
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 422
    assert client.delete("/jobs/does-not-exist").status_code == 404


def test_unknown_routes_and_files(client: TestClient) -> None:
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    for name in ("nope.wav", "..%2F..%2Fetc%2Fpasswd", ".hidden", "a%5Cb"):
        response = client.get(f"/files/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]["code"] in ("file_not_found", "not_found")
    assert client.get("/files/../../etc/passwd").status_code == 404
    assert client.get("/files/").json() == []


def test_auth_with_single_key(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    report(redis.client(), "musicgen", MUSICGEN_TINY)  # a pool that can serve: /ready answers 200
    with make_client(database_url, redis, tmp_path, api_key="s3cret") as client:
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers={"X-API-Key": "wrong"}).status_code == 403
        assert client.get("/jobs", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metrics/json").status_code == 401
        for open_route in ("/health", "/ready", "/metrics", "/magenta/health"):
            assert client.get(open_route).status_code == 200, open_route
        assert client.get("/magenta/health").json()["status"] == "initializing"  # no magenta worker here
        assert client.get("/magenta/progress", params={"request_id": "x"}).status_code == 401
        for guarded in ("/embed/text", "/magenta/generate", "/magenta/generate_style"):
            assert client.post(guarded, data={"text": "x"}).status_code == 401, guarded
        for read in ("/magenta/model/config", "/magenta/model/assets/status", "/magenta/model/checkpoints"):
            assert client.get(read).status_code == 401, read
        assert client.get("/magenta/model/config", headers={"X-API-Key": "s3cret"}).json()["loaded"] is False
        # Selecting the model changes it for every client: an admin key's (API_KEY's keys have no admin scope).
        select = {"size": "mrt2_small", "dry_run": True}
        assert client.post("/magenta/model/select", json=select).status_code == 401
        refused = client.post("/magenta/model/select", json=select, headers={"X-API-Key": "s3cret"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "api_key_scope"


def test_health_without_workers_and_openapi_documents_fields(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "degraded" and health["auth_enabled"] is False
    assert set(health["problems"]) == {"musicgen", "magenta", "demucs", "pipeline"}
    assert all("no live worker" in reason for reason in health["problems"].values())
    assert health["device"] == "none" and health["workers"] == []
    assert {q["name"] for q in health["queues"]} == {"musicgen", "magenta", "demucs", "pipeline"}
    # musicgen-api's fields, with its types: a bool per model pool, and MPS (never used here).
    assert health["models_loaded"] == {"musicgen": False, "magenta": False, "demucs": False}
    assert health["mps_available"] is False and health["loaded_models"] == []
    # Not ready either: every submission would be refused or fail.
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["down"] == ["workers"], ready.text
    assert "no model pool" in ready.json()["checks"]["workers"]["error"]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    ours = {name: schema for name, schema in schemas.items() if "ValidationError" not in name}
    assert {"GenerateRequest", "JobView", "JobCreated", "Health", "Ready", "ErrorBody"} <= set(ours)
    for schema_name, schema in ours.items():
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{schema_name}.{name} is undocumented"
    generate = ours["GenerateRequest"]["properties"]
    assert "Default 10" in generate["duration"]["description"]
    assert generate["temperature"]["maximum"] == 2 and generate["top_k"]["maximum"] == 2048
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200


def test_broker_down_is_503_and_recovers(database_url: str, tmp_path: Path) -> None:
    with RedisServer() as redis, make_client(database_url, redis, tmp_path) as client:
        assert client.post("/generate", json={"prompt": "x"}).status_code == 200
        redis.stop()
        response = client.post("/generate", json={"prompt": "x"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "broker_unavailable"
        assert response.headers["retry-after"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["down"] == ["broker", "workers"]
        assert ready.json()["checks"]["broker"]["error"].endswith("(see the API's log)")  # no raw exception text
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        # The refused job was not left behind as a queued row.
        assert client.get("/jobs").json()["total"] == 1
        redis.start()
        assert client.post("/generate", json={"prompt": "x"}).status_code == 200
        report(redis.client(), "musicgen", MUSICGEN_TINY)  # its worker beats again
        assert client.get("/ready").status_code == 200


def test_clear_messages_for_bodies_that_are_not_json_objects(client: TestClient) -> None:
    not_json = client.post("/generate", content=b"prompt=x", headers={"content-type": "application/json"})
    assert not_json.json()["error"]["message"] == "Invalid request: the body is not valid JSON."
    as_form = client.post("/generate", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert "JSON object" in as_form.json()["error"]["message"]
    both = client.post("/generate", json={"prompt": "a", "text": "b"})
    assert both.status_code == 422 and "either `prompt` or `text`" in both.json()["detail"]
    assert client.get("/jobs/" + "x" * 80).json()["error"]["code"] == "job_not_found"
    assert client.get("/generate").json()["error"]["code"] == "method_not_allowed"
