"""Live worker registry in Redis: what each worker serves, on which device, and whether its model loaded.

A worker refreshes its entry every few seconds with a short TTL, so a dead worker
disappears by itself; the API's `/health` reads the entries without asking the workers.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from soundstage.db.models import utcnow
from soundstage.schemas.system import WorkerInfo

KEY_PREFIX = "soundstage:workers:"
TTL_SECONDS = 30
REFRESH_SECONDS = 10

logger = logging.getLogger(__name__)


def publish(redis: Any, info: WorkerInfo) -> None:
    redis.set(f"{KEY_PREFIX}{info.queue}:{info.hostname}", info.model_dump_json(), ex=TTL_SECONDS)


def remove(redis: Any, queue: str, hostname: str) -> None:
    redis.delete(f"{KEY_PREFIX}{queue}:{hostname}")


def list_workers(redis: Any) -> list[WorkerInfo]:
    keys = sorted(redis.scan_iter(match=f"{KEY_PREFIX}*", count=200))
    if not keys:
        return []
    workers = []
    for raw in redis.mget(keys):
        if raw is not None:
            workers.append(WorkerInfo.model_validate(json.loads(raw)))
    return workers


class Heartbeat:
    """Background thread that keeps a worker's registry entry fresh until stopped, and runs ``after_beat``
    (the reaper's sweep) after each beat: one loop per process for everything periodic."""

    def __init__(
        self, redis: Any, describe: Callable[[], WorkerInfo], after_beat: Callable[[], object] | None = None
    ) -> None:
        self._redis = redis
        self._describe = describe
        self._after_beat = after_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soundstage-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        if self._stop.is_set():  # stopped: its entry is gone, and must stay gone
            return
        try:
            info = self._describe().model_copy(update={"seen_at": utcnow()})
            publish(self._redis, info)
        except Exception:  # the broker may be down for a while; keep trying
            logger.warning("worker heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        try:
            info = self._describe()
            remove(self._redis, info.queue, info.hostname)
        except Exception:
            logger.debug("could not remove worker entry", exc_info=True)

    def _run(self) -> None:
        while True:
            self.beat()
            if self._after_beat is not None:
                try:
                    self._after_beat()
                except Exception:  # the database or Redis is away for a moment: the next beat tries again
                    logger.warning("periodic task after the heartbeat failed", exc_info=True)
            if self._stop.wait(REFRESH_SECONDS):
                return
