"""The new generation parameters, model choice among served models, and `POST /generate/continue`
with real uploads, in-process against real Redis and each real database; no workers."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from soundstage.pools import Queue
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.support.audio_files import empty_wav, encode, synth
from tests.support.servers import RedisServer

PROMPT_FORMATS = ["wav", "flac", "ogg", "mp3", "m4a"]


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(database_url, redis, tmp_path) as client:
        yield client


@pytest.fixture(scope="module")
def prompt_wav() -> bytes:
    return encode("wav", synth(32000, 1, 2.0), 32000)


def _continue(
    client: TestClient, audio: bytes | None, fields: dict[str, str] | None = None, filename: str = "prompt.wav"
) -> httpx.Response:
    files = {"audio_file": (filename, audio, "application/octet-stream")} if audio is not None else None
    data = {"prompt": "make it jazzier"} if fields is None else fields
    if files is None:
        # httpx sends a form without files url-encoded; a multipart body without the file
        # part needs at least one part sent as a file, so send the fields that way.
        return client.post("/generate/continue", files={k: (None, v) for k, v in data.items()})
    return client.post("/generate/continue", data=data, files=files)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert response.json()["detail"] == error["message"]
    return error


def _assert_nothing_created(client: TestClient) -> None:
    """No job row, nothing in the MusicGen queue, nothing stored."""
    state = client.app.state.soundstage  # type: ignore[attr-defined]
    assert client.get("/jobs").json()["total"] == 0
    assert state.redis.llen(Queue.MUSICGEN.value) == 0
    stored = Path(state.settings.resolved_storage_url)
    assert [p.name for p in stored.iterdir() if not p.name.startswith(".")] == []


# ---------------------------------------------------------- POST /generate


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_outputs", 0),
        ("num_outputs", 5),
        ("sample_rate", 7999),
        ("sample_rate", 48001),
        ("sample_rate", "x"),
        ("loudness_target", -41),
        ("loudness_target", -4),
        ("normalize", "maybe"),
        ("audio_prompt", "someone_else.wav"),
        ("include_prompt", False),
    ],
)
def test_new_generate_parameters_are_validated(
    client: TestClient, redis: RedisServer, field: str, value: object
) -> None:
    error = _error(client.post("/generate", json={"prompt": "x", field: value}), 422, "validation_error")
    assert any(detail["loc"] == ["body", field] for detail in error["details"]), error
    assert queued_payloads(redis) == []


def test_new_generate_parameters_are_stored_on_the_job(client: TestClient) -> None:
    body = {"prompt": "x", "num_outputs": 4, "sample_rate": 44100, "normalize": True, "loudness_target": -16}
    response = client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    params = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert {k: params[k] for k in body} == {**body, "loudness_target": -16.0}
    assert params["audio_prompt"] is None and params["include_prompt"] is True
    defaults = client.get(f"/jobs/{client.post('/generate', json={'prompt': 'y'}).json()['job_id']}").json()
    assert (defaults["params"]["num_outputs"], defaults["params"]["sample_rate"]) == (1, None)
    assert (defaults["params"]["normalize"], defaults["params"]["loudness_target"]) == (False, -14.0)


def test_the_request_picks_among_the_served_models(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    served = ["facebook/musicgen-small", "random:tiny"]
    with make_client(database_url, redis, tmp_path, musicgen={"models": served}) as client:
        for requested, expected in [(None, served[0]), ("random:tiny", "random:tiny"), ("musicgen-small", served[0])]:
            body = {"prompt": "x"} if requested is None else {"prompt": "x", "model": requested}
            response = client.post("/generate", json=body)
            assert response.status_code == 200, response.text
            assert client.get(f"/jobs/{response.json()['job_id']}").json()["model"] == expected
        error = _error(
            client.post("/generate", json={"prompt": "x", "model": "facebook/musicgen-large"}), 422, "unknown_model"
        )
        assert error["details"][0]["choices"] == served
        assert "facebook/musicgen-small, random:tiny" in error["message"]
        assert len(queued_payloads(redis)) == 3
        health = client.get("/health").json()
        assert next(q for q in health["queues"] if q["name"] == "musicgen")["models"] == served


# ------------------------------------------------- POST /generate/continue


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_continue_accepts_each_format_and_stores_the_upload(
    client: TestClient, redis: RedisServer, tmp_path: Path, fmt: str
) -> None:
    upload = encode(fmt, synth(44100, 2, 1.5), 44100)
    response = _continue(client, upload, {"prompt": "jazzier", "duration": "20"}, filename=f"take.{fmt}")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["kind"] == "generate"
    assert job["params"]["audio_prompt"] == f"{job_id}_prompt.{fmt}"
    assert job["params"]["include_prompt"] is True and job["params"]["duration"] == 20.0
    assert (tmp_path / "files" / f"{job_id}_prompt.{fmt}").read_bytes() == upload
    messages = queued_payloads(redis)
    assert len(messages) == 1 and messages[0]["payload"]["job_id"] == job_id
    assert messages[0]["headers"]["task"] == "musicgen.generate"
    # Inputs are not outputs: the listing of stored outputs does not show them.
    assert client.get("/files/").json() == []


def test_continue_with_form_fields(client: TestClient, prompt_wav: bytes) -> None:
    fields = {
        "text": "lofi with rain",
        "duration": "12.5",
        "mood": "calm",
        "model": "musicgen-small",
        "temperature": "0.8",
        "top_k": "100",
        "top_p": "0.9",
        "guidance_scale": "4",
        "seed": "42",
        "format": "flac",
        "num_outputs": "2",
        "sample_rate": "48000",
        "normalize": "true",
        "loudness_target": "-16",
        "include_prompt": "false",
    }
    response = _continue(client, prompt_wav, fields)
    assert response.status_code == 200, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    params = job["params"]
    assert job["model"] == "facebook/musicgen-small"
    assert params["prompt"] == "lofi with rain" and params["full_prompt"] == "lofi with rain, calm"
    assert (params["duration"], params["temperature"], params["top_k"], params["top_p"]) == (12.5, 0.8, 100, 0.9)
    assert (params["guidance_scale"], params["seed"], params["format"], params["num_outputs"]) == (4.0, 42, "flac", 2)
    assert (params["sample_rate"], params["normalize"], params["loudness_target"]) == (48000, True, -16.0)
    assert params["include_prompt"] is False


def test_continue_treats_empty_form_fields_as_not_sent(client: TestClient, prompt_wav: bytes) -> None:
    response = _continue(client, prompt_wav, {"prompt": "x", "mood": "", "sample_rate": "", "seed": ""})
    assert response.status_code == 200, response.text
    params = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert params["mood"] is None and params["sample_rate"] is None and params["seed"] >= 0


def test_continue_with_a_params_json_part(client: TestClient, prompt_wav: bytes) -> None:
    params = {"prompt": "ambient", "duration": 8, "include_prompt": False, "seed": 7, "num_outputs": 3}
    response = client.post(
        "/generate/continue",
        files={
            "audio_file": ("p.wav", prompt_wav, "audio/wav"),
            "params": (None, json.dumps(params), "application/json"),
        },
    )
    assert response.status_code == 200, response.text
    stored = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert {k: stored[k] for k in params} == {**params, "duration": 8.0}


def test_continue_refuses_form_fields_and_params_together(client: TestClient, prompt_wav: bytes) -> None:
    response = _continue(client, prompt_wav, {"params": json.dumps({"prompt": "a"}), "duration": "5"})
    error = _error(response, 422, "validation_error")
    assert "not both" in error["message"] and "duration" in error["message"]
    _assert_nothing_created(client)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ("{not json", ["body", "params"]),
        ("[1, 2]", ["body", "params"]),
        (json.dumps({"prompt": "x", "num_outputs": 9}), ["body", "params", "num_outputs"]),
        (json.dumps({"prompt": "x", "audio_prompt": "other.wav"}), ["body", "params", "audio_prompt"]),
        (json.dumps({"duration": 5}), ["body", "params", "prompt"]),
    ],
)
def test_continue_validates_the_params_part(client: TestClient, prompt_wav: bytes, params: str, loc: list[str]) -> None:
    error = _error(_continue(client, prompt_wav, {"params": params}), 422, "validation_error")
    assert any(detail["loc"] == loc for detail in error["details"]), error
    _assert_nothing_created(client)


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"duration": "5"}, "prompt", "validation_error"),
        ({"prompt": "x", "duration": "0"}, "duration", "validation_error"),
        ({"prompt": "x", "duration": "301"}, "duration", "validation_error"),
        ({"prompt": "x", "include_prompt": "perhaps"}, "include_prompt", "validation_error"),
        ({"prompt": "x", "sample_rate": "x"}, "sample_rate", "validation_error"),
        ({"prompt": "x", "durration": "5"}, "durration", "validation_error"),
        ({"prompt": "x", "audio_prompt": "a.wav"}, "audio_prompt", "validation_error"),
        ({"prompt": "x", "model": "facebook/musicgen-large"}, "model", "unknown_model"),
    ],
)
def test_continue_validates_form_fields(
    client: TestClient, prompt_wav: bytes, fields: dict[str, str], field: str, code: str
) -> None:
    error = _error(_continue(client, prompt_wav, fields), 422, code)
    assert any(detail["loc"] == ["body", field] for detail in error["details"]), error
    _assert_nothing_created(client)


def test_continue_without_audio_file_is_422(client: TestClient) -> None:
    error = _error(_continue(client, None, {"prompt": "x"}), 422, "validation_error")
    assert [detail["loc"] for detail in error["details"]] == [["body", "audio_file"]]
    _assert_nothing_created(client)


def test_continue_needs_a_multipart_body(client: TestClient) -> None:
    error = _error(client.post("/generate/continue", json={"prompt": "x"}), 422, "validation_error")
    assert "multipart/form-data" in error["message"]
    truncated = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b\r\nContent-Disp'
    response = client.post(
        "/generate/continue", content=truncated, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    _error(response, 422, "validation_error")
    _assert_nothing_created(client)


def test_corrupt_audio_is_422_and_creates_nothing(client: TestClient) -> None:
    error = _error(_continue(client, b"definitely not audio " * 500), 422, "audio_undecodable")
    assert "supported format" in error["message"]
    _assert_nothing_created(client)


def test_empty_audio_is_422(client: TestClient) -> None:
    _error(_continue(client, empty_wav()), 422, "audio_empty")
    _error(_continue(client, b""), 422, "audio_empty")
    _assert_nothing_created(client)


def test_prompt_audio_longer_than_max_duration_is_422(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, max_duration=5) as client:
        long_prompt = encode("flac", synth(16000, 1, 6.0), 16000)
        error = _error(_continue(client, long_prompt, {"prompt": "x", "duration": "5"}), 422, "audio_too_long")
        assert error["details"] == {"max_seconds": 5}
        _assert_nothing_created(client)
        short_prompt = encode("flac", synth(16000, 1, 4.0), 16000)
        assert _continue(client, short_prompt, {"prompt": "x", "duration": "5"}).status_code == 200


def test_an_upload_over_max_upload_mb_is_413(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, max_upload_mb=1) as client:
        too_big = b"\0" * (2 * 1024 * 1024)
        error = _error(_continue(client, too_big), 413, "upload_too_large")
        assert error["details"] == {"max_bytes": 1024 * 1024}
        _assert_nothing_created(client)
        # Just under the cap passes the size check (and then fails decoding, as zeros are not audio).
        _error(_continue(client, b"\0" * (1024 * 1024 - 1)), 422, "audio_undecodable")


def test_the_cap_holds_without_content_length(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    """A chunked upload (no Content-Length) is cut off as it streams in: the app stops reading
    at the cap. httpx's ASGI transport hands the body over chunk by chunk, as a server does."""
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'--b\r\nContent-Disposition: form-data; name="audio_file"; filename="x.wav"\r\n\r\n'
        for _ in range(64):  # would be 64 MiB
            chunks_sent += 1
            yield b"\0" * (256 * 1024)
        yield b"\r\n--b--\r\n"

    async def post(client: TestClient) -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://soundstage") as http:
            headers = {"content-type": "multipart/form-data; boundary=b"}
            return await http.post("/generate/continue", content=body(), headers=headers)

    with make_client(database_url, redis, tmp_path, max_upload_mb=1) as client:
        response = anyio.run(post, client)
        assert "content-length" not in response.request.headers
        _error(response, 413, "upload_too_large")
        _assert_nothing_created(client)
    assert chunks_sent == 5  # 1 MiB of file accepted, the 5th quarter refused, the rest never read


def test_a_content_length_over_the_cap_is_refused_before_reading(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    with make_client(database_url, redis, tmp_path, max_upload_mb=1) as client:
        response = client.post(
            "/generate/continue",
            content=b"--b--\r\n",
            headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(10 * 1024 * 1024)},
        )
        _error(response, 413, "upload_too_large")


def test_storage_down_is_503_and_leaves_no_job(
    client: TestClient, redis: RedisServer, tmp_path: Path, prompt_wav: bytes
) -> None:
    shutil.rmtree(tmp_path / "files")
    (tmp_path / "files").write_bytes(b"a file where the storage folder should be")
    response = _continue(client, prompt_wav)
    _error(response, 503, "storage_unavailable")
    assert response.headers["retry-after"]
    assert client.get("/jobs").json()["total"] == 0
    assert queued_payloads(redis) == []


def test_broker_down_removes_the_job_and_its_stored_prompt(
    database_url: str, tmp_path: Path, prompt_wav: bytes
) -> None:
    with RedisServer() as redis, make_client(database_url, redis, tmp_path) as client:
        redis.stop()
        _error(_continue(client, prompt_wav), 503, "broker_unavailable")
        assert client.get("/jobs").json()["total"] == 0
        assert [p.name for p in (tmp_path / "files").iterdir() if not p.name.startswith(".")] == []
        redis.start()
        assert _continue(client, prompt_wav).status_code == 200


def test_continue_needs_the_api_key(database_url: str, redis: RedisServer, tmp_path: Path, prompt_wav: bytes) -> None:
    with make_client(database_url, redis, tmp_path, api_key="s3cret") as client:
        _error(_continue(client, prompt_wav), 401, "api_key_missing")
        response = client.post(
            "/generate/continue",
            data={"prompt": "x"},
            files={"audio_file": ("p.wav", prompt_wav, "audio/wav")},
            headers={"X-API-Key": "s3cret"},
        )
        assert response.status_code == 200, response.text


def test_openapi_documents_the_multipart_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/generate/continue"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["audio_file"]
    assert {"audio_file", "params", "prompt", "duration", "include_prompt", "num_outputs"} <= set(schema["properties"])
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert "NEW audio" in schema["properties"]["duration"]["description"]
    assert {"413", "422"} <= set(operation["responses"])
