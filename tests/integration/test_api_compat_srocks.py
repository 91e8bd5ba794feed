"""The S.Rocks API under `/srocks`, in-process against real Redis and each real database. No worker process
runs: where a job must end, the test ends it with the real job runner, as a worker would (see
`test_api_wait.finish_job`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.integration.test_api_wait import answer_once_finished, app_state, finish_job
from tests.support.audio import decode
from tests.support.servers import RedisServer


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(database_url, redis, tmp_path, sync_wait_seconds=30) as client:
        yield client


def _generate(client: TestClient, path: str = "/srocks/generate/", **body: Any) -> httpx.Response:
    return client.post(path, json={"text": "A lofi hip hop beat with smooth jazz piano", **body})


def test_health(client: TestClient) -> None:
    health = client.get("/srocks/").json()
    assert {k: health[k] for k in ("status", "model", "device")} == {
        "status": "degraded",  # no MusicGen worker runs in these tests
        "model": "musicgen-small",
        "device": "none",
    }
    assert health["version"] == client.get("/health").json()["version"]
    assert client.get("/srocks").json() == health


def test_generate_waits_for_the_file(client: TestClient) -> None:
    response = answer_once_finished(client, lambda: _generate(client, duration=3))
    assert response.status_code == 200, response.text
    body = response.json()
    job_id = body["job_id"]
    assert body["file_url"] == f"/files/{job_id}_generated.wav"
    assert body["duration"] == 3 and body["prompt"] == "A lofi hip hop beat with smooth jazz piano"
    assert re.fullmatch(r"\d{8}_\d{6}", body["timestamp"]), body["timestamp"]
    job = client.get(f"/jobs/{job_id}").json()
    assert body["timestamp"] == job["finished_at"][:19].replace("-", "").replace(":", "").replace("T", "_")
    assert (job["kind"], job["model"], job["params"]["format"]) == ("generate", "facebook/musicgen-small", "wav")
    assert (job["params"]["guidance_scale"], job["params"]["temperature"]) == (3.0, 1.0)
    # The S.Rocks client downloads `base + file_url`.
    download = client.get("/srocks" + body["file_url"])
    assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
    audio = decode(download.content)
    assert (audio.sample_rate, round(audio.duration, 3)) == (32000, 3.0)


def test_generate_with_every_field_and_without_the_slash(client: TestClient, redis: RedisServer) -> None:
    fields = {"duration": 15, "guidance_scale": 5.5, "temperature": 0.7}
    response = answer_once_finished(client, lambda: _generate(client, "/srocks/generate", **fields))
    assert response.status_code == 200, response.text
    params = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert {k: params[k] for k in fields} == fields
    assert queued_payloads(redis)[0]["headers"]["task"] == "musicgen.generate"


def test_past_the_wait_limit_is_202(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, sync_wait_seconds=0.3) as client:
        started = time.monotonic()
        response = _generate(client)
        assert response.status_code == 202 and time.monotonic() - started < 5
        job_id = response.json()["job_id"]
        assert response.json() == {"job_id": job_id, "status": "queued"}
        assert response.headers["location"] == f"/jobs/{job_id}"
        assert len(queued_payloads(redis)) == 1


def test_a_failed_job_is_500_with_its_code(client: TestClient) -> None:
    response = answer_once_finished(client, lambda: _generate(client), fail=True)
    error = _error(response, 500, "generation_failed")
    assert error["message"] == "The model raised an error on this input."
    assert client.get(f"/jobs/{error['details']['job_id']}").json()["status"] == "failed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": 10}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x", "duration": 0.5}, "duration"),
        ({"text": "x", "duration": 31}, "duration"),
        ({"text": "x", "guidance_scale": 10.5}, "guidance_scale"),
        ({"text": "x", "temperature": 2.5}, "temperature"),
        ({"text": "x", "duration": "long"}, "duration"),
        ({"text": "x", "prompt": "y"}, "prompt"),
    ],
)
def test_invalid_parameters_are_400(client: TestClient, body: dict[str, Any], field: str) -> None:
    error = _error(client.post("/srocks/generate/", json=body), 400, "validation_error")
    assert any(detail["loc"][-1] == field for detail in error["details"]), error
    assert client.get("/jobs").json()["total"] == 0


def test_bodies_that_are_not_objects_and_server_limits_are_400(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    with make_client(database_url, redis, tmp_path, max_duration=5) as client:
        for content in (b"{not json", b"[1]"):
            response = client.post("/srocks/generate/", content=content, headers={"content-type": "application/json"})
            _error(response, 400, "validation_error")
        error = _error(_generate(client, duration=10), 400, "validation_error")
        assert error["details"][0]["loc"] == ["body", "duration"]
        assert client.get("/jobs").json()["total"] == 0


def test_files_are_listed_as_srocks_lists_them(client: TestClient) -> None:
    ids = [client.post("/generate", json={"prompt": f"p{i}", "duration": 1}).json()["job_id"] for i in range(3)]
    for job_id in ids:
        finish_job(app_state(client), job_id)
    listing = client.get("/srocks/files/", params={"limit": 2}).json()
    assert [entry["filename"] for entry in listing] == [f"{job_id}_generated.wav" for job_id in ids[::-1][:2]]
    newest = client.get("/files/").json()[0]
    assert listing[0] == {
        "filename": newest["filename"],
        "url": f"/files/{newest['filename']}",
        "created_at": newest["created_at"][:19].replace("T", " "),
        "size_kb": newest["size_kb"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listing[0]["created_at"])
    assert [e["filename"] for e in client.get("/srocks/files", params={"skip": 2}).json()] == [
        f"{ids[0]}_generated.wav"
    ]
    for bad in ({"limit": 0}, {"limit": 101}, {"skip": -1}, {"skip": 3609499379709934078787584}):
        _error(client.get("/srocks/files/", params=bad), 400, "validation_error")


def test_downloads_are_those_of_files(client: TestClient) -> None:
    job_id = client.post("/generate", json={"prompt": "x", "duration": 1}).json()["job_id"]
    finish_job(app_state(client), job_id)
    name = f"{job_id}_generated.wav"
    ours, theirs = client.get(f"/files/{name}"), client.get(f"/srocks/files/{name}")
    assert theirs.status_code == 200 and theirs.content == ours.content
    assert {k: theirs.headers[k] for k in ("content-type", "etag", "content-length", "accept-ranges")} == {
        k: ours.headers[k] for k in ("content-type", "etag", "content-length", "accept-ranges")
    }
    part = client.get(f"/srocks/files/{name}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == ours.content[:10]
    assert client.head(f"/srocks/files/{name}").headers["content-length"] == str(len(ours.content))
    assert client.get(f"/srocks/files/{name}", headers={"If-None-Match": ours.headers["etag"]}).status_code == 304
    _error(client.get(f"/srocks/files/{name}", headers={"Range": "bytes=999999-"}), 416, "range_not_satisfiable")
    _error(client.get("/srocks/files/nope.wav"), 404, "file_not_found")


def test_the_key_is_required_as_elsewhere(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, api_key="k", sync_wait_seconds=0) as client:
        _error(_generate(client), 401, "api_key_missing")
        _error(client.get("/srocks/files/"), 401, "api_key_missing")
        _error(client.get("/srocks/files/x.wav", headers={"X-API-Key": "no"}), 403, "api_key_invalid")
        assert client.get("/srocks/").status_code == 200, "health stays public, as /health"
        assert client.post("/srocks/generate/", json={"text": "x"}, headers={"X-API-Key": "k"}).status_code == 202
        assert client.get("/srocks/files/", headers={"X-API-Key": "k"}).json() == []


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/srocks/", "/srocks/generate/", "/srocks/files/", "/srocks/files/{name}"} <= set(paths)
    assert "/srocks/generate" not in paths and "/srocks/files" not in paths
    responses = paths["/srocks/generate/"]["post"]["responses"]
    assert {"200", "202", "400", "500"} <= set(responses)
