"""Fleet-wide job metrics and the live worker registry, both kept in a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from soundstage import telemetry, workers
from soundstage.schemas import WorkerInfo
from tests.support.servers import RedisServer

KIND = "generate"
MODEL = "facebook/musicgen-small"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis[Any]]:
    """A client on the session's Redis, emptied first so counts start at zero."""
    with redis_server.client() as connection:
        connection.flushall()
        yield connection


# ----------------------------------------------------------------- counters


def test_empty_redis_gives_an_empty_snapshot(client: redis.Redis[Any]) -> None:
    snapshot = telemetry.read_snapshot(client)
    assert snapshot.counters == {}
    assert set(snapshot.histograms) == {telemetry.JOB_DURATION, telemetry.QUEUE_WAIT, telemetry.JAM_LATENESS}
    for name, histogram in snapshot.histograms.items():
        assert histogram.bounds == telemetry.BUCKETS[name]
        assert histogram.series == {}


def test_jam_chunks_are_counted_with_their_lateness_and_late_ones_as_underruns(client: redis.Redis[Any]) -> None:
    telemetry.record_jam_chunk(client, "random:tiny", 0.0)
    telemetry.record_jam_chunk(client, "random:tiny", 0.0)
    telemetry.record_jam_chunk(client, "random:tiny", 0.3)
    snapshot = telemetry.read_snapshot(client)
    assert snapshot.counters[telemetry.JAM_CHUNKS] == {("random:tiny",): 3.0}
    assert snapshot.counters[telemetry.JAM_UNDERRUNS] == {("random:tiny",): 1.0}
    lateness = snapshot.histograms[telemetry.JAM_LATENESS]
    counts, total = lateness.series[(telemetry.JAM_KIND, "random:tiny")]
    assert counts[0] == 2 and sum(counts) == 3 and total == pytest.approx(0.3)  # two in time (le 0), one late


def test_submitted_jobs_are_counted_per_kind_and_model(client: redis.Redis[Any]) -> None:
    telemetry.record_submitted(client, KIND, MODEL)
    telemetry.record_submitted(client, KIND, MODEL)
    telemetry.record_submitted(client, KIND, "random:tiny")

    counters = telemetry.read_snapshot(client).counters
    assert counters == {telemetry.SUBMITTED: {(KIND, MODEL): 2.0, (KIND, "random:tiny"): 1.0}}


def test_finished_jobs_are_counted_by_outcome_and_error_code(client: redis.Redis[Any]) -> None:
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="completed", duration_s=4.0, audio_s=10.0)
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="completed", duration_s=6.0, audio_s=2.5)
    telemetry.record_finished(
        client, kind=KIND, model=MODEL, outcome="failed", duration_s=3.0, error_code="worker_lost"
    )
    telemetry.record_finished(
        client, kind=KIND, model=MODEL, outcome="failed", duration_s=None, error_code="model_unavailable"
    )
    telemetry.record_finished(
        client, kind=KIND, model=MODEL, outcome="failed", duration_s=1.0, error_code="worker_lost"
    )
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="cancelled", duration_s=None)

    counters = telemetry.read_snapshot(client).counters
    assert counters == {
        telemetry.COMPLETED: {(KIND, MODEL, ""): 2.0},
        telemetry.FAILED: {(KIND, MODEL, "worker_lost"): 2.0, (KIND, MODEL, "model_unavailable"): 1.0},
        telemetry.CANCELLED: {(KIND, MODEL, ""): 1.0},
        telemetry.AUDIO_SECONDS: {(KIND, MODEL): 12.5},
    }


def test_only_completed_jobs_enter_the_duration_histogram(client: redis.Redis[Any]) -> None:
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="failed", duration_s=7.0, error_code="x")
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="cancelled", duration_s=7.0)
    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="completed", duration_s=None)
    assert telemetry.read_snapshot(client).histograms[telemetry.JOB_DURATION].series == {}

    telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="completed", duration_s=7.0)
    counts, total = telemetry.read_snapshot(client).histograms[telemetry.JOB_DURATION].series[(KIND, MODEL)]
    assert sum(counts) == 1
    assert total == pytest.approx(7.0)


def test_separator_in_a_label_cannot_split_the_labels(client: redis.Redis[Any]) -> None:
    telemetry.record_submitted(client, KIND, "org|model")
    telemetry.record_started(client, KIND, "org|model", wait_s=0.2)

    snapshot = telemetry.read_snapshot(client)
    assert snapshot.counters == {telemetry.SUBMITTED: {(KIND, "org/model"): 1.0}}
    assert set(snapshot.histograms[telemetry.QUEUE_WAIT].series) == {(KIND, "org/model")}


# --------------------------------------------------------------- histograms


def test_queue_wait_bucket_placement(client: redis.Redis[Any]) -> None:
    bounds = telemetry.BUCKETS[telemetry.QUEUE_WAIT]
    assert (bounds[0], bounds[1], bounds[-1]) == (0.01, 0.05, 3600)
    waits = [
        0.0,  # below the first bound: first bucket
        0.01,  # exactly on the first bound: that bucket (le is inclusive)
        0.02,  # between 0.01 and 0.05: the 0.05 bucket
        0.05,  # exactly on the second bound
        3600.0,  # exactly on the last bound: the last finite bucket
        3600.5,  # above the last bound: +Inf
        86400.0,  # far above: +Inf
    ]
    for wait in waits:
        telemetry.record_started(client, KIND, MODEL, wait_s=wait)

    histogram = telemetry.read_snapshot(client).histograms[telemetry.QUEUE_WAIT]
    counts, total = histogram.series[(KIND, MODEL)]
    expected = [0] * (len(bounds) + 1)
    expected[0] = 2  # 0.0 and 0.01
    expected[1] = 2  # 0.02 and 0.05
    expected[len(bounds) - 1] = 1  # 3600
    expected[len(bounds)] = 2  # 3600.5 and 86400 in +Inf
    assert counts == expected
    assert total == pytest.approx(sum(waits))


def test_cumulative_buckets_count_everything_at_or_below_each_bound(client: redis.Redis[Any]) -> None:
    durations = [0.5, 1.0, 1.5, 45.0, 3600.0, 5000.0]
    for duration in durations:
        telemetry.record_finished(client, kind=KIND, model=MODEL, outcome="completed", duration_s=duration)

    histogram = telemetry.read_snapshot(client).histograms[telemetry.JOB_DURATION]
    cumulative = histogram.cumulative((KIND, MODEL))
    labels = [label for label, _ in cumulative]
    assert labels == [*map(str, telemetry.BUCKETS[telemetry.JOB_DURATION]), "+Inf"]
    by_bound = dict(cumulative)
    assert by_bound["0.5"] == 1.0  # 0.5
    assert by_bound["1"] == 2.0  # + 1.0
    assert by_bound["2"] == 3.0  # + 1.5
    assert by_bound["30"] == 3.0
    assert by_bound["60"] == 4.0  # + 45
    assert by_bound["1800"] == 4.0
    assert by_bound["3600"] == 5.0  # + 3600 exactly on the last bound
    assert by_bound["+Inf"] == float(len(durations))  # + 5000
    values = [value for _, value in cumulative]
    assert values == sorted(values)
    _, total = histogram.series[(KIND, MODEL)]
    assert total == pytest.approx(sum(durations))


def test_histogram_series_are_kept_apart_per_kind_and_model(client: redis.Redis[Any]) -> None:
    telemetry.record_started(client, KIND, MODEL, wait_s=0.3)
    telemetry.record_started(client, KIND, MODEL, wait_s=0.4)
    telemetry.record_started(client, KIND, "random:tiny", wait_s=20.0)
    telemetry.record_started(client, "separate", MODEL, wait_s=0.001)

    series = telemetry.read_snapshot(client).histograms[telemetry.QUEUE_WAIT].series
    assert set(series) == {(KIND, MODEL), (KIND, "random:tiny"), ("separate", MODEL)}
    assert sum(series[(KIND, MODEL)][0]) == 2
    assert series[(KIND, MODEL)][1] == pytest.approx(0.7)
    assert sum(series[(KIND, "random:tiny")][0]) == 1
    assert series[(KIND, "random:tiny")][1] == pytest.approx(20.0)
    assert series[("separate", MODEL)][0][0] == 1


# ---------------------------------------------------------- worker registry


def _worker(hostname: str, queue: str = "musicgen", **changes: Any) -> WorkerInfo:
    info = WorkerInfo(
        hostname=hostname,
        queue=queue,
        model=MODEL,
        device="cpu",
        gpu_available=False,
        random_weights=False,
        model_loaded=True,
        seen_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return info.model_copy(update=changes)


def test_no_workers_registered(client: redis.Redis[Any]) -> None:
    assert workers.list_workers(client) == []


def test_published_worker_is_listed_and_expires(client: redis.Redis[Any]) -> None:
    info = _worker("host-a", load_error=None)
    workers.publish(client, info)

    assert workers.list_workers(client) == [info]
    ttl = client.ttl(f"{workers.KEY_PREFIX}musicgen:host-a")
    assert 0 < ttl <= workers.TTL_SECONDS


def test_publishing_again_replaces_the_entry_and_renews_the_ttl(client: redis.Redis[Any]) -> None:
    key = f"{workers.KEY_PREFIX}musicgen:host-a"
    workers.publish(client, _worker("host-a", model_loaded=False))
    client.expire(key, 5)  # as if most of the TTL had passed

    refreshed = _worker("host-a", model_loaded=True, device="cuda", gpu_available=True)
    workers.publish(client, refreshed)

    assert workers.list_workers(client) == [refreshed]
    assert 5 < client.ttl(key) <= workers.TTL_SECONDS


def test_workers_are_listed_in_key_order_and_other_keys_are_ignored(client: redis.Redis[Any]) -> None:
    telemetry.record_submitted(client, KIND, MODEL)  # a soundstage key that is not a worker
    failed = _worker("host-b", model_loaded=False, load_error="no network")
    second = _worker("host-a", queue="musicgen")
    first = _worker("host-z", queue="demucs")
    for info in (failed, second, first):
        workers.publish(client, info)

    assert workers.list_workers(client) == [first, second, failed]


def test_removed_worker_is_no_longer_listed(client: redis.Redis[Any]) -> None:
    kept = _worker("host-a")
    gone = _worker("host-b")
    workers.publish(client, kept)
    workers.publish(client, gone)

    workers.remove(client, "musicgen", "host-b")

    assert workers.list_workers(client) == [kept]
    assert client.exists(f"{workers.KEY_PREFIX}musicgen:host-b") == 0
    workers.remove(client, "musicgen", "host-b")  # removing twice is harmless
    assert workers.list_workers(client) == [kept]
