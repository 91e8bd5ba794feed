"""What the served models can do, as the workers that loaded them report it in their heartbeats.

The API loads no model, so it never guesses a model's abilities from its name: a melody model is one a
worker loaded and reported as such. Model *names* come from the settings (a job for a served model is
accepted while its workers restart); the abilities come from the live workers. When no live worker has
reported a model yet, the checks that need its abilities are left to the worker, which fails the job with
the same error code.

The heartbeats are read from Redis at most once per :data:`CACHE_SECONDS` per API process, so the checks
cost no round trip on most requests.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from soundstage.pools import Queue
from soundstage.schemas import ModelCapabilities, WorkerInfo
from soundstage.workers import list_workers

logger = logging.getLogger(__name__)

CACHE_SECONDS = 2.0


class CapabilityCache:
    """The live workers' reports, refreshed from Redis when older than CACHE_SECONDS."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._lock = threading.Lock()
        self._workers: list[WorkerInfo] = []
        self._read_at = -float("inf")

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            if time.monotonic() - self._read_at > CACHE_SECONDS:
                try:
                    self._workers = list_workers(self._redis)
                except Exception as error:  # Redis down: the enqueue that follows answers 503 anyway
                    logger.warning("capabilities: cannot read worker heartbeats: %s", error)
                    self._workers = []
                self._read_at = time.monotonic()
            return list(self._workers)

    def of(self, queue: Queue, model: str) -> ModelCapabilities | None:
        """What ``model`` of ``queue``'s pool can do, from the freshest live worker that loaded it; None when
        no live worker has."""
        for worker in sorted(self.workers(), key=lambda w: w.seen_at, reverse=True):
            if worker.queue != queue.value:
                continue
            for capabilities in worker.capabilities:
                if capabilities.model == model:
                    return capabilities
        return None

    def reported(self, queue: Queue, models: list[str]) -> dict[str, ModelCapabilities]:
        """The abilities of those of ``models`` that a live worker reported, by name."""
        known = {}
        for model in models:
            capabilities = self.of(queue, model)
            if capabilities is not None:
                known[model] = capabilities
        return known
