"""Rate limits (counted in real Redis by `limits`, shared by API replicas), per-key caps on active jobs
and the daily audio quota (from the real database). Limits are off in the rest of the suite
(tests/conftest.py); each test here sets the one it checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi.testclient import TestClient

from soundstage import migrations
from tests.integration.test_api import make_client
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support.servers import RedisServer

A, B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
BODY = {"prompt": "x", "duration": 4}


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    migrations.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def fresh(redis: RedisServer) -> Iterator[RedisServer]:
    redis.client().flushall()
    yield redis


def _retry_after(response: object, most: int) -> int:
    value = int(response.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= value <= most
    return value


def test_job_submissions_without_a_key_are_limited_per_address_across_replicas(
    sqlite_db: str, fresh: RedisServer, tmp_path: Path
) -> None:
    limits = {"rate_limit_per_minute": 3, "rate_limit_per_hour": 100}
    with (
        make_client(sqlite_db, fresh, tmp_path, **limits) as one,
        make_client(sqlite_db, fresh, tmp_path, **limits) as other,
    ):
        assert [client.post("/generate", json=BODY).status_code for client in (one, other, one)] == [200] * 3
        refused = _error(other.post("/generate", json=BODY), 429, "rate_limited")  # the count is shared
        assert refused["details"]["limit"] == 3 and refused["details"]["per"] == "minute"
        _retry_after(other.post("/generate", json=BODY), 60)
        # Polls and reads are not job submissions; another address has its own count.
        assert one.get("/jobs").status_code == 200
        with TestClient(one.app, client=("203.0.113.9", 4000)) as elsewhere:
            assert elsewhere.post("/generate", json=BODY).status_code == 200


def test_each_key_has_its_own_request_rate(sqlite_db: str, fresh: RedisServer, tmp_path: Path) -> None:
    with make_client(sqlite_db, fresh, tmp_path, api_keys="key-a,key-b", key_rate_limit_per_minute=4) as client:
        job_id = client.post("/generate", json=BODY, headers=A).json()["job_id"]
        assert [client.get(f"/jobs/{job_id}", headers=A).status_code for _ in range(3)] == [200] * 3
        _error(client.get(f"/jobs/{job_id}", headers=A), 429, "rate_limited")  # polls count too
        _retry_after(client.get("/jobs", headers=A), 60)
        assert client.get("/jobs", headers=B).status_code == 200
        assert client.get("/health").status_code == 200  # probes carry no key and are never limited


def test_wrong_keys_from_one_address_are_slowed_down(sqlite_db: str, fresh: RedisServer, tmp_path: Path) -> None:
    with make_client(sqlite_db, fresh, tmp_path, api_keys="key-a", failed_key_limit_per_minute=3) as client:
        for guess in range(3):
            _error(client.get("/jobs", headers={"X-API-Key": f"guess-{guess}"}), 403, "api_key_invalid")
        # Past the limit the address's keyed requests are refused before any lookup, the right key too.
        _error(client.get("/jobs", headers={"X-API-Key": "guess-4"}), 429, "too_many_failed_keys")
        _retry_after(client.get("/jobs", headers=A), 60)
        _error(client.get("/jobs"), 401, "api_key_missing")
        with TestClient(client.app, client=("203.0.113.9", 4000)) as elsewhere:
            assert elsewhere.get("/jobs", headers=A).status_code == 200


def test_limits_are_not_enforced_while_redis_is_down(sqlite_db: str, tmp_path: Path) -> None:
    dead = cast(RedisServer, SimpleNamespace(url="redis://127.0.0.1:9/0"))  # nothing listens on the discard port
    with make_client(sqlite_db, dead, tmp_path, api_keys="key-a", key_rate_limit_per_minute=1) as client:
        assert [client.get("/jobs", headers=A).status_code for _ in range(3)] == [200] * 3


def test_a_key_may_have_a_capped_number_of_active_jobs(database_url: str, fresh: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, fresh, tmp_path, api_keys="key-a,key-b", max_active_jobs_per_key=2) as client:
        first = client.post("/generate", json=BODY, headers=A).json()["job_id"]
        assert client.post("/generate", json=BODY, headers=A).status_code == 200
        refused = _error(client.post("/generate", json=BODY, headers=A), 429, "too_many_active_jobs")
        assert refused["details"] == {"active": 2, "limit": 2}
        assert client.post("/generate", json=BODY, headers=B).status_code == 200
        assert client.delete(f"/jobs/{first}", headers=A).status_code == 200
        assert client.post("/generate", json=BODY, headers=A).status_code == 200


def test_the_daily_audio_quota_is_told_on_every_answer_and_refused_as_each_api_answers(
    database_url: str, fresh: RedisServer, tmp_path: Path
) -> None:
    with make_client(database_url, fresh, tmp_path, api_keys="key-a,key-b", daily_audio_seconds_per_key=10) as client:
        assert client.get("/jobs", headers=A).headers["X-Remaining-Credits"] == "10"
        first = client.post("/generate", json=BODY, headers=A)
        assert first.status_code == 200 and first.headers["X-Remaining-Credits"] == "6"
        assert client.post("/generate", json=BODY, headers=A).headers["X-Remaining-Credits"] == "2"
        refused = client.post("/generate", json=BODY, headers=A)
        error = _error(refused, 429, "quota_exhausted")
        assert refused.headers["X-Remaining-Credits"] == "2" and error["details"]["requested_seconds"] == 4
        assert int(refused.headers["Retry-After"]) <= 86_400
        # The hosted MusicGen API says "not enough credits" with a 406.
        hosted = client.post("/segmind/v1/meta-musicgen-small", json={"prompt": "x", "duration": 5}, headers=A)
        _error(hosted, 406, "quota_exhausted")
        # A short enough request still fits; another key has its own day; a cancelled job gives its seconds back.
        assert client.post("/generate", json={**BODY, "duration": 2}, headers=A).status_code == 200
        assert client.get("/jobs", headers=B).headers["X-Remaining-Credits"] == "10"
        assert client.delete(f"/jobs/{first.json()['job_id']}", headers=A).status_code == 200
        assert client.get("/jobs", headers=A).headers["X-Remaining-Credits"] == "4"
