"""`soundstage-worker-probe ready|alive <queue>`: health probe of a worker container; exit 0 = pass.

Every worker process publishes a heartbeat entry in Redis (soundstage.workers) every 10 s with a
30 s TTL, from the moment it starts loading its models; its `hostname` is
f"{socket.gethostname()}:{pid}", and inside a pod (or a container) the host name is the pod's
(container's) name. The probe runs in the same container, so it finds this host's entries by
that prefix.

- ready: this host has a fresh entry on <queue>, and every fresh entry has all its models loaded
  (`model_loaded`). A worker still downloading weights, or whose model failed to load, is not
  ready.
- alive: this host has an entry on <queue> seen in the last 30 s. If Redis itself cannot be
  reached the probe passes: restarting the worker would not bring Redis back, and the worker's
  heartbeat resumes by itself once it returns.

Used by the worker Deployments' exec probes (deploy/kubernetes) and the worker image's
HEALTHCHECK (`alive`). What it prints ends up in the probe's log (`kubectl describe pod`,
`docker inspect`).
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError

from soundstage.settings import Settings
from soundstage.workers import TTL_SECONDS, list_workers

PROG = "soundstage-worker-probe"
MODES = ("ready", "alive")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in MODES:
        print(f"usage: {PROG} ready|alive <queue>", file=sys.stderr)
        return 2
    mode, queue = args
    prefix = f"{socket.gethostname()}:"
    try:
        redis = Redis.from_url(Settings().require_redis_url(), socket_connect_timeout=3, socket_timeout=3)
        try:
            workers = list_workers(redis)
        finally:
            redis.close()
    except (RedisError, OSError) as error:
        print(f"redis unreachable: {error}")
        return 0 if mode == "alive" else 1
    now = datetime.now(UTC)
    fresh = [
        worker
        for worker in workers
        if worker.queue == queue
        and worker.hostname.startswith(prefix)
        and now - _aware(worker.seen_at) < timedelta(seconds=TTL_SECONDS)
    ]
    if not fresh:
        print(f"no heartbeat from {prefix}* on queue {queue!r} in the last {TTL_SECONDS} s")
        return 1
    if mode == "alive":
        return 0
    missing = [worker for worker in fresh if not worker.model_loaded]
    for worker in missing:
        print(f"{worker.hostname}: models not loaded ({worker.load_error or 'loading'})")
    broken = [worker for worker in fresh if worker.device_error]
    for worker in broken:
        print(f"{worker.hostname}: {worker.device_error}")
    return 1 if missing or broken else 0


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
