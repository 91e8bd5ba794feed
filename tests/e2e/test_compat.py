"""The compatibility APIs and the waiting routes end to end: real API processes, a real MusicGen worker and a
real Demucs worker (random:tiny) on real Redis, PostgreSQL and S3; clients written as the S.Rocks and hosted
API documents write them, the audio downloaded and decoded.

One set of processes serves the whole module (a stack start costs seconds): the workers, an API without
keys (S.Rocks clients send none) and a second API with API_KEY on the same Redis, database and bucket
(the hosted API's clients send `x-api-key`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soundstage import migrations
from tests.e2e.conftest import services_env
from tests.support.audio import assert_not_silent, decode
from tests.support.servers import PostgresServer, RedisServer, S3Server
from tests.support.stack import Stack, poll_job

pytestmark = pytest.mark.e2e

KEY = "e2e-hosted-key"
TIMEOUT = 180


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    s3_server: S3Server,
    model_cache_dir: Path,
) -> Iterator[tuple[Stack, Stack]]:
    """(open, keyed): two APIs over one set of workers and state."""
    redis = RedisServer().start()
    database_url = postgres_server.create_database(f"e2e_{uuid.uuid4().hex[:10]}")
    migrations.upgrade(database_url)
    env = services_env(
        redis_url=redis.url,
        database_url=database_url,
        s3=s3_server,
        bucket=s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}"),
        model_cache=model_cache_dir,
        HOSTED_API_MODELS="medium=random:tiny",
        SYNC_WAIT_SECONDS=str(TIMEOUT),
    )
    logs = tmp_path_factory.mktemp("compat")
    (logs / "open").mkdir()
    (logs / "keyed").mkdir()
    open_stack = Stack(env=env, log_dir=logs / "open")
    keyed = Stack(env={**env, "API_KEY": KEY}, log_dir=logs / "keyed")
    try:
        open_stack.start_worker()
        open_stack.start_worker(module="soundstage_demucs.app")
        open_stack.start_api()
        keyed.start_api()
        open_stack.wait_for_workers(2)
        yield open_stack, keyed
    finally:
        keyed.stop()
        open_stack.stop()
        redis.close()


def test_an_srocks_client_works_unchanged(stacks: tuple[Stack, Stack]) -> None:
    stack, _ = stacks
    base = f"{stack.url}/srocks"  # the S.Rocks client's "https://your-api-url"
    response = httpx.post(f"{base}/generate/", json={"text": "Ambient synth pads", "duration": 3}, timeout=TIMEOUT)
    assert response.status_code == 200, (response.text, stack.logs())
    result = response.json()
    audio_data = httpx.get(f"{base}{result['file_url']}", timeout=30).content
    audio = decode(audio_data)
    assert (audio.sample_rate, audio.channels) == (32000, 1)
    assert abs(audio.duration - 3) <= 0.02
    assert_not_silent(audio)
    assert (result["duration"], result["prompt"]) == (3, "Ambient synth pads")
    listed = httpx.get(f"{base}/files/?limit=10", timeout=30).json()
    assert result["file_url"] in [entry["url"] for entry in listed]
    health = httpx.get(f"{base}/", timeout=30).json()
    assert (health["status"], health["device"]) == ("healthy", "cpu")


def test_a_hosted_api_client_gets_the_wav(stacks: tuple[Stack, Stack]) -> None:
    _, keyed = stacks
    url = f"{keyed.url}/segmind/v1/meta-musicgen-medium"
    data = {"prompt": "lo-fi music with a soothing melody", "duration": 2, "seed": 42}
    response = httpx.post(url, json=data, headers={"x-api-key": KEY}, timeout=TIMEOUT)
    assert response.status_code == 200, (response.text, keyed.logs())
    assert response.headers["content-type"] == "audio/wav"
    audio = decode(response.content)
    assert audio.sample_rate == 32000 and abs(audio.duration - 2) <= 0.02
    assert_not_silent(audio)
    assert httpx.post(url, json=data, timeout=30).status_code == 401
    assert httpx.post(url, json=data, headers={"x-api-key": "wrong"}, timeout=30).status_code == 401
    small = f"{keyed.url}/segmind/v1/meta-musicgen-small"
    assert httpx.post(small, json=data, headers={"x-api-key": KEY}, timeout=30).status_code == 404


def test_prefer_wait_answers_with_the_completed_job(stacks: tuple[Stack, Stack]) -> None:
    stack, _ = stacks
    with httpx.Client(base_url=stack.url, timeout=TIMEOUT) as client:
        response = client.post("/generate", json={"prompt": "x", "duration": 2}, headers={"Prefer": "wait=120"})
        assert response.status_code == 200, (response.text, stack.logs())
        assert response.headers["preference-applied"] == "wait=120"
        job = response.json()
        assert job["status"] == "completed" and job == client.get(f"/jobs/{job['job_id']}").json()
        audio = decode(client.get(job["result_urls"][0]).content)
        assert abs(audio.duration - 2) <= 0.02


def test_a_result_url_of_this_server_is_separated_with_the_key_set(stacks: tuple[Stack, Stack]) -> None:
    _, keyed = stacks
    with httpx.Client(base_url=keyed.url, timeout=TIMEOUT, headers={"X-API-Key": KEY}) as client:
        made = client.post("/generate", json={"prompt": "x", "duration": 2}, headers={"Prefer": "wait=120"}).json()
        assert made["status"] == "completed", (made, keyed.logs())
        source = client.get(made["result_urls"][0]).content
        # The absolute URL of this very server: read from storage, not fetched (it would be a loopback address,
        # and the server's own request would carry no key).
        response = client.post("/separate", json={"audio_url": keyed.url + made["result_urls"][0], "stems": 2})
        assert response.status_code == 200, response.text
        job = poll_job(client, response.json()["job_id"], {"completed", "failed"}, timeout=TIMEOUT)
        assert job["status"] == "completed", (job, keyed.logs())
        assert client.get(f"/files/{job['params']['input_audio']}").content == source
        vocals = decode(client.get(job["result_urls"][0]).content)
        assert (vocals.sample_rate, vocals.channels) == (32000, 1) and abs(vocals.duration - 2) <= 0.02
