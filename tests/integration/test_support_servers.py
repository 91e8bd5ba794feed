"""Checks that the throwaway servers used by the integration suite really work.

If these fail, every other integration test would fail in confusing ways, so
they pin down the guarantees the rest of the suite relies on: the URLs
work, a stop()/start() cycle keeps the same address (outage simulation),
startup failures carry the server log, and nothing is left behind.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support import servers
from tests.support.servers import (
    PostgresServer,
    RedisServer,
    S3Server,
    ServerStartError,
)
from tests.support.waiting import free_port, wait_until

# ------------------------------------------------------------------ waiting


def test_wait_until_returns_first_truthy_value() -> None:
    calls: list[int] = []

    def predicate() -> str | None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ready"

    assert wait_until(predicate, timeout=5, interval=0.001) == "ready"
    assert len(calls) == 3


def test_wait_until_timeout_reports_message_and_last_error() -> None:
    def predicate() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(TimeoutError) as info:
        wait_until(predicate, timeout=0.05, interval=0.01, message="the widget")
    text = str(info.value)
    assert "the widget" in text
    assert "ConnectionRefusedError: nobody home" in text


def test_wait_until_timeout_reports_last_falsy_value() -> None:
    with pytest.raises(TimeoutError, match=r"last value: 0"):
        wait_until(lambda: 0, timeout=0.02, interval=0.01)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -------------------------------------------------------------------- redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_redis_set_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_server.url) as client:
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"


def test_redis_stop_then_start_on_same_port(redis_server: RedisServer) -> None:
    url = redis_server.url
    with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
        client.set("before", "1")

        redis_server.stop()
        assert not redis_server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()

        redis_server.start()
        assert redis_server.url == url
        # The same client object reconnects: this is what a broker outage
        # followed by a recovery looks like to application code.
        client.set("after", "2")
        assert client.get("after") == b"2"
        # Persistence is off, so the restart came back empty.
        assert client.get("before") is None


def test_redis_kill_then_start(redis_server: RedisServer) -> None:
    redis_server.kill()
    assert not redis_server.running
    redis_server.start()
    with redis_server.client() as client:
        assert client.ping()


def test_redis_context_exit_removes_directory() -> None:
    with RedisServer() as server:
        directory = server.directory
        assert directory.is_dir()
    assert not directory.exists()
    assert not server.running


def test_startup_failure_includes_server_log() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy_port = blocker.getsockname()[1]
        server = RedisServer(port=busy_port)
        with pytest.raises(ServerStartError) as info:
            server.start()
    assert info.value.port_in_use
    assert "Address already in use" in str(info.value)
    assert "--- redis log ---" in str(info.value)
    # A failed first start cleans up after itself.
    with pytest.raises(RuntimeError, match="not been started"):
        _ = server.directory


def test_first_start_retries_when_port_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy_port = blocker.getsockname()[1]
        # The constructor picks the busy port; the retry picks a real one.
        monkeypatch.setattr(servers.base, "free_port", lambda: busy_port)
        server = RedisServer()
        monkeypatch.setattr(servers.base, "free_port", free_port)
        with server:
            assert server.port != busy_port
            with server.client() as client:
                assert client.ping()


# ----------------------------------------------------------------- postgres


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def test_postgres_select_1(postgres_server: PostgresServer) -> None:
    port = postgres_server.port
    assert postgres_server.url == (f"postgresql+psycopg://soundstage:soundstage@127.0.0.1:{port}/soundstage")
    with psycopg.connect(postgres_server.dsn) as conn:
        row = conn.execute("SELECT 1, current_user, current_database()").fetchone()
    assert row == (1, "soundstage", "soundstage")


def test_postgres_create_database_is_isolated(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("isolated_one")
    assert url == postgres_server.url_for("isolated_one")
    with psycopg.connect(postgres_server.dsn_for("isolated_one")) as conn:
        conn.execute("CREATE TABLE only_here (id int)")
    with psycopg.connect(postgres_server.dsn) as conn:
        row = conn.execute("SELECT to_regclass('only_here')").fetchone()
    assert row == (None,)


def test_postgres_create_database_rejects_odd_names(
    postgres_server: PostgresServer,
) -> None:
    with pytest.raises(ValueError, match="identifier"):
        postgres_server.create_database('x"; DROP DATABASE soundstage; --')


def test_postgres_stop_then_start_keeps_data(postgres_server: PostgresServer) -> None:
    postgres_server.create_database("survives_restart")
    dsn = postgres_server.dsn_for("survives_restart")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")

    port = postgres_server.port
    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)

    postgres_server.start()
    assert postgres_server.port == port
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == ("still here",)


def test_postgres_exit_removes_directory() -> None:
    with PostgresServer() as server:
        directory: Path = server.directory
        assert (server.data_directory / "PG_VERSION").is_file()
    assert not directory.exists()


# ----------------------------------------------------------------------- s3


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def test_s3_put_get_with_range(s3_server: S3Server) -> None:
    assert s3_server.endpoint_url == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.create_bucket("audio-bucket") == "audio-bucket"
    client = s3_server.client()
    body = bytes(range(256)) * 4
    client.put_object(Bucket="audio-bucket", Key="a/track.wav", Body=body)

    whole = client.get_object(Bucket="audio-bucket", Key="a/track.wav")
    assert whole["Body"].read() == body

    part = client.get_object(Bucket="audio-bucket", Key="a/track.wav", Range="bytes=10-19")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["Body"].read() == body[10:20]


def test_s3_servers_do_not_share_state(s3_server: S3Server) -> None:
    s3_server.create_bucket("only-in-first")
    with S3Server() as other:
        names = [b["Name"] for b in other.client().list_buckets()["Buckets"]]
    assert "only-in-first" not in names


def test_s3_stop_then_start_on_same_port(s3_server: S3Server) -> None:
    endpoint = s3_server.endpoint_url
    s3_server.stop()
    s3_server.start()
    assert s3_server.endpoint_url == endpoint
    s3_server.create_bucket("after-restart")
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert "after-restart" in names
