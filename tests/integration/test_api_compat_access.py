"""musicgen-api's access behaviour, in-process against real Redis and each real database; no workers:

- `POST /separate` with nothing to separate is musicgen-api's 400;
- URL inputs that name this server's own files (`/files/<name>`, `/srocks/files/<name>`, relative or
  under the request's own origin or PUBLIC_BASE_URLS) are read from storage, never fetched over HTTP
  (private addresses stay refused here: ALLOW_PRIVATE_URLS is off);
- PUBLIC_READS: the key only on POST and DELETE."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from soundstage.pools import Queue
from soundstage.settings import Settings
from soundstage_api.own_files import own_file_name
from soundstage_api.viewer import owner_of
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.integration.test_api_separate import _assert_nothing_created
from tests.integration.test_api_wait import app_state, finish_job
from tests.support import heartbeats
from tests.support.audio_files import encode, synth
from tests.support.servers import RedisServer

KEY = "s3cret"
PROXY = "https://music.example.com/api"
MELODY = "random:tiny-melody"
AUDIO_REQUIRED = "Either audio_url or file upload is required"


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    heartbeats.report(redis.client(), "demucs", heartbeats.DEMUCS_TINY)
    heartbeats.report(redis.client(), "musicgen", heartbeats.MUSICGEN_TINY, heartbeats.MUSICGEN_MELODY)
    with make_client(
        database_url,
        redis,
        tmp_path,
        api_key=KEY,
        public_base_urls=[PROXY],
        demucs={"model": "random:tiny"},
        musicgen={"models": ["random:tiny", MELODY]},
    ) as client:
        client.headers["X-API-Key"] = KEY
        yield client


@pytest.fixture(scope="module")
def song() -> bytes:
    return encode("wav", synth(44100, 2, 1.5), 44100)


def stored(client: TestClient, data: bytes, suffix: str = "generated.wav") -> str:
    """An object in the server's own storage, as a finished job of the client's key leaves it (a job row
    owned by that key: another key may not read it)."""
    job_id = str(uuid.uuid4())
    key = client.headers.get("X-API-Key")
    state = app_state(client)
    state.repo.create(
        kind="generate", queue="musicgen", model="m", params={}, job_id=job_id, owner=key and owner_of(key)
    )
    name = f"{job_id}_{suffix}"
    state.store.put_bytes(name, data, "audio/wav")
    return name


def _separate(client: TestClient, url: str) -> httpx.Response:
    return client.post("/separate", json={"audio_url": url})


def _stored_input(client: TestClient, response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    return app_state(client).store.read_bytes(job["params"]["input_audio"])


# ------------------------------------------------------------ nothing to separate


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"", {}),
        (b"", {"content-type": "application/json"}),
        (b"  ", {"content-type": "application/json"}),
        (b"{}", {"content-type": "application/json"}),
        (b'{"stems": 4}', {"content-type": "application/json"}),
        (b'{"audio_url": null, "stems": 2}', {"content-type": "application/json"}),
        (b"", {"content-type": "multipart/form-data; boundary=b"}),
    ],
)
def test_separate_with_nothing_to_separate_is_400(client: TestClient, content: bytes, headers: dict[str, str]) -> None:
    error = _error(client.post("/separate", content=content, headers=headers), 400, "audio_required")
    assert error["message"] == AUDIO_REQUIRED
    assert [detail["loc"] for detail in error["details"]] == [["body", "file"], ["body", "audio_url"]]
    _assert_nothing_created(client)


def test_a_multipart_body_without_file_and_url_is_400(client: TestClient) -> None:
    for fields in ({"stems": "4"}, {"params": '{"stems": 2}'}):
        response = client.post("/separate", files={k: (None, v) for k, v in fields.items()})
        assert _error(response, 400, "audio_required")["message"] == AUDIO_REQUIRED
    _assert_nothing_created(client)


def test_separate_without_a_key_is_still_401(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, api_key=KEY) as client:
        _error(client.post("/separate"), 401, "api_key_missing")


# ----------------------------------------------------------- this server's files


@pytest.mark.parametrize(
    "form",
    [
        "/files/{name}",
        "/srocks/files/{name}",
        "http://testserver/files/{name}",
        "HTTP://TestServer:80/srocks/files/{name}?download=1",
        PROXY + "/files/{name}",
        PROXY + "/srocks/files/{name}",
    ],
)
def test_separate_reads_its_own_files_from_storage(
    client: TestClient, redis: RedisServer, song: bytes, form: str
) -> None:
    name = stored(client, song)
    response = _separate(client, form.format(name=name))
    assert _stored_input(client, response) == song
    assert len(queued_payloads(redis, Queue.DEMUCS)) == 1


@pytest.mark.parametrize("form", ["/files/{name}", "/srocks/files/{name}", "http://testserver/files/{name}"])
@pytest.mark.parametrize("name", ["missing_generated.wav", "../etc/passwd", "", "a%2Fb.wav", ".hidden"])
def test_an_unknown_own_file_is_422_like_a_remote_404(client: TestClient, form: str, name: str) -> None:
    error = _error(_separate(client, form.format(name=name)), 422, "url_fetch_failed")
    assert error["details"]["status"] == 404
    _assert_nothing_created(client)


def test_own_files_are_checked_as_any_fetched_audio(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, max_upload_mb=0.05, demucs={"model": "random:tiny"}) as client:
        large = stored(client, encode("wav", synth(44100, 2, 1.0), 44100))
        assert _error(_separate(client, f"/files/{large}"), 413, "url_too_large")["details"]["max_bytes"] == 52428
        broken = stored(client, b"definitely not audio " * 50)
        _error(_separate(client, f"/files/{broken}"), 422, "audio_undecodable")
        _assert_nothing_created_but(client, {large, broken})


def _assert_nothing_created_but(client: TestClient, names: set[str]) -> None:
    """No job beyond those that left ``names`` (stored()), and no stored object but ``names``."""
    assert client.get("/jobs").json()["total"] == len(names)
    root = Path(app_state(client).settings.resolved_storage_url)
    assert {p.name for p in root.iterdir() if not p.name.startswith(".")} == names


def test_other_urls_of_this_host_are_not_read_from_storage(client: TestClient, song: bytes) -> None:
    name = stored(client, song)
    for url in (f"/jobs/{name}", f"files/{name}", f"http://user:pw@testserver/files/{name}"):
        _error(_separate(client, url), 422, "url_not_allowed")
    _assert_nothing_created_but(client, {name})


def test_melody_urls_read_own_files_on_generate_and_soundtrack(client: TestClient, redis: RedisServer) -> None:
    melody = encode("wav", synth(32000, 1, 2.0, frequency=330.0), 32000)
    name = stored(client, melody)
    generate = client.post(
        "/generate", json={"prompt": "brass band", "model": MELODY, "melody_audio_url": f"/srocks/files/{name}"}
    )
    assert generate.status_code == 200, generate.text
    params = client.get(f"/jobs/{generate.json()['job_id']}").json()["params"]
    assert app_state(client).store.read_bytes(params["melody_audio"]) == melody
    soundtrack = client.post(
        "/generate/soundtrack",
        json={
            "base_prompt": "cinematic",
            "scenes": [{"mood": "calm", "duration": 10}],
            "model": MELODY,
            "melody_audio_url": f"http://testserver/files/{name}",
            "use_stem_aware_crossfade": False,
        },
    )
    assert soundtrack.status_code == 200, soundtrack.text
    missing = client.post(
        "/generate", json={"prompt": "x", "model": MELODY, "melody_audio_url": "/files/nope_generated.wav"}
    )
    assert _error(missing, 422, "url_fetch_failed")["details"]["status"] == 404


def test_a_finished_jobs_file_url_feeds_the_next_job(client: TestClient) -> None:
    """The flow clients use: the `result_urls` of one job as the input of the next, with the key set."""
    job_id = client.post("/generate", json={"prompt": "x", "duration": 1}).json()["job_id"]
    finish_job(app_state(client), job_id)
    (url,) = client.get(f"/jobs/{job_id}").json()["result_urls"]
    response = _separate(client, url)
    assert _stored_input(client, response) == client.get(url).content


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/files/a.wav", "a.wav"),
        ("/srocks/files/a.wav", "a.wav"),
        ("/files/", ""),
        ("/jobs/a.wav", None),
        ("http://testserver/files/a.wav", "a.wav"),
        ("http://testserver:80/files/a.wav", "a.wav"),
        ("https://testserver/files/a.wav", None),
        ("http://testserver:8080/files/a.wav", None),
        ("http://other/files/a.wav", None),
        ("http://u:p@testserver/files/a.wav", None),
        ("http://testserver:bad/files/a.wav", None),
        ("https://music.example.com/api/files/a.wav", "a.wav"),
        ("https://music.example.com:443/api/srocks/files/a.wav", "a.wav"),
        ("https://music.example.com/files/a.wav", None),
        ("https://music.example.com/apifiles/a.wav", None),
        ("ftp://testserver/files/a.wav", None),
    ],
)
def test_which_urls_name_own_files(url: str, expected: str | None) -> None:
    assert own_file_name(url, ("http://testserver/", PROXY)) == expected


# --------------------------------------------------------------------- PUBLIC_READS


def _reads(client: TestClient, name: str, job_id: str) -> dict[str, int]:
    return {
        path: client.get(path).status_code
        for path in (
            f"/jobs/{job_id}",
            "/jobs",
            "/files/",
            f"/files/{name}",
            "/metrics/json",
            "/srocks/files/",
            f"/srocks/files/{name}",
        )
    } | {f"HEAD /files/{name}": client.head(f"/files/{name}").status_code}


def _writes(client: TestClient, job_id: str) -> dict[str, int]:
    hosted = {"prompt": "x"}
    return {
        "POST /generate": client.post("/generate", json={"prompt": "x"}).status_code,
        "POST /srocks/generate/": client.post("/srocks/generate/", json={"text": "x"}).status_code,
        "POST /segmind": client.post("/segmind/v1/meta-musicgen-medium", json=hosted).status_code,
        "DELETE /jobs": client.delete(f"/jobs/{job_id}").status_code,
    }


@pytest.mark.parametrize("public_reads", [False, True])
def test_public_reads(database_url: str, redis: RedisServer, tmp_path: Path, song: bytes, public_reads: bool) -> None:
    settings: dict[str, Any] = {"api_key": KEY, "public_reads": public_reads, "hosted_api_models": {"medium": "m"}}
    with make_client(database_url, redis, tmp_path, **settings, musicgen={"models": ["m"]}) as client:
        job_id = client.post("/generate", json={"prompt": "x"}, headers={"X-API-Key": KEY}).json()["job_id"]
        name = stored(client, song)
        reads = _reads(client, name, job_id)
        assert reads == dict.fromkeys(reads, 200 if public_reads else 401)
        writes = _writes(client, job_id)
        assert writes == dict.fromkeys(writes, 401), "POST and DELETE always need the key"
        client.headers["X-API-Key"] = "wrong"
        assert client.get("/jobs").status_code == (200 if public_reads else 403)
        assert client.delete(f"/jobs/{job_id}").status_code == 403
        for open_route in ("/health", "/metrics", "/srocks/"):
            assert client.get(open_route).status_code == 200, open_route
        ready = client.get("/ready")  # open too, and honest: no worker of any pool is up
        assert ready.status_code == 503 and ready.json()["down"] == ["workers"]
        assert client.get("/health").json()["auth_enabled"] is True


def test_public_base_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URLS", "https://music.example.com/api/, http://10.0.0.5:8000")
    assert Settings().public_base_urls == ["https://music.example.com/api", "http://10.0.0.5:8000"]
    for bad in ("music.example.com", "ftp://example.com", "https://example.com/?a=1"):
        monkeypatch.setenv("PUBLIC_BASE_URLS", bad)
        with pytest.raises(ValidationError, match="public_base_urls"):
            Settings()
