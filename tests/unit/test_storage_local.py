"""The local-folder object store and the name/content-type rules every store shares."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soundstage.errors import ErrorCode
from soundstage.storage import (
    ObjectNotFoundError,
    ObjectStore,
    StorageUnavailableError,
    StoredObject,
    content_type_for,
    open_store,
    validate_object_name,
)
from soundstage.storage.local import LocalObjectStore

DATA = bytes(range(256)) * 40  # 10,240 bytes, every byte value, easy to slice

BAD_NAMES = [
    "../x",
    "a/b",
    "..",
    ".",
    ".hidden",
    "%2e%2e%2fetc",
    "",
    "x" * 300,
    "x\\y",
    "x\x00",
    "/etc/passwd",
    "a\nb",
    "caf\u00e9.wav",
    "x.wav\n",
]


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store(str(tmp_path / "store"))


def _files(root: Path) -> list[str]:
    return sorted(os.listdir(root))


def test_open_store_picks_local_for_paths_and_file_urls(tmp_path: Path) -> None:
    plain = open_store(str(tmp_path / "plain"))
    from_url = open_store(f"file://{tmp_path}/from%20url")
    assert isinstance(plain, LocalObjectStore) and plain.kind == "local"
    assert isinstance(from_url, LocalObjectStore)
    assert from_url.root == tmp_path / "from url"
    assert (tmp_path / "plain").is_dir() and (tmp_path / "from url").is_dir()


@pytest.mark.parametrize("url", ["", "gs://bucket/x", "http://example.com/x", "s3://"])
def test_open_store_refuses_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_put_bytes_round_trip_and_stat(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    written = store.put_bytes("take-1.wav", DATA)
    assert written == store.stat("take-1.wav")
    assert written.name == "take-1.wav"
    assert written.size == len(DATA)
    assert written.content_type == "audio/wav"
    assert written.modified.tzinfo is not None
    assert written.modified.utcoffset() == timedelta(0)
    assert before <= written.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert written.etag
    assert store.read_bytes("take-1.wav") == DATA


def test_put_file_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "render.flac"
    source.write_bytes(DATA * 20)
    written = store.put_file("job-42.flac", source)
    assert written.size == len(DATA) * 20
    assert written.content_type == "audio/flac"
    assert store.read_bytes("job-42.flac") == DATA * 20
    assert source.exists()  # the caller's file is copied, not moved


def test_put_file_with_missing_source_is_the_callers_error(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file("x.wav", tmp_path / "nope.wav")


def test_empty_object(store: ObjectStore) -> None:
    assert store.put_bytes("empty.json", b"").size == 0
    assert store.read_bytes("empty.json") == b""
    assert list(store.iter_range("empty.json")) == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, DATA),
        (100, None, DATA[100:]),
        (100, 199, DATA[100:200]),
        (len(DATA) - 1, None, DATA[-1:]),
        (len(DATA) - 1, len(DATA) - 1, DATA[-1:]),
        (0, 0, DATA[:1]),
        (10, len(DATA) + 500, DATA[10:]),  # clipped to the object
        (len(DATA), None, b""),  # starts past the end
    ],
)
def test_iter_range(store: ObjectStore, start: int, end: int | None, expected: bytes) -> None:
    store.put_bytes("r.bin", DATA)
    assert b"".join(store.iter_range("r.bin", start, end)) == expected


def test_iter_range_chunks_across_boundaries(store: ObjectStore) -> None:
    store.put_bytes("r.bin", DATA)
    chunks = list(store.iter_range("r.bin", 1000, 3499, chunk_size=1024))
    assert [len(c) for c in chunks] == [1024, 1024, 452]
    assert b"".join(chunks) == DATA[1000:3500]
    whole = list(store.iter_range("r.bin", chunk_size=4096))
    assert [len(c) for c in whole] == [4096, 4096, 2048]


@pytest.mark.parametrize(("start", "end", "chunk"), [(-1, None, 10), (5, 4, 10), (0, None, 0)])
def test_iter_range_refuses_nonsense(store: ObjectStore, start: int, end: int | None, chunk: int) -> None:
    store.put_bytes("r.bin", DATA)
    with pytest.raises(ValueError):
        store.iter_range("r.bin", start, end, chunk_size=chunk)


def test_missing_object_raises_before_streaming(store: ObjectStore) -> None:
    # iter_range must raise on the call, not on first next(): the API has to
    # know before it starts a 200/206 response.
    for call in (
        lambda: store.stat("nope.wav"),
        lambda: store.iter_range("nope.wav"),
        lambda: store.read_bytes("nope.wav"),
    ):
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert caught.value.code is ErrorCode.FILE_NOT_FOUND
        assert caught.value.status_code == 404


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("gone.wav", b"abc")
    store.delete("gone.wav")
    with pytest.raises(ObjectNotFoundError):
        store.stat("gone.wav")
    store.delete("gone.wav")  # missing is fine


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_not_found_everywhere(store: ObjectStore, tmp_path: Path, name: str) -> None:
    source = tmp_path / "src.wav"
    source.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
        lambda: validate_object_name(name),
        lambda: store.put_bytes(name, b"x"),
        lambda: store.put_file(name, source),
        lambda: store.stat(name),
        lambda: store.iter_range(name),
        lambda: store.read_bytes(name),
        lambda: store.delete(name),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert caught.value.status_code == 404
    assert _files(tmp_path / "store") == []


@pytest.mark.parametrize("name", ["a", "job-1.wav", "A_b.c-d.json", "-x", "x" * 255, "a..b"])
def test_good_names(name: str) -> None:
    assert validate_object_name(name) == name


def test_symlink_leaving_the_root_is_not_found(store: ObjectStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    os.symlink(secret, tmp_path / "store" / "link.wav")
    with pytest.raises(ObjectNotFoundError):
        store.stat("link.wav")
    with pytest.raises(ObjectNotFoundError):
        store.read_bytes("link.wav")


def test_a_folder_is_not_an_object(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "store" / "dir.wav").mkdir()
    with pytest.raises(ObjectNotFoundError):
        store.stat("dir.wav")
    with pytest.raises(ObjectNotFoundError):
        store.iter_range("dir.wav")


def test_overwrite_replaces_whole_and_leaves_no_temp_files(store: ObjectStore, tmp_path: Path) -> None:
    first = store.put_bytes("take.wav", DATA)
    second = store.put_bytes("take.wav", DATA[::-1])
    assert store.read_bytes("take.wav") == DATA[::-1]
    assert first.etag != second.etag  # same size, maybe same mtime tick: still new
    assert _files(tmp_path / "store") == ["take.wav"]


def test_reader_keeps_the_version_it_opened(store: ObjectStore) -> None:
    store.put_bytes("take.wav", b"old-" * 100)
    reader = store.iter_range("take.wav", chunk_size=4)
    assert next(reader) == b"old-"
    store.put_bytes("take.wav", b"new!" * 100)
    assert b"".join(reader) == b"old-" * 99
    assert store.read_bytes("take.wav") == b"new!" * 100


def test_failed_write_keeps_old_object_and_cleans_up(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("take.wav", b"good")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageUnavailableError) as caught:
        store.put_bytes("take.wav", b"half")
    assert caught.value.code is ErrorCode.STORAGE_UNAVAILABLE
    assert caught.value.status_code == 503
    assert "No space left" in caught.value.message
    monkeypatch.undo()
    assert store.read_bytes("take.wav") == b"good"
    assert _files(tmp_path / "store") == ["take.wav"]


def test_check_passes_on_a_writable_folder(store: ObjectStore, tmp_path: Path) -> None:
    store.check()
    assert _files(tmp_path / "store") == []


def test_check_recreates_a_removed_root(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    (tmp_path / "store").rmdir()
    store.check()
    assert (tmp_path / "store").is_dir()


def test_unwritable_root_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    # A path under a regular file can never be a folder, even for root (the
    # tests run as root, so permission bits would prove nothing).
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    store = open_store(str(blocker / "store"))  # must not raise: check() reports it
    with pytest.raises(StorageUnavailableError) as caught:
        store.check()
    assert str(blocker / "store") in caught.value.message
    assert caught.value.status_code == 503
    with pytest.raises(StorageUnavailableError):
        store.put_bytes("x.wav", b"x")
    with pytest.raises(ObjectNotFoundError):
        store.stat("x.wav")  # nothing can be there
    store.delete("x.wav")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.wav", "audio/wav"),
        ("a.WAV", "audio/wav"),
        ("a.flac", "audio/flac"),
        ("a.mp3", "audio/mpeg"),
        ("a.ogg", "audio/ogg"),
        ("a.m4a", "audio/mp4"),
        ("job.json", "application/json"),
        ("a.bin", "application/octet-stream"),
        ("wav", "application/octet-stream"),
        ("a.tar.gz", "application/octet-stream"),
    ],
)
def test_content_type_for(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


def test_stored_object_is_frozen() -> None:
    obj = StoredObject("a.wav", 1, "audio/wav", datetime.now(UTC), None)
    with pytest.raises(AttributeError):
        obj.size = 2  # type: ignore[misc]
