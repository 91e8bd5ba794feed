"""Jam sessions' Redis scripts and streams in a real Redis: a slot is claimed on the worker with the most
free slots and never past a worker's capacity (concurrent starts included), `delivered` moves on only for
the caller that read it, `consumed` only grows, event ids say which chunk they follow, and a worker's slots
vanish with its host key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from soundstage import jam_bus
from soundstage.schemas.jam import ChunkMetadata
from soundstage.schemas.jam_stream import ChunkEvent, StatusEvent
from tests.support.servers import RedisServer


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    client.flushdb()
    yield client
    client.flushdb()


def _host(redis: Any, worker: str, capacity: int) -> None:
    redis.hset(jam_bus.host_key(worker), mapping={"capacity": capacity, "models": '["random:tiny"]'})


def _claim(redis: Any, session_id: str, *workers: str) -> str | None:
    claimed = redis.eval(jam_bus.CLAIM_SLOT, 0, session_id, jam_bus.HOST_TTL_SECONDS, *workers)
    return jam_bus.as_text(claimed) if claimed else None


def test_a_slot_goes_to_the_worker_with_the_most_free_slots_and_never_past_capacity(redis: Any) -> None:
    _host(redis, "a", 1)
    _host(redis, "b", 2)
    assert _claim(redis, "s1", "a", "b") == "b"  # 2 free beats 1
    assert _claim(redis, "s2", "a", "b") in {"a", "b"}
    assert _claim(redis, "s3", "a", "b") in {"a", "b"}
    assert _claim(redis, "s4", "a", "b") is None  # 3 slots, 3 sessions: capacity
    assert redis.scard(jam_bus.held_key("a")) == 1 and redis.scard(jam_bus.held_key("b")) == 2
    assert 0 < redis.ttl(jam_bus.held_key("b")) <= jam_bus.HOST_TTL_SECONDS
    redis.srem(jam_bus.held_key("b"), "s1")  # a session ended
    assert _claim(redis, "s5", "a", "b") == "b"
    assert _claim(redis, "s6", "gone") is None  # no host key: no slots
    assert jam_bus.live_slots(redis, ["a", "b", "gone"]) == {"a": (1, 1), "b": (2, 2), "gone": None}


def test_concurrent_starts_never_take_one_slot_twice(redis: Any, redis_server: RedisServer) -> None:
    _host(redis, "a", 3)
    won: list[str] = []
    lock = threading.Lock()

    def start(index: int) -> None:
        client = redis_server.client()
        if _claim(client, f"s{index}", "a"):
            with lock:
                won.append(f"s{index}")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 3 and redis.scard(jam_bus.held_key("a")) == 3


def test_delivered_moves_on_only_from_the_value_read_and_consumed_only_grows(redis: Any) -> None:
    key = jam_bus.session_key("s")
    redis.hset(key, mapping={"delivered": 0, "consumed": 0})
    assert redis.eval(jam_bus.ADVANCE_DELIVERED, 1, key, "0", "1") == 1
    assert redis.eval(jam_bus.ADVANCE_DELIVERED, 1, key, "0", "1") == 0  # a second reader of 0 lost the race
    assert redis.hget(key, "delivered") == b"1"
    assert redis.eval(jam_bus.RAISE_CONSUMED, 1, key, "3") == 3
    assert redis.eval(jam_bus.RAISE_CONSUMED, 1, key, "2") == 3
    assert redis.hget(key, "consumed") == b"3"


def _metadata() -> ChunkMetadata:
    return ChunkMetadata(
        bpm=120,
        bpm_exact=120.0,
        bars=1,
        beats_per_bar=4,
        sample_rate=48_000,
        channels=2,
        total_samples=96_000,
        seconds_per_bar=2.0,
        loop_duration_seconds=2.0,
        guidance_weight=5.0,
        temperature=1.1,
        topk=40,
    )


def test_event_ids_say_which_chunk_they_follow(redis: Any) -> None:
    stream = jam_bus.events_key("s")
    chunk = ChunkEvent(index=1, metadata=_metadata(), generated_at=0.0, compute_seconds=1.0, lateness_seconds=0.0)
    redis.xadd(stream, jam_bus.encode_event(StatusEvent(message="before")), id=jam_bus.event_id(0, 1))
    redis.xadd(stream, jam_bus.encode_event(chunk, b"RIFF"), id=jam_bus.event_id(1, 1))
    redis.xadd(stream, jam_bus.encode_event(StatusEvent(message="after 1")), id=jam_bus.event_id(1, 2))
    redis.xadd(stream, jam_bus.encode_event(chunk.model_copy(update={"index": 2}), b"RIFF"), id=jam_bus.event_id(2, 1))
    # "everything after chunk 1": one read from 1-1, no scan from the start
    entries = redis.xread({stream: jam_bus.event_id(1, 1)})[0][1]
    decoded = [jam_bus.decode_event(fields) for _, fields in entries]
    assert [type(event).__name__ for event, _ in decoded] == ["StatusEvent", "ChunkEvent"]
    assert [jam_bus.chunk_of(entry_id) for entry_id, _ in entries] == [1, 2]
    event, audio = decoded[1]
    assert isinstance(event, ChunkEvent) and event.index == 2 and audio == b"RIFF"
