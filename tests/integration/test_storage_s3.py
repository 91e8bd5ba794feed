"""The S3 object store against a real S3 HTTP endpoint (moto in server mode).

Everything goes over a loopback socket through the production client, so
addressing style, Range headers, error codes and timeouts are the real ones.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from soundstage.errors import ErrorCode
from soundstage.storage import (
    ObjectNotFoundError,
    ObjectStore,
    StorageUnavailableError,
    open_store,
)

BUCKET = "soundstage-test"
PREFIX = "some/prefix"
DATA = bytes(range(256)) * 40  # 10,240 bytes

# Point the AWS credential chain at dummies and nothing else: no ~/.aws files,
# no instance-metadata lookups that would hang on a machine without one.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with fake credentials, for this module."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in AWS_ENV.items():
            env.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.delenv(key, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            url = f"http://{host}:{port}"
            boto3.session.Session().client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def raw(endpoint: str) -> Any:
    """A plain boto3 client to look behind the store's back."""
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


@pytest.fixture
def store(endpoint: str) -> ObjectStore:
    return open_store(f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=endpoint, s3_region="us-east-1")


def _name(suffix: str = ".wav") -> str:
    """A fresh object name per test: the bucket lives for the whole module."""
    return f"job-{uuid.uuid4().hex}{suffix}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_open_store_picks_s3(store: ObjectStore) -> None:
    assert store.kind == "s3"


def test_put_bytes_round_trip_and_stat(store: ObjectStore, raw: Any) -> None:
    name = _name()
    before = datetime.now(UTC) - timedelta(seconds=5)
    written = store.put_bytes(name, DATA)
    assert written == store.stat(name)
    assert written.name == name
    assert written.size == len(DATA)
    assert written.content_type == "audio/wav"
    assert written.modified.utcoffset() == timedelta(0)
    assert before <= written.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert written.etag and not written.etag.startswith('"')
    assert store.read_bytes(name) == DATA
    # Keys are prefix/name, content type is set on the object itself.
    head = raw.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")
    assert head["ContentType"] == "audio/wav"


def test_explicit_content_type_is_kept(store: ObjectStore) -> None:
    name = _name(".bin")
    assert store.put_bytes(name, b"{}", content_type="application/json").content_type == "application/json"
    assert store.stat(name).content_type == "application/json"


def test_bucket_without_prefix_has_no_leading_slash(endpoint: str, raw: Any) -> None:
    store = open_store(f"s3://{BUCKET}", s3_endpoint_url=endpoint)
    name = _name()
    store.put_bytes(name, b"abc")
    assert raw.head_object(Bucket=BUCKET, Key=name)["ContentLength"] == 3
    store.delete(name)


def test_put_file_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "render.flac"
    source.write_bytes(DATA * 10)
    name = _name(".flac")
    written = store.put_file(name, source)
    assert written.size == len(DATA) * 10
    assert written.content_type == "audio/flac"
    assert store.read_bytes(name) == DATA * 10


def test_put_file_large_goes_multipart(store: ObjectStore, tmp_path: Path) -> None:
    payload = DATA * 1000  # ~10 MB, over the transfer manager's 8 MB threshold
    source = tmp_path / "long.wav"
    source.write_bytes(payload)
    name = _name()
    written = store.put_file(name, source)
    assert written.size == len(payload)
    assert written.etag is not None and "-" in written.etag  # multipart ETag
    assert b"".join(store.iter_range(name, len(payload) - 100)) == payload[-100:]


def test_empty_object(store: ObjectStore) -> None:
    name = _name(".json")
    assert store.put_bytes(name, b"").size == 0
    assert store.read_bytes(name) == b""
    assert b"".join(store.iter_range(name, 0, None)) == b""


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, DATA),
        (100, None, DATA[100:]),
        (100, 199, DATA[100:200]),
        (len(DATA) - 1, None, DATA[-1:]),
        (len(DATA) - 1, len(DATA) - 1, DATA[-1:]),
        (0, 0, DATA[:1]),
        (10, len(DATA) + 500, DATA[10:]),
        (len(DATA), None, b""),
    ],
)
def test_iter_range(store: ObjectStore, start: int, end: int | None, expected: bytes) -> None:
    name = _name(".bin")
    store.put_bytes(name, DATA)
    assert b"".join(store.iter_range(name, start, end)) == expected


def test_iter_range_chunks(store: ObjectStore) -> None:
    name = _name(".bin")
    store.put_bytes(name, DATA)
    chunks = list(store.iter_range(name, 1000, 3499, chunk_size=1024))
    assert b"".join(chunks) == DATA[1000:3500]
    assert max(len(c) for c in chunks) <= 1024
    assert len(chunks) >= 3


def test_missing_object_is_not_found(store: ObjectStore) -> None:
    name = _name()
    for call in (
        lambda: store.stat(name),
        lambda: store.iter_range(name),
        lambda: store.read_bytes(name),
    ):
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert caught.value.code is ErrorCode.FILE_NOT_FOUND
        assert caught.value.status_code == 404


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "%2e%2e%2fetc", "", "x\x00"])
def test_bad_names_are_not_found(store: ObjectStore, name: str) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.put_bytes(name, b"x")
    with pytest.raises(ObjectNotFoundError):
        store.stat(name)
    with pytest.raises(ObjectNotFoundError):
        store.delete(name)


def test_overwrite_and_delete(store: ObjectStore) -> None:
    name = _name()
    store.put_bytes(name, b"first")
    store.put_bytes(name, b"second take")
    assert store.read_bytes(name) == b"second take"
    store.delete(name)
    with pytest.raises(ObjectNotFoundError):
        store.stat(name)
    store.delete(name)  # missing is fine


def test_shared_across_threads(store: ObjectStore) -> None:
    names = [_name() for _ in range(16)]

    def round_trip(name: str) -> bytes:
        store.put_bytes(name, name.encode())
        return store.read_bytes(name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(round_trip, names))
    assert results == [name.encode() for name in names]


def test_check_ok(store: ObjectStore) -> None:
    store.check()


def test_check_on_missing_bucket(endpoint: str) -> None:
    store = open_store("s3://no-such-bucket/x", s3_endpoint_url=endpoint)
    with pytest.raises(StorageUnavailableError) as caught:
        store.check()
    assert caught.value.code is ErrorCode.STORAGE_UNAVAILABLE
    assert caught.value.status_code == 503
    assert "no-such-bucket" in caught.value.message
    assert "does not exist" in caught.value.message
    with pytest.raises(StorageUnavailableError):
        store.put_bytes("x.wav", b"x")


@pytest.mark.usefixtures("endpoint")  # for the fake credentials
def test_endpoint_down_fails_fast() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    store = open_store(f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=url)  # no network here
    for call in (
        store.check,
        lambda: store.stat("x.wav"),
        lambda: store.iter_range("x.wav"),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as caught:
            call()
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"took {elapsed:.1f}s to notice a closed port"
        assert url in caught.value.message


@pytest.mark.usefixtures("endpoint")  # for the fake credentials
def test_check_on_hung_endpoint_answers_within_probe_deadline() -> None:
    # The kernel accepts the connection into the backlog, nobody ever answers:
    # the readiness probe must give up on its own short deadline.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        store = open_store(f"s3://{BUCKET}", s3_endpoint_url=url)
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as caught:
            store.check()
        elapsed = time.monotonic() - started
    assert elapsed < 6, f"readiness probe took {elapsed:.1f}s against a hung endpoint"
    assert "timeout" in caught.value.message.lower()
