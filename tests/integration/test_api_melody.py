"""Melody inputs: `melody_audio_url` on `POST /generate` (fetched from a real local HTTP server)
and uploads to `POST /generate/melody`, in-process against real Redis and each real database; no
workers. The API loads no model, so a melody model only has to be served by name."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _assert_nothing_created, _error
from tests.support import heartbeats
from tests.support.audio_files import empty_wav, encode, synth
from tests.support.http_server import HttpServer
from tests.support.servers import RedisServer

MELODY = "random:tiny-melody"
SERVED = ["random:tiny", MELODY]
MIB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    # A live MusicGen worker has loaded both models and reported which one is a melody model.
    heartbeats.report(redis.client(), "musicgen", heartbeats.MUSICGEN_TINY, heartbeats.MUSICGEN_MELODY)
    with make_client(database_url, redis, tmp_path, musicgen={"models": SERVED}, allow_private_urls=True) as client:
        yield client


@pytest.fixture(scope="module")
def melody_flac() -> bytes:
    return encode("flac", synth(22050, 2, 2.0, frequency=330.0), 22050)


def _generate(client: TestClient, url: str, **fields: object) -> httpx.Response:
    return client.post("/generate", json={"prompt": "a brass band", "model": MELODY, "melody_audio_url": url, **fields})


def _upload(
    client: TestClient, audio: bytes | None, fields: dict[str, str] | None = None, filename: str = "tune.wav"
) -> httpx.Response:
    data = {"prompt": "a brass band", "model": MELODY} if fields is None else fields
    if audio is None:
        return client.post("/generate/melody", files={k: (None, v) for k, v in data.items()})
    return client.post("/generate/melody", data=data, files={"melody_file": (filename, audio, "audio/wav")})


def _fetch_temp_files() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("soundstage-fetch-*"))


# ------------------------------------------------------- POST /generate with a URL


def test_a_melody_url_is_fetched_and_stored_with_the_job(
    client: TestClient, server: HttpServer, redis: RedisServer, tmp_path: Path, melody_flac: bytes
) -> None:
    url = server.body("/tune.flac", melody_flac, content_type="audio/flac")
    response = _generate(client, f"{url}?signature=s3cr3t", duration=12)
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["model"] == MELODY and job["status"] == "queued"
    params = job["params"]
    assert params["melody_audio"] == f"{job_id}_melody.flac"
    assert params["audio_prompt"] is None and params["duration"] == 12.0
    assert "melody_audio_url" not in params and "s3cr3t" not in json.dumps(job), "a URL may carry credentials"
    assert (tmp_path / "files" / f"{job_id}_melody.flac").read_bytes() == melody_flac
    messages = queued_payloads(redis)
    assert len(messages) == 1 and messages[0]["payload"]["job_id"] == job_id
    assert server.hits["/tune.flac"] == 1
    assert client.get("/files/").json() == [], "inputs are not listed as outputs"


def test_a_melody_model_as_the_default_needs_no_model_field(
    database_url: str, redis: RedisServer, tmp_path: Path, server: HttpServer, melody_flac: bytes
) -> None:
    url = server.body("/tune.flac", melody_flac)
    with make_client(database_url, redis, tmp_path, musicgen={"models": [MELODY]}, allow_private_urls=True) as client:
        response = client.post("/generate", json={"prompt": "x", "melody_audio_url": url})
        assert response.status_code == 200, response.text
        assert client.get(f"/jobs/{response.json()['job_id']}").json()["model"] == MELODY


def test_melody_needs_a_melody_model(
    client: TestClient, server: HttpServer, database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    url = server.body("/tune.wav", b"never fetched")
    for body in (
        {"prompt": "x", "melody_audio_url": url},
        {"prompt": "x", "model": "random:tiny", "melody_audio_url": url},
    ):
        error = _error(client.post("/generate", json=body), 422, "model_not_melody")
        assert error["details"][0]["loc"] == ["body", "model"] and error["details"][0]["choices"] == [MELODY]
        assert MELODY in error["message"]
    error = _error(_upload(client, b"RIFF", {"prompt": "x", "model": "random:tiny"}), 422, "model_not_melody")
    _assert_nothing_created(client)
    assert server.hits["/tune.wav"] == 0, "the model is checked before anything is fetched"
    small = heartbeats.MUSICGEN_TINY.model_copy(update={"model": "facebook/musicgen-small", "random_weights": False})
    heartbeats.report(redis.client(), "musicgen", small, hostname="other-worker:2")
    with make_client(database_url, redis, tmp_path / "plain", allow_private_urls=True) as plain:
        error = _error(plain.post("/generate", json={"prompt": "x", "melody_audio_url": url}), 422, "model_not_melody")
        assert "melody models: none" in error["message"]


URL_REFUSALS = {
    "not_found": (422, "url_fetch_failed"),
    "ftp": (422, "url_not_allowed"),
    "credentials": (422, "url_not_allowed"),
    "private": (422, "url_not_allowed"),
    "corrupt": (422, "audio_undecodable"),
    "empty": (422, "audio_empty"),
    "too_large": (413, "url_too_large"),
    "stalls": (422, "url_timeout"),
}


@pytest.mark.parametrize("case", URL_REFUSALS)
def test_melody_url_refusals_create_nothing(
    database_url: str, redis: RedisServer, tmp_path: Path, server: HttpServer, case: str
) -> None:
    status, code = URL_REFUSALS[case]
    urls = {
        "not_found": server.status("/missing.wav", 404),
        "ftp": f"ftp://127.0.0.1:{server.port}/tune.wav",
        "credentials": f"http://user:pw@127.0.0.1:{server.port}/tune.wav",
        "private": server.body("/private.wav", encode("wav", synth(16000, 1, 1.0), 16000)),
        "corrupt": server.body("/corrupt.wav", b"not audio at all " * 100),
        "empty": server.body("/empty.wav", empty_wav()),
        "too_large": server.stream("/huge.wav", 4 * MIB),
        "stalls": server.silent("/slow.wav"),
    }
    settings: dict[str, object] = {
        "musicgen": {"models": SERVED},
        "allow_private_urls": case != "private",
        "max_upload_mb": 1,
        "fetch_timeout_seconds": 1,
    }
    temp_files_before = set(_fetch_temp_files())
    with make_client(database_url, redis, tmp_path, **settings) as client:
        error = _error(_generate(client, urls[case]), status, code)
        _assert_nothing_created(client)
    if case == "not_found":
        assert error["details"]["status"] == 404
    if case == "private":
        assert error["details"]["address"] == "127.0.0.1" and "loopback" in error["details"]["reason"]
        assert server.hits["/private.wav"] == 0
    if case == "stalls":
        assert error["details"]["timeout_seconds"] == 1
    assert set(_fetch_temp_files()) <= temp_files_before, "the fetched file is removed"


def test_clients_cannot_name_the_stored_melody(client: TestClient) -> None:
    error = _error(
        client.post("/generate", json={"prompt": "x", "model": MELODY, "melody_audio": "a.wav"}),
        422,
        "validation_error",
    )
    assert [detail["loc"] for detail in error["details"]] == [["body", "melody_audio"]]
    _assert_nothing_created(client)


def test_continue_does_not_take_a_melody_url(client: TestClient, server: HttpServer) -> None:
    url = server.body("/tune.wav", b"never fetched")
    prompt = encode("wav", synth(16000, 1, 1.0), 16000)
    response = client.post(
        "/generate/continue",
        data={"prompt": "x", "melody_audio_url": url},
        files={"audio_file": ("p.wav", prompt, "audio/wav")},
    )
    error = _error(response, 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "melody_audio_url"]
    _assert_nothing_created(client)


# ------------------------------------------------------- POST /generate/melody


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a"])
def test_an_uploaded_melody_is_stored_with_the_job(
    client: TestClient, redis: RedisServer, tmp_path: Path, fmt: str
) -> None:
    upload = encode(fmt, synth(44100, 2, 1.5), 44100)
    response = _upload(client, upload, {"prompt": "strings", "model": MELODY, "duration": "8"}, filename=f"t.{fmt}")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["model"] == MELODY and job["params"]["duration"] == 8.0
    assert job["params"]["melody_audio"] == f"{job_id}_melody.{fmt}" and job["params"]["audio_prompt"] is None
    assert (tmp_path / "files" / f"{job_id}_melody.{fmt}").read_bytes() == upload
    assert len(queued_payloads(redis)) == 1


def test_an_uploaded_melody_with_a_params_part(client: TestClient) -> None:
    params = {"prompt": "choir", "model": MELODY, "seed": 9, "num_outputs": 2, "format": "flac"}
    response = client.post(
        "/generate/melody",
        files={
            "melody_file": ("m.wav", encode("wav", synth(16000, 1, 1.0), 16000), "audio/wav"),
            "params": (None, json.dumps(params), "application/json"),
        },
    )
    assert response.status_code == 200, response.text
    stored = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert {k: stored[k] for k in params if k != "model"} == {k: v for k, v in params.items() if k != "model"}


UPLOAD_REFUSALS: dict[str, tuple[str | None, dict[str, str], int, str, list[str] | None]] = {
    "file_and_url": (
        "ok",
        {"prompt": "x", "model": MELODY, "melody_audio_url": "http://example.com/a.wav"},
        422,
        "validation_error",
        ["body", "melody_audio_url"],
    ),
    "no_file": (None, {"prompt": "x", "model": MELODY}, 422, "validation_error", ["body", "melody_file"]),
    "continue_field": (
        "ok",
        {"prompt": "x", "model": MELODY, "include_prompt": "false"},
        422,
        "validation_error",
        ["body", "include_prompt"],
    ),
    "not_melody": ("ok", {"prompt": "x", "model": "random:tiny"}, 422, "model_not_melody", ["body", "model"]),
    "corrupt": ("corrupt", {"prompt": "x", "model": MELODY}, 422, "audio_undecodable", None),
    "empty": ("empty", {"prompt": "x", "model": MELODY}, 422, "audio_empty", None),
    "too_large": ("too_large", {"prompt": "x", "model": MELODY}, 413, "upload_too_large", None),
}


@pytest.mark.parametrize("case", UPLOAD_REFUSALS)
def test_melody_upload_refusals_create_nothing(
    database_url: str, redis: RedisServer, tmp_path: Path, case: str
) -> None:
    audio, fields, status, code, loc = UPLOAD_REFUSALS[case]
    uploads = {
        "ok": encode("wav", synth(16000, 1, 1.0), 16000),
        "corrupt": b"definitely not audio " * 500,
        "empty": b"",
        "too_large": b"\0" * (2 * MIB),
    }
    heartbeats.report(redis.client(), "musicgen", heartbeats.MUSICGEN_TINY, heartbeats.MUSICGEN_MELODY)
    with make_client(database_url, redis, tmp_path, musicgen={"models": SERVED}, max_upload_mb=1) as client:
        error = _error(_upload(client, None if audio is None else uploads[audio], fields), status, code)
        if loc is not None:
            assert any(detail["loc"] == loc for detail in error["details"]), error
        _assert_nothing_created(client)


def test_openapi_documents_the_melody_inputs(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operation = paths["/generate/melody"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["melody_file"]
    assert {"melody_file", "params", "prompt", "model", "num_outputs"} <= set(schema["properties"])
    assert "melody_audio_url" not in schema["properties"] and "include_prompt" not in schema["properties"]
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert {"413", "422"} <= set(operation["responses"])
    assert "model_not_melody" in operation["responses"]["422"]["description"]
    generate = paths["/generate"]["post"]["responses"]
    assert "url_not_allowed" in generate["422"]["description"] and "url_too_large" in generate["413"]["description"]
    continue_schema = paths["/generate/continue"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "melody_audio_url" not in continue_schema["properties"]
