"""A submission that no live worker can serve is refused (503 ``model_unavailable``), not queued to fail.

From the workers' heartbeats (soundstage_api.capabilities: read at most every 2 s):

- the pool has **no live worker** at all (its workers restart, or start after the API): accepted, the job
  waits in the queue for one;
- a live worker of the pool **has the model loaded**: accepted;
- every live worker of the pool **failed to load it** (weights that cannot be downloaded offline, a bad
  path) or has a **device that failed its check**: 503 with the reason they reported, which the job would
  have failed with a second later;
- otherwise the model is **still loading**: 503 with ``Retry-After``.
"""

from __future__ import annotations

from soundstage.errors import AppError, ErrorCode
from soundstage.pools import Queue
from soundstage_api.capabilities import CapabilityCache

LOADING_RETRY_SECONDS = 10
"""What ``Retry-After`` says while a model is loading (a random model takes seconds, real weights minutes)."""


def require_servable(capabilities: CapabilityCache, queue: Queue, model: str) -> None:
    """503 ``model_unavailable`` when the live workers of ``queue``'s pool cannot serve ``model``."""
    live = [worker for worker in capabilities.workers() if worker.queue == queue.value]
    if not live or any(model in worker.models_loaded and not worker.device_error for worker in live):
        return
    reasons = [
        worker.device_error or worker.load_errors[model]
        for worker in live
        if worker.device_error or model in worker.load_errors
    ]
    if len(reasons) == len(live):
        raise AppError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"Model {model!r} cannot be served: no worker could load it. {reasons[0]}",
            status_code=503,
        )
    raise AppError(
        ErrorCode.MODEL_UNAVAILABLE,
        f"Model {model!r} is still loading on its workers; try again in a few seconds.",
        status_code=503,
        headers={"Retry-After": str(LOADING_RETRY_SECONDS)},
    )
