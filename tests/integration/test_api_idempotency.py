"""`Idempotency-Key` on job-creating POSTs, in-process against real Redis and each real database: the same
key and request give the same job (JSON and multipart), another request with the key is 409, keys are
per API key, a refused request leaves its key unused, and an expired key makes a new job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from soundstage.db import JobRepository, create_db_engine, create_session_factory, utcnow
from soundstage.db.idempotency import IdempotencyRaceError, IdempotencyRecord
from soundstage.db.models import IdempotencyKey
from soundstage_api.idempotency import BodyFingerprint
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support import heartbeats
from tests.support.audio_files import encode, synth
from tests.support.servers import RedisServer

KEYS = "key-a,key-b"
BODY = {"prompt": "rain on a tin roof", "duration": 2}


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    redis.client().flushall()
    heartbeats.report(redis.client(), "demucs", heartbeats.DEMUCS_TINY)
    with make_client(
        database_url,
        redis,
        tmp_path,
        api_keys=KEYS,
        musicgen={"model": "random:tiny"},
        demucs={"models": ["random:tiny"]},
    ) as client:
        yield client


def post(
    client: TestClient, key: str | bytes, body: dict[str, object], api_key: str = "key-a", path: str = "/generate"
) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key, "X-API-Key": api_key})


def total(client: TestClient) -> int:
    count: int = client.get("/jobs", headers={"X-API-Key": "key-a"}).json()["total"]
    return count


def test_the_same_key_and_body_give_the_same_job(client: TestClient, redis: RedisServer) -> None:
    first = post(client, "order-1", BODY)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = post(client, "order-1", BODY)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["job_id"] == first.json()["job_id"]
    assert total(client) == 1 and len(queued_payloads(redis)) == 1  # one job, queued once
    # The seed was drawn once (-1 at submission): the replay did not make a second draw.
    other = post(client, "order-2", BODY)
    assert other.json()["job_id"] != first.json()["job_id"] and total(client) == 2


def test_the_same_key_with_another_body_is_409(client: TestClient) -> None:
    job_id = post(client, "order-1", BODY).json()["job_id"]
    error = _error(post(client, "order-1", {**BODY, "duration": 3}), 409, "idempotency_key_reused")
    assert error["details"] == {"job_id": job_id}
    _error(post(client, "order-1", BODY, path="/generate/"), 409, "idempotency_key_reused")  # another path
    assert total(client) == 1


def test_keys_belong_to_their_api_key(client: TestClient) -> None:
    mine = post(client, "shared-name", BODY, api_key="key-a").json()["job_id"]
    theirs = post(client, "shared-name", BODY, api_key="key-b")
    assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["job_id"] != mine


def test_a_refused_request_leaves_its_key_unused(client: TestClient) -> None:
    _error(post(client, "order-1", {**BODY, "duration": -1}), 422, "validation_error")
    assert post(client, "order-1", BODY).status_code == 200
    assert total(client) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9".encode(), "two words"])
def test_a_malformed_key_is_422(client: TestClient, key: str | bytes) -> None:
    error = _error(post(client, key, BODY), 422, "validation_error")
    assert error["details"][0]["loc"] == ["header", "Idempotency-Key"]
    assert total(client) == 0


def test_a_multipart_upload_replays_whatever_boundary_the_client_draws(client: TestClient) -> None:
    song = encode("wav", synth(44100, 2, 1.0), 44100)
    headers = {"Idempotency-Key": "upload-1", "X-API-Key": "key-a"}
    first = client.post("/separate", data={"stems": "2"}, files={"file": ("song.wav", song)}, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post("/separate", data={"stems": "2"}, files={"file": ("song.wav", song)}, headers=headers)
    assert again.json()["job_id"] == first.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
    changed = client.post("/separate", data={"stems": "4"}, files={"file": ("song.wav", song)}, headers=headers)
    _error(changed, 409, "idempotency_key_reused")


def test_an_expired_key_makes_a_new_job(client: TestClient, database_url: str) -> None:
    first = post(client, "order-1", BODY).json()["job_id"]
    sessions = create_session_factory(create_db_engine(database_url))
    with sessions.begin() as session:  # a day and a minute later
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
    again = post(client, "order-1", BODY)
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert again.json()["job_id"] != first and total(client) == 2


def test_a_second_job_for_one_key_is_refused_by_the_database(database_url: str) -> None:
    """What two racing requests meet: the second insert breaks the key, and its job row is not written."""
    repo = JobRepository(create_session_factory(create_db_engine(database_url)))
    record = IdempotencyRecord("scope-race", "k", "f" * 64, since=utcnow() - timedelta(hours=24))
    first = repo.create(kind="generate", queue="musicgen", model="m", params={}, idempotency=record)
    with pytest.raises(IdempotencyRaceError):
        repo.create(kind="generate", queue="musicgen", model="m", params={}, idempotency=record)
    prior = repo.prior_job("scope-race", "k", record.since)
    assert prior is not None and prior.job_id == first.id
    assert repo.list_jobs(status=None, kind=None, limit=10, skip=0)[1] == 1
    repo.delete(first.id)  # the key goes with its job
    assert repo.prior_job("scope-race", "k", record.since) is None


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_the_multipart_fingerprint_ignores_the_boundary_wherever_chunks_split(chunk: int) -> None:
    def fingerprint(boundary: bytes, body: bytes) -> str:
        running = BodyFingerprint(boundary)
        for start in range(0, len(body), chunk):
            running.update(body[start : start + chunk])
        return running.hexdigest()

    def form(boundary: bytes, value: bytes) -> bytes:
        return b"--%s\r\nContent-Disposition: form-data; name=a\r\n\r\n%s\r\n--%s--\r\n" % (boundary, value, boundary)

    one, two = b"9f8e7d6c5b4a39281706f5e4d3c2b1a0", b"0123456789abcdef0123456789abcdef"
    assert fingerprint(one, form(one, b"same")) == fingerprint(two, form(two, b"same"))
    assert fingerprint(one, form(one, b"same")) != fingerprint(two, form(two, b"other"))


def test_openapi_declares_the_header_on_every_post(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert {"/generate", "/generate/soundtrack", "/separate", "/srocks/generate/"} <= set(posts)
    for path, operation in posts.items():
        (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and header["schema"]["maxLength"] == 255, path
        assert "409" in operation["responses"], path
