"""Job metrics aggregated in Redis, so that every API replica reports the whole fleet.

Workers and API processes on different hosts record events here with a few atomic
HINCRBY calls; the API's `/metrics` collector turns the totals into Prometheus
counters and histograms. (prometheus-client's multiprocess mode only covers processes
sharing one host's folder, which our separate worker pods do not.)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

COUNTERS_KEY = "soundstage:metrics:counters"
HISTOGRAM_KEY = "soundstage:metrics:hist:{name}"

JOB_DURATION = "job_duration_seconds"
QUEUE_WAIT = "job_queue_wait_seconds"
JAM_LATENESS = "jam_chunk_lateness_seconds"

BUCKETS: dict[str, tuple[float, ...]] = {
    JOB_DURATION: (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
    QUEUE_WAIT: (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
    JAM_LATENESS: (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
}

SUBMITTED = "jobs_submitted_total"
COMPLETED = "jobs_completed_total"
FAILED = "jobs_failed_total"
CANCELLED = "jobs_cancelled_total"
AUDIO_SECONDS = "generated_audio_seconds_total"
JAM_CHUNKS = "jam_chunks_total"
JAM_UNDERRUNS = "jam_underruns_total"
JAM_KIND = "jam"

_SEP = "|"


def _field(*parts: str) -> str:
    return _SEP.join(part.replace(_SEP, "/") for part in parts)


def record_submitted(redis: Any, kind: str, model: str) -> None:
    redis.hincrby(COUNTERS_KEY, _field(SUBMITTED, kind, model), 1)


def record_started(redis: Any, kind: str, model: str, wait_s: float) -> None:
    _observe(redis.pipeline(transaction=False), QUEUE_WAIT, kind, model, wait_s).execute()


def record_finished(
    redis: Any,
    *,
    kind: str,
    model: str,
    outcome: str,
    duration_s: float | None,
    audio_s: float = 0.0,
    error_code: str = "",
) -> None:
    """Count a finished job. `outcome` is `completed`, `failed` or `cancelled`."""
    pipe = redis.pipeline(transaction=False)
    counter = {"completed": COMPLETED, "failed": FAILED, "cancelled": CANCELLED}[outcome]
    pipe.hincrby(COUNTERS_KEY, _field(counter, kind, model, error_code), 1)
    if audio_s:
        pipe.hincrbyfloat(COUNTERS_KEY, _field(AUDIO_SECONDS, kind, model), audio_s)
    if duration_s is not None and outcome == "completed":
        _observe(pipe, JOB_DURATION, kind, model, duration_s)
    pipe.execute()


def record_jam_chunk(redis: Any, model: str, lateness_s: float) -> None:
    """Count a jam chunk, its lateness against its playback deadline, and an underrun when it was late."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(COUNTERS_KEY, _field(JAM_CHUNKS, model), 1)
    if lateness_s > 0:
        pipe.hincrby(COUNTERS_KEY, _field(JAM_UNDERRUNS, model), 1)
    _observe(pipe, JAM_LATENESS, JAM_KIND, model, lateness_s)
    pipe.execute()


def _observe(pipe: Any, name: str, kind: str, model: str, value: float) -> Any:
    key = HISTOGRAM_KEY.format(name=name)
    index = bisect.bisect_left(BUCKETS[name], value)  # first bucket with le >= value
    pipe.hincrby(key, _field(kind, model, str(index)), 1)
    pipe.hincrbyfloat(key, _field(kind, model, "sum"), value)
    return pipe


@dataclass
class HistogramSnapshot:
    bounds: tuple[float, ...]
    # (kind, model) -> (per-bucket counts incl. +Inf as last, sum)
    series: dict[tuple[str, str], tuple[list[int], float]] = field(default_factory=dict)

    def cumulative(self, key: tuple[str, str]) -> list[tuple[str, float]]:
        counts, _ = self.series[key]
        running, out = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class MetricsSnapshot:
    # counter name -> {label tuple: value}
    counters: dict[str, dict[tuple[str, ...], float]]
    histograms: dict[str, HistogramSnapshot]


def read_snapshot(redis: Any) -> MetricsSnapshot:
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(COUNTERS_KEY)
    for name in BUCKETS:
        pipe.hgetall(HISTOGRAM_KEY.format(name=name))
    raw_counters, *raw_histograms = pipe.execute()
    counters: dict[str, dict[tuple[str, ...], float]] = {}
    for raw_field, raw_value in raw_counters.items():
        name, *labels = _text(raw_field).split(_SEP)
        counters.setdefault(name, {})[tuple(labels)] = float(_text(raw_value))
    histograms = {name: _parse_histogram(name, raw) for name, raw in zip(BUCKETS, raw_histograms, strict=True)}
    return MetricsSnapshot(counters=counters, histograms=histograms)


def _parse_histogram(name: str, raw: dict[Any, Any]) -> HistogramSnapshot:
    bounds = BUCKETS[name]
    snapshot = HistogramSnapshot(bounds=bounds)
    for raw_field, raw_value in raw.items():
        kind, model, slot = _text(raw_field).split(_SEP)
        counts, total = snapshot.series.get((kind, model), ([0] * (len(bounds) + 1), 0.0))
        if slot == "sum":
            total = float(_text(raw_value))
        else:
            counts[int(slot)] += int(_text(raw_value))
        snapshot.series[(kind, model)] = (counts, total)
    return snapshot


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
