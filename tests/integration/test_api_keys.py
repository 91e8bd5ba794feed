"""API keys kept hashed in the database: the operator command (a real `soundstage keys` process) against
each real database, and the API accepting, scoping and revoking them against real Redis."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from soundstage.db import ApiKeyStore, create_db_engine, create_session_factory
from soundstage.keys import Scope, hash_key, parse_scopes
from tests.integration.test_api import make_client
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support.servers import RedisServer

BODY = {"prompt": "x", "duration": 1}


def keys_command(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "soundstage", "keys", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stored_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sqlalchemy.text("SELECT * FROM api_keys"))]
    finally:
        engine.dispose()


def test_the_operator_command_creates_lists_and_revokes_keys_kept_hashed(database_url: str, tmp_path: Path) -> None:
    made = keys_command(
        database_url, tmp_path, "create", "--name", "photo app", "--scopes", "generate,separate", "--json"
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    api_key = created["api_key"]
    assert api_key.startswith("ss_") and len(api_key) > 40 and created["scopes"] == ["generate", "separate"]

    plain = keys_command(database_url, tmp_path, "create", "--name", "ops")
    assert plain.returncode == 0 and plain.stdout.splitlines()[0].startswith("ss_")
    assert "generate,jam,separate" in plain.stdout  # the default: every scope but admin

    # Never in plain text: only its hash and its first characters are stored.
    rows = stored_rows(database_url)
    assert len(rows) == 2
    assert all(api_key not in str(value) and api_key[10:] not in str(value) for row in rows for value in row.values())
    assert hash_key(api_key) in {row["key_hash"] for row in rows}

    listing = keys_command(database_url, tmp_path, "list")
    assert listing.returncode == 0 and "photo app" in listing.stdout and "active" in listing.stdout
    assert api_key not in listing.stdout and api_key[:10] in listing.stdout

    assert keys_command(database_url, tmp_path, "revoke", created["id"]).returncode == 0
    listed = {key["name"]: key for key in json.loads(keys_command(database_url, tmp_path, "list", "--json").stdout)}
    assert listed["photo app"]["revoked_at"] is not None and listed["ops"]["revoked_at"] is None

    unknown = keys_command(database_url, tmp_path, "revoke", "nope")
    assert unknown.returncode == 1 and "no key" in unknown.stdout
    bad = keys_command(database_url, tmp_path, "create", "--name", "x", "--scopes", "generate,root")
    assert bad.returncode == 2 and "unknown scope 'root'" in bad.stdout


def test_scopes_parse_and_refuse_unknown_names() -> None:
    assert parse_scopes(" Generate, jam ") == {Scope.GENERATE, Scope.JAM}
    for text in ("", "generate,root"):
        with pytest.raises(ValueError):
            parse_scopes(text)


@pytest.fixture
def stored(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[tuple[TestClient, ApiKeyStore]]:
    """An API with no key in its environment, its database holding the keys the test makes; lookups are
    not cached (KEY_CACHE_SECONDS=0) so that revocation shows at once."""
    redis.client().flushall()
    with make_client(database_url, redis, tmp_path, key_cache_seconds=0) as client:
        engine = create_db_engine(database_url)
        yield client, ApiKeyStore(create_session_factory(engine))
        engine.dispose()


def test_a_stored_key_turns_auth_on_and_is_accepted_until_revoked(
    stored: tuple[TestClient, ApiKeyStore], caplog: pytest.LogCaptureFixture
) -> None:
    client, store = stored
    assert client.get("/health").json()["auth_enabled"] is False
    assert client.post("/generate", json=BODY).status_code == 200  # no key anywhere: auth off

    created = store.create("app", frozenset({Scope.GENERATE}))
    key = {"X-API-Key": created.api_key}
    assert client.get("/health").json()["auth_enabled"] is True
    _error(client.post("/generate", json=BODY), 401, "api_key_missing")
    _error(client.post("/generate", json=BODY, headers={"X-API-Key": "ss_wrong"}), 403, "api_key_invalid")
    with caplog.at_level(logging.DEBUG):
        job = client.post("/generate", json=BODY, headers=key)
    assert job.status_code == 200
    assert client.get(f"/jobs/{job.json()['job_id']}", headers=key).status_code == 200
    assert all(created.api_key not in record.getMessage() for record in caplog.records)  # never logged
    assert store.list()[0].last_used_at is not None

    assert store.revoke(created.info.id) is not None
    _error(client.post("/generate", json=BODY, headers=key), 403, "api_key_invalid")
    # Revoking the last key keeps auth on: the API never falls open.
    _error(client.post("/generate", json=BODY), 401, "api_key_missing")
    assert client.get("/health").json()["auth_enabled"] is True


def test_scopes_are_enforced_per_route(stored: tuple[TestClient, ApiKeyStore]) -> None:
    client, store = stored
    generator = {"X-API-Key": store.create("gen", frozenset({Scope.GENERATE})).api_key}
    separator = {"X-API-Key": store.create("sep", frozenset({Scope.SEPARATE})).api_key}
    admin = {"X-API-Key": store.create("ops", frozenset({Scope.ADMIN})).api_key}
    separation = {"audio_url": "http://example.invalid/a.wav"}

    refused = _error(client.post("/separate", json=separation, headers=generator), 403, "api_key_scope")
    assert refused["details"] == {"scope": "separate"}
    _error(client.post("/generate", json=BODY, headers=separator), 403, "api_key_scope")
    _error(client.post("/generate/soundtrack", json={"scenes": []}, headers=separator), 403, "api_key_scope")
    _error(client.post("/srocks/generate/", json={"text": "x"}, headers=separator), 403, "api_key_scope")
    # The hosted MusicGen API knows no 403: the same refusal is a 401 there.
    _error(
        client.post("/segmind/v1/meta-musicgen-small", json={"prompt": "x"}, headers=separator), 401, "api_key_scope"
    )

    # Jams need the `jam` scope, over HTTP and on the socket; with it, the start gets as far as the workers.
    jammer = {"X-API-Key": store.create("looper", frozenset({Scope.JAM})).api_key}
    jam = {"bpm": "120", "styles": "disco"}
    refused = _error(client.post("/magenta/jam/start", data=jam, headers=generator), 403, "api_key_scope")
    assert refused["details"] == {"scope": "jam"}
    _error(client.post("/magenta/jam/start", data=jam, headers=jammer), 503, "model_unavailable")  # no worker here
    with client.websocket_connect("/ws/jam", headers=generator) as socket:
        error = socket.receive_json()
        assert error["type"] == "error" and error["code"] == "api_key_scope" and error["fatal"] is True
    with client.websocket_connect("/ws/jam", headers=jammer) as socket:
        socket.send_json({"type": "ping", "t": 1})
        assert socket.receive_json()["type"] == "pong"

    job_id = client.post("/generate", json=BODY, headers=generator).json()["job_id"]
    # Reading and cancelling its own jobs needs no scope; admin implies every scope and sees every job.
    assert client.get("/jobs", headers=separator).json()["total"] == 0
    assert client.get(f"/jobs/{job_id}", headers=admin).status_code == 200
    assert client.post("/generate", json=BODY, headers=admin).status_code == 200
    assert client.delete(f"/jobs/{job_id}", headers=generator).status_code == 200


def test_environment_keys_still_work_beside_stored_ones(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    redis.client().flushall()
    with make_client(database_url, redis, tmp_path, api_keys="env-key", key_cache_seconds=0) as client:
        engine = create_db_engine(database_url)
        stored_key = ApiKeyStore(create_session_factory(engine)).create("db", frozenset({Scope.SEPARATE})).api_key
        engine.dispose()
        assert client.post("/generate", json=BODY, headers={"X-API-Key": "env-key"}).status_code == 200
        _error(client.post("/generate", json=BODY, headers={"X-API-Key": stored_key}), 403, "api_key_scope")
