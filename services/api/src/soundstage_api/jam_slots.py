"""The jam slots of the magenta workers as they are now, for `/health` and `/metrics`."""

from __future__ import annotations

from typing import Any

from soundstage import jam_bus
from soundstage.schemas import WorkerInfo


def with_live_slots(redis: Any, workers: list[WorkerInfo]) -> list[WorkerInfo]:
    """The workers with their jam slots as they are now (the heartbeat's figures may be 10 s old): a worker
    whose slots closed (it is stopping or gone) shows none."""
    hosting = [w.hostname for w in workers if w.jam is not None]
    if not hosting:
        return workers
    live = jam_bus.live_slots(redis, hosting)
    fresh = []
    for worker in workers:
        if worker.jam is None:
            fresh.append(worker)
            continue
        jam = None
        if (slots := live.get(worker.hostname)) is not None:
            capacity, used = slots
            jam = worker.jam.model_copy(update={"capacity": capacity, "used": used, "free": max(0, capacity - used)})
        fresh.append(worker.model_copy(update={"jam": jam}))
    return fresh
