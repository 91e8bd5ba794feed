"""Per-key isolation, in-process against real Redis and each real database: a key sees, lists, cancels and
downloads only its own jobs and files (another key's are 404, as unknown ones); an admin key sees all; with
auth off, or a PUBLIC_READS read without a key, everything is visible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from soundstage.db import JobRepository, NewFile
from tests.integration.test_api import make_client
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support.servers import RedisServer

A, B, ADMIN = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}, {"X-API-Key": "key-admin"}
BODY = {"prompt": "x", "duration": 1}


def finish(client: TestClient, job_id: str) -> str:
    """Complete ``job_id`` as a worker would, with one stored output; its name."""
    state = client.app.state.soundstage  # type: ignore[attr-defined]
    repo: JobRepository = state.repo
    name = f"{job_id}_generated.wav"
    state.store.put_bytes(name, b"RIFF....WAVE")
    repo.claim(job_id, worker="w", max_attempts=3, stale_after_s=0)
    assert repo.complete(job_id, [NewFile(name=name, content_type="audio/wav", size_bytes=12)], {}, worker="w")
    return name


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    redis.client().flushall()
    with make_client(database_url, redis, tmp_path, api_keys="key-a,key-b", admin_api_keys="key-admin") as client:
        yield client


def test_a_key_sees_only_its_own_jobs_and_files(client: TestClient) -> None:
    mine = client.post("/generate", json=BODY, headers=A).json()["job_id"]
    theirs = client.post("/generate", json=BODY, headers=B).json()["job_id"]
    my_file, their_file = finish(client, mine), finish(client, theirs)

    assert [job["job_id"] for job in client.get("/jobs", headers=A).json()["jobs"]] == [mine]
    assert client.get("/jobs", headers=A).json()["total"] == 1
    assert [row["filename"] for row in client.get("/files/", headers=A).json()] == [my_file]
    assert client.get(f"/jobs/{mine}", headers=A).status_code == 200
    assert client.get(f"/files/{my_file}", headers=A).status_code == 200
    # Another key's job and file answer as unknown ones: nothing to probe.
    _error(client.get(f"/jobs/{theirs}", headers=A), 404, "job_not_found")
    _error(client.delete(f"/jobs/{theirs}", headers=A), 404, "job_not_found")
    _error(client.get(f"/jobs?parent_id={theirs}", headers=A), 404, "job_not_found")
    _error(client.get(f"/files/{their_file}", headers=A), 404, "file_not_found")
    assert client.head(f"/files/{their_file}", headers=A).status_code == 404
    _error(client.get(f"/srocks/files/{their_file}", headers=A), 404, "file_not_found")
    assert [row["filename"] for row in client.get("/srocks/files/", headers=B).json()] == [their_file]
    # A URL input naming another key's file is refused like a missing one.
    fetch = client.post("/separate", json={"audio_url": f"http://testserver/files/{their_file}"}, headers=A)
    assert fetch.status_code == 422 and fetch.json()["error"]["details"]["status"] == 404


def test_an_admin_key_sees_every_job_and_file(client: TestClient) -> None:
    jobs = [client.post("/generate", json=BODY, headers=key).json()["job_id"] for key in (A, B)]
    names = [finish(client, job_id) for job_id in jobs]
    assert client.get("/jobs", headers=ADMIN).json()["total"] == 2
    assert {row["filename"] for row in client.get("/files/", headers=ADMIN).json()} == set(names)
    assert all(client.get(f"/files/{name}", headers=ADMIN).status_code == 200 for name in names)
    assert client.get(f"/jobs/{jobs[0]}", headers=ADMIN).status_code == 200


def test_with_auth_off_everything_is_visible(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path) as client:
        job_id = client.post("/generate", json=BODY).json()["job_id"]
        name = finish(client, job_id)
        assert client.get(f"/jobs/{job_id}").status_code == 200 and client.get(f"/files/{name}").status_code == 200


def test_public_reads_without_a_key_see_everything(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path, api_keys="key-a", public_reads=True) as client:
        job_id = client.post("/generate", json=BODY, headers=A).json()["job_id"]
        name = finish(client, job_id)
        assert client.get("/jobs").json()["total"] == 1 and client.get(f"/files/{name}").status_code == 200
        assert client.get("/jobs", headers={"X-API-Key": "key-a"}).json()["total"] == 1
