"""Prometheus collector: fleet-wide job metrics from Redis, job counts from the database."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from soundstage import telemetry
from soundstage.pools import Queue
from soundstage.queue import queue_key
from soundstage.schemas import WorkerInfo
from soundstage.workers import list_workers
from soundstage_api.jam_slots import with_live_slots
from soundstage_api.state import AppState

logger = logging.getLogger(__name__)

_COUNTERS = {
    telemetry.SUBMITTED: ("Jobs accepted by the API.", ["kind", "model"]),
    telemetry.COMPLETED: ("Jobs that completed.", ["kind", "model"]),
    telemetry.FAILED: ("Jobs that failed.", ["kind", "model", "error_code"]),
    telemetry.CANCELLED: ("Jobs that were cancelled.", ["kind", "model"]),
    telemetry.AUDIO_SECONDS: ("Seconds of audio produced.", ["kind", "model"]),
    telemetry.JAM_CHUNKS: ("Jam chunks made.", ["model"]),
    telemetry.JAM_UNDERRUNS: ("Jam chunks ready after their playback deadline.", ["model"]),
}
_HISTOGRAMS = {
    telemetry.JOB_DURATION: "Time a worker spent on a completed job.",
    telemetry.QUEUE_WAIT: "Time from submission until a worker started the job.",
    telemetry.JAM_LATENESS: "How long after its playback deadline a jam chunk was ready (0: in time).",
}


class SoundstageCollector(Collector):
    def __init__(self, state: AppState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._from_redis()
        yield from self._from_database()

    def _from_redis(self) -> Iterator[Metric]:
        redis = self._state.redis
        try:
            snapshot = telemetry.read_snapshot(redis)
            depths = {queue: int(redis.llen(queue_key(queue))) for queue in Queue}
            workers = list_workers(redis)
        except Exception as error:
            logger.warning("metrics: Redis unavailable: %s", error)
            return
        for name, (doc, labels) in _COUNTERS.items():
            family = CounterMetricFamily(f"soundstage_{name.removesuffix('_total')}", doc, labels=labels)
            for label_values, value in snapshot.counters.get(name, {}).items():
                family.add_metric(list(label_values)[: len(labels)], value)
            yield family
        for name, doc in _HISTOGRAMS.items():
            histogram = snapshot.histograms[name]
            histogram_family = HistogramMetricFamily(f"soundstage_{name}", doc, labels=["kind", "model"])
            for key, (_, total) in histogram.series.items():
                histogram_family.add_metric(list(key), histogram.cumulative(key), total)
            yield histogram_family
        depth = GaugeMetricFamily("soundstage_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
        live = GaugeMetricFamily("soundstage_workers", "Live workers per queue.", labels=["queue"])
        for queue in Queue:
            depth.add_metric([queue.value], depths[queue])
            live.add_metric([queue.value], sum(1 for w in workers if w.queue == queue.value))
        yield depth
        yield live
        yield self._jam_slots(workers)

    def _jam_slots(self, workers: list[WorkerInfo]) -> Metric:
        slots = GaugeMetricFamily(
            "soundstage_jam_slots", "Jam slots of each magenta worker, used and free.", labels=["worker", "state"]
        )
        for worker in with_live_slots(self._state.redis, workers):
            if worker.jam is not None:
                slots.add_metric([worker.hostname, "used"], worker.jam.used)
                slots.add_metric([worker.hostname, "free"], worker.jam.free)
        return slots

    def _from_database(self) -> Iterator[Metric]:
        try:
            counts = self._state.repo.count_by_status()
        except Exception as error:
            logger.warning("metrics: database unavailable: %s", error)
            return
        family = GaugeMetricFamily("soundstage_jobs", "Jobs in the database by status.", labels=["status"])
        for status, count in sorted(counts.items()):
            family.add_metric([status], count)
        yield family
