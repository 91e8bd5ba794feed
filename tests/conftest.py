"""Session-wide real servers and the random test model, shared by every test layer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundstage import migrations
from tests.support.servers import PostgresServer, RedisServer, S3Server

# Rate limits and per-key caps are the subject of their own tests (which set them); everywhere else they
# would only make a fast test client look like an abuser. Set before any Settings is built, and inherited
# by the API and worker processes the tests start.
for _limit in (
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_PER_HOUR",
    "KEY_RATE_LIMIT_PER_MINUTE",
    "FAILED_KEY_LIMIT_PER_MINUTE",
    "MAX_ACTIVE_JOBS_PER_KEY",
):
    os.environ.setdefault(_limit, "0")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'soundstage.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database on each backend the product supports."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model cache with the MusicGen and Demucs `random:tiny` models built once per session (workers load
    them from here)."""
    from soundstage_demucs.random_models import build_random_model as build_random_separator
    from soundstage_musicgen.random_models import build_random_model

    cache = tmp_path_factory.mktemp("models")
    build_random_model("random:tiny", cache)
    build_random_separator("random:tiny", cache)
    return cache
