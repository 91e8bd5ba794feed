"""The hosted MusicGen API under `/segmind`, in-process against real Redis and each real database. No worker
process runs: where a job must end, the test ends it with the real job runner, as a worker would (see
`test_api_wait.finish_job`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from soundstage.schemas.generate import SEED_MAX
from soundstage.settings import Settings
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.integration.test_api_wait import answer_once_finished
from tests.support.audio import decode
from tests.support.servers import RedisServer

KEY = "hosted-key"
URL = "/segmind/v1/meta-musicgen-medium"


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(
        database_url,
        redis,
        tmp_path,
        api_keys=[KEY, "other"],
        sync_wait_seconds=30,
        musicgen={"models": ["random:tiny"]},
        hosted_api_models={"medium": "random:tiny"},
    ) as client:
        yield client


def _post(client: TestClient, url: str = URL, key: str | None = KEY, **body: Any) -> httpx.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return client.post(url, json={"prompt": "lo-fi music with a soothing melody", **body}, headers=headers)


def _job(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY}).json()
    return job


def test_the_answer_is_the_wav(client: TestClient) -> None:
    response = answer_once_finished(client, lambda: _post(client, duration=4))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    audio = decode(response.content)
    assert (audio.sample_rate, audio.channels, round(audio.duration, 3)) == (32000, 1, 4.0)
    (job,) = client.get("/jobs", headers={"X-API-Key": KEY}).json()["jobs"]
    assert (job["status"], job["model"], job["params"]["seed"], job["params"]["duration"]) == (
        "completed",
        "random:tiny",
        42,
        4.0,
    )
    assert job["params"]["prompt"] == "lo-fi music with a soothing melody"


def test_seeds(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"sync_wait_seconds": 0, "hosted_api_models": {"small": "random:tiny"}}
    with make_client(database_url, redis, tmp_path, musicgen={"models": ["random:tiny"]}, **settings) as client:
        url = "/segmind/v1/meta-musicgen-small"
        fixed = _post(client, url, key=None, seed=9999)
        assert fixed.status_code == 202, fixed.text
        assert fixed.headers["location"] == f"/jobs/{fixed.json()['job_id']}"
        assert _job(client, fixed.json()["job_id"])["params"]["seed"] == 9999
        drawn = _post(client, url, key=None, seed=-1)
        assert 0 <= _job(client, drawn.json()["job_id"])["params"]["seed"] <= SEED_MAX
        assert len(queued_payloads(redis)) == 2, "auth off: no key needed"


def test_a_missing_or_wrong_key_is_401(client: TestClient) -> None:
    missing = _error(_post(client, key=None), 401, "api_key_missing")
    assert "X-API-Key" in missing["message"]
    wrong = _post(client, key="nope")
    _error(wrong, 401, "api_key_invalid")
    assert wrong.headers["www-authenticate"] == "APIKey"
    _error(_post(client, "/segmind/v1/meta-musicgen-huge", key=None), 401, "api_key_missing")
    assert client.get("/jobs", headers={"X-API-Key": KEY}).json()["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/segmind/v1/meta-musicgen-small",  # no served model of that size
        "/segmind/v1/meta-musicgen-large",
        "/segmind/v1/meta-musicgen-huge",
        "/segmind/v1/sdxl1.0-txt2img",
        "/segmind/v2/meta-musicgen-medium",
    ],
)
def test_sizes_and_paths_not_served_are_404(client: TestClient, path: str) -> None:
    _error(_post(client, path, duration=99), 404, "not_found")
    assert client.get("/jobs", headers={"X-API-Key": KEY}).json()["total"] == 0


def test_other_methods_are_405(client: TestClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        _error(client.request(method, URL, headers={"x-api-key": KEY}), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"duration": 0}, "duration"),
        ({"duration": 30.5}, "duration"),
        ({"seed": -2}, "seed"),
        ({"seed": 10000}, "seed"),
        ({"negative_prompt": "x"}, "negative_prompt"),
    ],
)
def test_invalid_fields_are_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    error = _error(_post(client, **body), 422, "validation_error")
    assert any(detail["loc"][-1] == field for detail in error["details"]), error
    assert client.get("/jobs", headers={"X-API-Key": KEY}).json()["total"] == 0


def test_a_failed_job_is_500_with_its_code(client: TestClient) -> None:
    response = answer_once_finished(client, lambda: _post(client), fail=True)
    error = _error(response, 500, "generation_failed")
    assert _job(client, error["details"]["job_id"])["status"] == "failed"


def test_sizes_default_to_the_served_model_of_that_name(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    served = ["facebook/musicgen-small", "facebook/musicgen-medium"]
    with make_client(database_url, redis, tmp_path, sync_wait_seconds=0, musicgen={"models": served}) as client:
        for size, model in (("small", served[0]), ("medium", served[1])):
            response = _post(client, f"/segmind/v1/meta-musicgen-{size}", key=None)
            assert response.status_code == 202, response.text
            assert _job(client, response.json()["job_id"])["model"] == model
        _error(_post(client, "/segmind/v1/meta-musicgen-large", key=None), 404, "not_found")


def test_a_mapping_to_a_model_not_served_is_404(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"hosted_api_models": {"medium": "facebook/musicgen-medium"}}
    with make_client(database_url, redis, tmp_path, musicgen={"models": ["random:tiny"]}, **settings) as client:
        _error(_post(client, key=None), 404, "not_found")


def test_openapi_documents_the_route(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/segmind/v1/{model_slug}"]["post"]
    assert {"200", "202", "401", "404", "405", "500"} <= set(operation["responses"])
    assert "audio/wav" in operation["responses"]["200"]["content"]


def test_hosted_api_models_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_API_MODELS", " medium=facebook/musicgen-medium, Small=random:tiny ,")
    assert Settings().hosted_api_models == {"medium": "facebook/musicgen-medium", "small": "random:tiny"}
    for bad in ("huge=x", "medium", "medium="):
        monkeypatch.setenv("HOSTED_API_MODELS", bad)
        with pytest.raises(ValidationError, match="hosted_api_models"):
            Settings()
