"""The jam sessions of one magenta worker: MAGENTA_SESSIONS_PER_WORKER slots, each a thread of its own
with its own stream on the shared model, beside (never inside) the Celery job pool.

Sessions reach the worker through its Redis inbox, not through the Celery queue: a start must not wait
behind queued jobs, and the API must know at once whether a slot is free (it claims one with
``jam_bus.CLAIM_SLOT`` before writing the start request), so that a full house is a 429, never a silent
queue. The host keeps its slots claimable (``host:`` and ``held:`` keys, refreshed every second) only once
its models are loaded, and refreshes the lease of every session it holds; when the worker stops, each
session ends with `worker_stopping`, and if the process dies, its leases lapse and the API ends its
sessions with `worker_lost`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from soundstage import jam_bus
from soundstage.errors import ErrorCode
from soundstage.schemas.jam_stream import JamStart
from soundstage.schemas.system import JamSlots, SessionSlot
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine
from soundstage_magenta.jam_link import SessionLink
from soundstage_magenta.jam_runner import JamRunner

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

STRAY_CLAIM_SECONDS = 10.0
"""A slot claimed for a session whose start never arrived is freed after this long."""
STOP_WAIT_SECONDS = 10.0
"""How long a stopping worker waits for its sessions to end."""


class JamHost:
    def __init__(
        self,
        redis: Redis[bytes],
        *,
        hostname: str,
        capacity: int,
        max_ahead: int,
        engine_for: Callable[[str], MagentaEngine],
        models: Callable[[], list[str]],
        store: ObjectStore,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_change`` runs when a session starts or ends (the heartbeat: `/health` shows the slots at once)."""
        self._redis = redis
        self._on_change = on_change
        self.hostname = hostname
        self.capacity = capacity
        self._max_ahead = max_ahead
        self._engine_for = engine_for
        self._models = models
        self._store = store
        self._runners: dict[str, JamRunner] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()  # no new sessions
        self._closed = threading.Event()  # its sessions ended: the leases stop too
        self._strays: dict[str, float] = {}
        self._inbox_cursor = "0"
        self.underruns = 0
        self.chunks = 0

    def start(self) -> None:
        """Open the slots (the models are loaded): the refresher and the inbox reader start."""
        if self.capacity <= 0:
            return
        self._refresh()
        threading.Thread(target=self._refresh_loop, name="soundstage-jam-leases", daemon=True).start()
        threading.Thread(target=self._inbox_loop, name="soundstage-jam-inbox", daemon=True).start()

    def stop(self) -> None:
        """Close the slots and end every session (`worker_stopping`), waiting a little for each."""
        self._stop.set()
        try:
            self._redis.delete(jam_bus.host_key(self.hostname), jam_bus.inbox_key(self.hostname))
        except Exception:
            logger.debug("jam host: could not remove its slots", exc_info=True)
        with self._lock:  # _begin checks _stop under the same lock: no session starts after this
            runners, threads = list(self._runners.values()), list(self._threads.values())
        for runner in runners:
            runner.request_stop("the worker is stopping", ErrorCode.WORKER_STOPPING.value)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Leases were refreshed until now, so that the API hears `worker_stopping`, not `worker_lost`.
        self._closed.set()

    def describe(self) -> JamSlots:
        with self._lock:
            runners = list(self._runners.values())
        return JamSlots(
            capacity=self.capacity,
            used=len(runners),
            free=max(0, self.capacity - len(runners)),
            chunks=self.chunks + sum(r.figures.chunks for r in runners),
            underruns=self.underruns + sum(r.figures.underruns for r in runners),
            sessions=[
                SessionSlot(
                    session_id=r.session_id,
                    model=r.start.model,
                    pace=r.start.pace.value,
                    chunks=r.figures.chunks,
                    underruns=r.figures.underruns,
                    max_lateness_seconds=round(r.figures.max_lateness, 4),
                    first_chunk_seconds=r.figures.first_chunk_seconds,
                    real_time_factor=r.figures.real_time_factor(r.start.params.chunk_seconds),
                )
                for r in runners
            ],
        )

    # -- threads --------------------------------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while not self._closed.wait(jam_bus.LEASE_REFRESH_SECONDS):
            try:
                self._refresh()
            except Exception:  # Redis away for a moment: the next refresh tries again
                logger.warning("jam host: could not refresh its slots", exc_info=True)

    def _refresh(self) -> None:
        with self._lock:
            held = list(self._runners)
        pipe = self._redis.pipeline(transaction=False)
        host = jam_bus.host_key(self.hostname)
        if not self._stop.is_set():  # a stopping worker's slots stay closed; its sessions' leases go on
            fields = {"capacity": self.capacity, "models": json.dumps(self._models()), "used": len(held)}
            pipe.hset(host, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(host, jam_bus.HOST_TTL_SECONDS)
            pipe.expire(jam_bus.held_key(self.hostname), jam_bus.HOST_TTL_SECONDS)
            pipe.expire(jam_bus.inbox_key(self.hostname), jam_bus.SESSION_TTL_SECONDS)
        for session_id in held:
            pipe.set(jam_bus.worker_lease_key(session_id), self.hostname, ex=jam_bus.WORKER_LEASE_SECONDS)
        pipe.smembers(jam_bus.held_key(self.hostname))
        claimed = pipe.execute()[-1]
        self._free_strays({jam_bus.as_text(member) or "" for member in claimed} - set(held))

    def _free_strays(self, unstarted: set[str]) -> None:
        """Free the slots claimed for starts that never came (the API died between the claim and the start)."""
        now = time.monotonic()
        for session_id in unstarted:
            first = self._strays.setdefault(session_id, now)
            if now - first > STRAY_CLAIM_SECONDS:
                self._redis.srem(jam_bus.held_key(self.hostname), session_id)
                self._strays.pop(session_id, None)
        for session_id in set(self._strays) - unstarted:
            self._strays.pop(session_id, None)

    def _inbox_loop(self) -> None:
        inbox = jam_bus.inbox_key(self.hostname)
        while not self._stop.is_set():
            try:
                answer = self._redis.xread({inbox: self._inbox_cursor}, count=8, block=1000)
                for _, entries in answer or []:
                    for entry_id, fields in entries:
                        self._inbox_cursor = jam_bus.as_text(entry_id) or self._inbox_cursor
                        self._redis.xdel(inbox, entry_id)
                        self._begin(fields.get(b"start") or b"")
            except Exception:  # Redis away for a moment: the loop goes on (its slots stay open)
                logger.warning("jam host: cannot read its inbox", exc_info=True)
                self._stop.wait(1.0)

    def _begin(self, raw: bytes) -> None:
        try:
            start = JamStart.model_validate_json(raw)
        except ValidationError:
            logger.warning("jam host: skipping a start request that does not parse")
            return
        runner = JamRunner(
            start,
            engine_for=self._engine_for,
            store=self._store,
            link=SessionLink(self._redis, start.session_id),
            redis=self._redis,
            hostname=self.hostname,
            max_ahead=self._max_ahead,
        )
        thread = threading.Thread(target=self._run, args=(runner,), name=f"soundstage-jam-{start.session_id[:8]}")
        with self._lock:
            if self._stop.is_set() or start.session_id in self._runners:
                return
            self._runners[start.session_id] = runner
            self._threads[start.session_id] = thread
        try:
            self._redis.set(jam_bus.worker_lease_key(start.session_id), self.hostname, ex=jam_bus.WORKER_LEASE_SECONDS)
            thread.start()
        except Exception:
            with self._lock:  # never a registered session without a thread: its slot would be lost
                self._runners.pop(start.session_id, None)
                self._threads.pop(start.session_id, None)
            raise
        self._on_change()

    def _run(self, runner: JamRunner) -> None:
        try:
            runner.run()
        finally:
            with self._lock:
                self._runners.pop(runner.session_id, None)
                self._threads.pop(runner.session_id, None)
                self.chunks += runner.figures.chunks
                self.underruns += runner.figures.underruns
            try:
                self._redis.srem(jam_bus.held_key(self.hostname), runner.session_id)
            except Exception:  # the held set expires with the host's refresh if Redis is away
                logger.warning("jam %s: could not free its slot", runner.session_id, exc_info=True)
            self._on_change()
