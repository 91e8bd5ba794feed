"""Services-mode stacks: the API and MusicGen workers as processes on real Redis, PostgreSQL and S3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.servers import PostgresServer, RedisServer, S3Server
from tests.support.stack import Stack

StackFactory = Callable[..., Stack]


def services_env(
    *, redis_url: str, database_url: str, s3: S3Server, bucket: str, model_cache: Path, **extra: str
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SOUNDSTAGE", "API_KEY"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        STORAGE_URL=f"s3://{bucket}/outputs",
        S3_ENDPOINT_URL=s3.endpoint_url,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION=s3.region,
        MUSICGEN_MODEL="random:tiny",
        DEMUCS_MODEL="random:tiny",
        MODEL_CACHE_DIR=str(model_cache),
        DATA_DIR=str(model_cache.parent / "data"),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def build_stack_factory(
    log_root: Path, postgres_server: PostgresServer, s3_server: S3Server, model_cache_dir: Path
) -> tuple[StackFactory, Callable[[], None]]:
    """A factory of stacks with their own Redis, database and bucket, and the function that stops them all."""
    stacks: list[Stack] = []
    redis_servers: list[RedisServer] = []

    def factory(*, redis: RedisServer | None = None, database_url: str | None = None, **extra: str) -> Stack:
        if redis is None:
            redis = RedisServer().start()
            redis_servers.append(redis)
        bucket = s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
        database_url = database_url or postgres_server.create_database(f"e2e_{uuid.uuid4().hex[:10]}")
        env = services_env(
            redis_url=redis.url,
            database_url=database_url,
            s3=s3_server,
            bucket=bucket,
            model_cache=model_cache_dir,
            **extra,
        )
        from soundstage import migrations

        migrations.upgrade(database_url)
        log_dir = log_root / f"stack{len(stacks)}"
        log_dir.mkdir()
        stack = Stack(env=env, log_dir=log_dir)
        stack.bucket = bucket  # type: ignore[attr-defined]
        stacks.append(stack)
        return stack

    def stop_all() -> None:
        for stack in stacks:
            stack.stop()
        for server in redis_servers:
            server.close()

    return factory, stop_all


@pytest.fixture(scope="module")
def make_module_stack(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    s3_server: S3Server,
    model_cache_dir: Path,
) -> Iterator[StackFactory]:
    """Like ``make_stack``, for a stack that the tests of one module share (its start costs seconds)."""
    factory, stop_all = build_stack_factory(
        tmp_path_factory.mktemp("stacks"), postgres_server, s3_server, model_cache_dir
    )
    yield factory
    stop_all()


@pytest.fixture
def make_stack(
    tmp_path: Path, postgres_server: PostgresServer, s3_server: S3Server, model_cache_dir: Path
) -> Iterator[StackFactory]:
    """Build stacks with their own Redis, database and bucket; everything is stopped afterwards."""
    factory, stop_all = build_stack_factory(tmp_path, postgres_server, s3_server, model_cache_dir)
    yield factory
    stop_all()
