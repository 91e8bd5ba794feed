"""`POST /separate`: uploads (multipart) and `audio_url` (JSON, fetched from a real local HTTP
server), in-process against real Redis and each real database; no workers, so jobs stay queued.
The API loads no model: Demucs models only have to be served by name."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from soundstage import fetch
from soundstage.pools import Queue
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.integration.test_fetch import public_stand_in
from tests.support import heartbeats
from tests.support.audio_files import empty_wav, encode, synth
from tests.support.http_server import HttpServer
from tests.support.servers import RedisServer

SIX = "random:tiny-6s"
SERVED = ["random:tiny", SIX, "htdemucs"]
INPUT_FORMATS = ["wav", "flac", "ogg", "mp3", "m4a"]
MIB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    # A live Demucs worker has loaded the served models and reported what they can do.
    heartbeats.report(redis.client(), "demucs", heartbeats.DEMUCS_TINY, heartbeats.DEMUCS_SIX, heartbeats.HTDEMUCS)
    with make_client(database_url, redis, tmp_path, demucs={"models": SERVED}, allow_private_urls=True) as client:
        yield client


@pytest.fixture(scope="module")
def song_wav() -> bytes:
    return encode("wav", synth(44100, 2, 1.5), 44100)


def _upload(
    client: TestClient,
    audio: bytes | None,
    fields: dict[str, str] | None = None,
    filename: str = "song.wav",
    path: str = "/separate",
) -> httpx.Response:
    data = fields or {}
    if audio is None:
        # A multipart body without the file part: send the fields as parts without a file name.
        return client.post(path, files={k: (None, v) for k, v in data.items()})
    return client.post(path, data=data, files={"file": (filename, audio, "application/octet-stream")})


def _demucs_messages(redis: RedisServer) -> list[dict[str, Any]]:
    return queued_payloads(redis, Queue.DEMUCS)


def _assert_nothing_created(client: TestClient) -> None:
    """No job row, nothing on any queue, nothing stored."""
    state = client.app.state.soundstage  # type: ignore[attr-defined]
    assert client.get("/jobs").json()["total"] == 0
    assert [state.redis.llen(queue.value) for queue in Queue] == [0] * len(Queue)
    stored = Path(state.settings.resolved_storage_url)
    assert not stored.exists() or [p.name for p in stored.iterdir() if not p.name.startswith(".")] == []


def _fetch_temp_files() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("soundstage-fetch-*"))


# ------------------------------------------------------------------ uploads


def test_an_upload_is_stored_and_queued_for_demucs(
    client: TestClient, redis: RedisServer, tmp_path: Path, song_wav: bytes
) -> None:
    response = _upload(client, song_wav)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"job_id", "status"} and body["status"] == "queued"
    job_id = body["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["kind"], job["status"], job["model"]) == ("separate", "queued", "random:tiny")
    assert job["params"] == {
        "model": "random:tiny",
        "stems": 4,
        "shifts": 1,
        "overlap": 0.25,
        "segment": None,
        "format": "wav",
        "sample_rate": None,
        "input_audio": f"{job_id}_input.wav",
        "input_sample_rate": 44100,
        "input_channels": 2,
        "input_seconds": 1.5,
        "output_prefix": None,
    }
    assert (tmp_path / "files" / f"{job_id}_input.wav").read_bytes() == song_wav
    messages = _demucs_messages(redis)
    assert len(messages) == 1 and messages[0]["payload"]["job_id"] == job_id
    assert messages[0]["headers"]["task"] == "demucs.separate"
    assert redis.client().llen(Queue.MUSICGEN.value) == 0
    assert client.get("/jobs", params={"kind": "separate"}).json()["total"] == 1
    assert client.get("/files/").json() == [], "inputs are not listed as outputs"


def test_cancelling_a_queued_upload_removes_its_input_at_once(
    client: TestClient, tmp_path: Path, song_wav: bytes
) -> None:
    job_id = _upload(client, song_wav).json()["job_id"]
    stored = tmp_path / "files" / f"{job_id}_input.wav"
    assert stored.exists()
    assert client.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
    assert not stored.exists()  # a job that never runs keeps nothing; its row stays until retention


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_each_input_format_is_accepted(client: TestClient, redis: RedisServer, tmp_path: Path, fmt: str) -> None:
    upload = encode(fmt, synth(22050, 1, 2.0), 22050)
    response = _upload(client, upload, filename=f"take.{fmt}")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    params = client.get(f"/jobs/{job_id}").json()["params"]
    assert params["input_audio"] == f"{job_id}_input.{fmt}"
    assert (params["input_sample_rate"], params["input_channels"]) == (22050, 1)
    assert params["input_seconds"] == pytest.approx(2.0, abs=0.1)  # lossy codecs pad a little
    assert (tmp_path / "files" / f"{job_id}_input.{fmt}").read_bytes() == upload
    assert len(_demucs_messages(redis)) == 1


def test_options_as_form_fields(client: TestClient, song_wav: bytes) -> None:
    fields = {
        "model": "htdemucs",
        "stems": "2",
        "shifts": "3",
        "overlap": "0.5",
        "segment": "7.5",
        "format": "flac",
        "sample_rate": "48000",
    }
    response = _upload(client, song_wav, fields)
    assert response.status_code == 200, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    assert job["model"] == "htdemucs"
    expected = {"model": "htdemucs", "stems": 2, "shifts": 3, "overlap": 0.5, "segment": 7.5, "format": "flac"}
    assert {k: job["params"][k] for k in [*expected, "sample_rate"]} == {**expected, "sample_rate": 48000}


def test_empty_form_fields_count_as_not_sent(client: TestClient, song_wav: bytes) -> None:
    response = _upload(client, song_wav, {"model": "", "segment": "", "sample_rate": "", "stems": ""})
    assert response.status_code == 200, response.text
    params = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert (params["model"], params["stems"]) == ("random:tiny", 4)
    assert params["segment"] is None and params["sample_rate"] is None


def test_options_as_a_params_json_part(client: TestClient, song_wav: bytes) -> None:
    options = {"model": SIX, "stems": 6, "shifts": 0, "overlap": 0.1, "format": "mp3", "sample_rate": 32000}
    response = client.post(
        "/separate",
        files={
            "file": ("s.wav", song_wav, "audio/wav"),
            "params": (None, json.dumps(options), "application/json"),
        },
    )
    assert response.status_code == 200, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    assert job["model"] == SIX and {k: job["params"][k] for k in options} == options


def test_the_trailing_slash_alias(client: TestClient, server: HttpServer, song_wav: bytes) -> None:
    assert _upload(client, song_wav, path="/separate/").status_code == 200
    url = server.body("/song.wav", song_wav)
    assert client.post("/separate/", json={"audio_url": url}).status_code == 200
    assert client.get("/jobs").json()["total"] == 2


# --------------------------------------------------------------- audio_url


def test_an_audio_url_is_fetched_and_stored_with_the_job(
    client: TestClient, server: HttpServer, redis: RedisServer, tmp_path: Path
) -> None:
    song = encode("flac", synth(48000, 2, 1.0), 48000)
    url = server.body("/song.flac", song, content_type="audio/flac")
    response = client.post("/separate", json={"audio_url": f"{url}?signature=s3cr3t", "stems": "2", "format": "ogg"})
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["kind"], job["model"]) == ("separate", "random:tiny")
    params = job["params"]
    assert (params["stems"], params["format"], params["input_audio"]) == (2, "ogg", f"{job_id}_input.flac")
    assert (params["input_sample_rate"], params["input_channels"], params["input_seconds"]) == (48000, 2, 1.0)
    assert "audio_url" not in params and "s3cr3t" not in json.dumps(job), "a URL may carry credentials"
    assert (tmp_path / "files" / f"{job_id}_input.flac").read_bytes() == song
    assert len(_demucs_messages(redis)) == 1 and server.hits["/song.flac"] == 1


URL_REFUSALS = {
    "loopback": (422, "url_not_allowed"),
    "ftp": (422, "url_not_allowed"),
    "file": (422, "url_not_allowed"),
    "not_found": (422, "url_fetch_failed"),
    "too_large": (413, "url_too_large"),
    "stalls": (422, "url_timeout"),
    "corrupt": (422, "audio_undecodable"),
    "empty": (422, "audio_empty"),
}
REFUSAL_SETTINGS: dict[str, object] = {"demucs": {"models": SERVED}, "max_upload_mb": 1, "fetch_timeout_seconds": 1}


@pytest.mark.parametrize("case", URL_REFUSALS)
def test_audio_url_refusals_create_nothing(
    database_url: str, redis: RedisServer, tmp_path: Path, server: HttpServer, case: str
) -> None:
    status, code = URL_REFUSALS[case]
    urls = {
        "loopback": server.body("/private.wav", encode("wav", synth(16000, 1, 1.0), 16000)),
        "ftp": f"ftp://127.0.0.1:{server.port}/song.wav",
        "file": "file:///etc/passwd",
        "not_found": server.status("/missing.wav", 404),
        "too_large": server.stream("/huge.wav", 4 * MIB),
        "stalls": server.silent("/slow.wav"),
        "corrupt": server.body("/corrupt.wav", b"not audio at all " * 100),
        "empty": server.body("/empty.wav", empty_wav()),
    }
    temp_files_before = _fetch_temp_files()
    allow_private = case != "loopback"
    with make_client(database_url, redis, tmp_path, allow_private_urls=allow_private, **REFUSAL_SETTINGS) as client:
        error = _error(client.post("/separate", json={"audio_url": urls[case]}), status, code)
        _assert_nothing_created(client)
    assert _fetch_temp_files() <= temp_files_before, "the fetched file is removed"
    if case == "loopback":
        assert error["details"]["address"] == "127.0.0.1" and "loopback" in error["details"]["reason"]
        assert server.hits["/private.wav"] == 0, "a refused address is never contacted"
    if case == "not_found":
        assert error["details"]["status"] == 404
    if case == "stalls":
        assert error["details"]["timeout_seconds"] == 1


def test_a_redirect_into_a_private_address_is_refused(
    database_url: str, redis: RedisServer, tmp_path: Path, server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No machine running tests has a public address to serve from: the real address classifier
    # decides, except that 127.0.0.2 stands in for a public server (as in test_fetch).
    monkeypatch.setattr(fetch, "address_refusal", public_stand_in)
    secret = server.body("/secret.wav", encode("wav", synth(16000, 1, 1.0), 16000))
    with (
        HttpServer("127.0.0.2") as public,
        make_client(database_url, redis, tmp_path, allow_private_urls=False, **REFUSAL_SETTINGS) as client,
    ):
        redirect = public.redirect("/redirect.wav", secret)
        error = _error(client.post("/separate", json={"audio_url": redirect}), 422, "url_not_allowed")
        assert error["details"]["address"] == "127.0.0.1" and "loopback" in error["details"]["reason"]
        assert public.hits["/redirect.wav"] == 1 and server.hits["/secret.wav"] == 0
        _assert_nothing_created(client)
        # The control: the stand-in itself is let through, so the refusal above came from the redirect.
        song = public.body("/song.wav", encode("wav", synth(16000, 1, 1.0), 16000))
        assert client.post("/separate", json={"audio_url": song}).status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"audio_url=http://example.com/a.wav", "not valid JSON"),
        (b'["http://example.com/a.wav"]', "JSON object"),
        (b'"http://example.com/a.wav"', "JSON object"),
    ],
)
def test_a_json_body_must_be_a_json_object(client: TestClient, content: bytes, message: str) -> None:
    response = client.post("/separate", content=content, headers={"content-type": "application/json"})
    error = _error(response, 422, "validation_error")
    assert message in error["message"] and error["details"][0]["loc"] == ["body"]
    _assert_nothing_created(client)


def test_a_json_body_needs_an_audio_url(client: TestClient) -> None:
    # Without any `audio_url` the answer is musicgen-api's 400 `audio_required` (test_api_compat_access).
    for body in ({"audio_url": ""}, {"audio_url": "   "}, {"audio_url": 42}):
        error = _error(client.post("/separate", json=body), 422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [["body", "audio_url"]], body
    _assert_nothing_created(client)


def test_a_json_body_over_64_kib_is_413(client: TestClient) -> None:
    response = client.post("/separate", json={"audio_url": "http://example.com/a.wav", "pad": "x" * 70_000})
    error = _error(response, 413, "upload_too_large")
    assert error["details"] == {"max_bytes": 64 * 1024}
    _assert_nothing_created(client)


# ----------------------------------------------------- checks of the options


def test_six_stems_need_a_six_source_model(client: TestClient, server: HttpServer, song_wav: bytes) -> None:
    url = server.body("/song.wav", song_wav)
    refused = [
        _upload(client, song_wav, {"stems": "6"}),
        _upload(client, song_wav, {"stems": "6", "model": "htdemucs"}),
        client.post("/separate", json={"audio_url": url, "stems": 6}),
    ]
    for response in refused:
        error = _error(response, 422, "stems_not_supported")
        assert error["details"][0]["loc"] == ["body", "stems"]
        assert SIX in error["message"]
    _assert_nothing_created(client)
    assert server.hits["/song.wav"] == 0, "the options are checked before anything is fetched"
    for response in (
        _upload(client, song_wav, {"stems": "6", "model": SIX}),
        client.post("/separate", json={"audio_url": url, "stems": 6, "model": SIX}),
        _upload(client, song_wav, {"stems": "4", "model": SIX}),
    ):
        assert response.status_code == 200, response.text
        assert client.get(f"/jobs/{response.json()['job_id']}").json()["model"] == SIX


def test_six_stems_when_no_six_source_model_is_served(
    database_url: str, redis: RedisServer, tmp_path: Path, song_wav: bytes
) -> None:
    heartbeats.report(redis.client(), "demucs", heartbeats.HTDEMUCS)
    with make_client(database_url, redis, tmp_path, demucs={"model": "htdemucs"}) as client:
        error = _error(_upload(client, song_wav, {"stems": "6"}), 422, "stems_not_supported")
        assert "models that can: none" in error["message"]
        assert error["details"][0]["missing"] == ["guitar", "piano"]
        _assert_nothing_created(client)


def test_capability_checks_wait_for_a_worker_to_report_the_model(
    database_url: str, redis: RedisServer, tmp_path: Path, song_wav: bytes
) -> None:
    """Before any worker has loaded the model, the API cannot know its sources or segment limit: the job is
    accepted and the worker checks it (the e2e tests show it failing there with the same code)."""
    with make_client(database_url, redis, tmp_path, demucs={"model": "htdemucs"}) as client:
        for fields in ({"stems": "6"}, {"segment": "30"}):
            response = _upload(client, song_wav, fields)
            assert response.status_code == 200, response.text


def test_segment_is_limited_for_transformer_models(client: TestClient, server: HttpServer, song_wav: bytes) -> None:
    url = server.body("/song.wav", song_wav)
    for response in (
        _upload(client, song_wav, {"model": "htdemucs", "segment": "8"}),
        client.post("/separate", json={"audio_url": url, "model": "htdemucs", "segment": 7.9}),
    ):
        error = _error(response, 422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [["body", "segment"]]
        assert "7.8" in error["message"]
    _assert_nothing_created(client)
    assert server.hits["/song.wav"] == 0
    response = _upload(client, song_wav, {"model": "htdemucs", "segment": "7.8"})
    assert response.status_code == 200, response.text


def test_a_model_without_a_known_segment_limit_takes_longer_segments(
    database_url: str, redis: RedisServer, tmp_path: Path, song_wav: bytes
) -> None:
    with make_client(database_url, redis, tmp_path, demucs={"models": ["mdx_extra"]}) as client:
        response = _upload(client, song_wav, {"segment": "30"})
        assert response.status_code == 200, response.text
        assert client.get(f"/jobs/{response.json()['job_id']}").json()["params"]["segment"] == 30.0


def test_an_unknown_model_is_422(client: TestClient, server: HttpServer, song_wav: bytes) -> None:
    url = server.body("/song.wav", song_wav)
    for response in (
        _upload(client, song_wav, {"model": "htdemucs_ft"}),
        client.post("/separate", json={"audio_url": url, "model": "htdemucs_ft"}),
    ):
        error = _error(response, 422, "unknown_model")
        assert error["details"][0]["loc"] == ["body", "model"] and error["details"][0]["choices"] == SERVED
    _assert_nothing_created(client)
    assert server.hits["/song.wav"] == 0


INVALID_OPTIONS: list[tuple[str, object]] = [
    ("stems", 3),
    ("stems", "four"),
    ("shifts", -1),
    ("shifts", 21),
    ("shifts", 1.5),
    ("overlap", 1),
    ("overlap", -0.1),
    ("segment", 0.5),
    ("segment", 61),
    ("format", "aiff"),
    ("sample_rate", 7999),
    ("sample_rate", 48001),
    ("stem", 4),
    ("input_audio", "someone_else.wav"),
]


@pytest.mark.parametrize(("field", "value"), INVALID_OPTIONS)
def test_invalid_options_are_422_with_their_loc(
    client: TestClient, server: HttpServer, song_wav: bytes, field: str, value: object
) -> None:
    url = server.body("/song.wav", song_wav)
    for response in (
        _upload(client, song_wav, {field: str(value)}),
        client.post("/separate", json={"audio_url": url, field: value}),
    ):
        error = _error(response, 422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [["body", field]], error
    error = _error(
        client.post("/separate", files={"file": ("s.wav", song_wav), "params": (None, json.dumps({field: value}))}),
        422,
        "validation_error",
    )
    assert [detail["loc"] for detail in error["details"]] == [["body", "params", field]], error
    _assert_nothing_created(client)
    assert server.hits["/song.wav"] == 0


# ------------------------------------------------------------ the body itself


def test_a_file_and_an_audio_url_together_are_422(client: TestClient, server: HttpServer, song_wav: bytes) -> None:
    url = server.body("/song.wav", song_wav)
    for response in (
        _upload(client, song_wav, {"audio_url": url}),
        client.post("/separate", files={"file": ("s.wav", song_wav), "params": (None, json.dumps({"audio_url": url}))}),
    ):
        error = _error(response, 422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [["body", "audio_url"]]
        assert "either" in error["message"] and "not both" in error["message"]
    _assert_nothing_created(client)
    assert server.hits["/song.wav"] == 0


def test_a_multipart_body_needs_the_file(client: TestClient) -> None:
    error = _error(_upload(client, None, {"stems": "4"}), 400, "audio_required")
    assert error["message"] == "Either audio_url or file upload is required"
    assert [detail["loc"] for detail in error["details"]] == [["body", "file"], ["body", "audio_url"]]
    _assert_nothing_created(client)


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data"},  # no boundary
        {"content-type": "audio/wav"},
        {},
    ],
)
def test_other_content_types_are_422(client: TestClient, song_wav: bytes, headers: dict[str, str]) -> None:
    response = client.post("/separate", content=song_wav, headers=headers)
    error = _error(response, 422, "validation_error")
    assert "multipart/form-data" in error["message"] and "application/json" in error["message"]
    assert error["details"][0]["type"] == "content_type"
    _assert_nothing_created(client)


def test_a_truncated_multipart_body_is_422(client: TestClient) -> None:
    truncated = b'--b\r\nContent-Disposition: form-data; name="stems"\r\n\r\n4\r\n--b\r\nContent-Disp'
    response = client.post("/separate", content=truncated, headers={"content-type": "multipart/form-data; boundary=b"})
    _error(response, 422, "validation_error")
    _assert_nothing_created(client)


# -------------------------------------------------------------- the audio


def test_corrupt_and_empty_uploads_are_422(client: TestClient) -> None:
    error = _error(_upload(client, b"definitely not audio " * 500), 422, "audio_undecodable")
    assert "supported format" in error["message"]
    _error(_upload(client, empty_wav()), 422, "audio_empty")
    _error(_upload(client, b""), 422, "audio_empty")
    _assert_nothing_created(client)


def test_audio_longer_than_max_separate_seconds_is_422(
    database_url: str, redis: RedisServer, tmp_path: Path, server: HttpServer
) -> None:
    # MAX_DURATION (generation) does not apply here: 4 s pass with max_duration=2.
    settings: dict[str, object] = {"max_separate_seconds": 5, "max_duration": 2, "allow_private_urls": True}
    long_song = encode("flac", synth(16000, 1, 6.0), 16000)
    with make_client(database_url, redis, tmp_path, **settings) as client:
        for response in (
            _upload(client, long_song),
            client.post("/separate", json={"audio_url": server.body("/long.flac", long_song)}),
        ):
            error = _error(response, 422, "audio_too_long")
            assert error["details"] == {"max_seconds": 5}
        _assert_nothing_created(client)
        assert _upload(client, encode("flac", synth(16000, 1, 4.0), 16000)).status_code == 200


def test_an_upload_over_max_upload_mb_is_413(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, max_upload_mb=1) as client:
        error = _error(_upload(client, b"\0" * (2 * MIB)), 413, "upload_too_large")
        assert error["details"] == {"max_bytes": MIB}
        _assert_nothing_created(client)


# ------------------------------------------------------------------ the rest


def test_separate_needs_the_api_key(database_url: str, redis: RedisServer, tmp_path: Path, song_wav: bytes) -> None:
    with make_client(database_url, redis, tmp_path, api_key="s3cret") as client:
        _error(_upload(client, song_wav), 401, "api_key_missing")
        _error(client.post("/separate", json={"audio_url": "http://example.com/a.wav"}), 401, "api_key_missing")
        response = client.post("/separate", files={"file": ("s.wav", song_wav)}, headers={"X-API-Key": "s3cret"})
        assert response.status_code == 200, response.text


def test_openapi_documents_both_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/separate/" not in spec["paths"]
    operation = spec["paths"]["/separate"]["post"]
    content = operation["requestBody"]["content"]
    multipart = content["multipart/form-data"]["schema"]
    assert multipart["required"] == ["file"]
    assert set(multipart["properties"]) == {
        "file",
        "params",
        "model",
        "stems",
        "shifts",
        "overlap",
        "segment",
        "format",
        "sample_rate",
    }
    as_json = content["application/json"]["schema"]
    assert as_json["required"] == ["audio_url"] and "file" not in as_json["properties"]
    for schema in (multipart, as_json):
        assert all(prop.get("description") for prop in schema["properties"].values())
        reference = schema["properties"]["format"]["$ref"].rsplit("/", 1)[-1]
        assert reference in spec["components"]["schemas"]
    assert "audio_url" in operation["description"] and "multipart/form-data" in operation["description"]
    responses = operation["responses"]
    assert "upload_too_large" in responses["413"]["description"]
    assert "url_too_large" in responses["413"]["description"]
    for code in ("stems_not_supported", "unknown_model", "url_not_allowed", "audio_too_long"):
        assert code in responses["422"]["description"], code
