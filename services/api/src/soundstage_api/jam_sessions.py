"""The API's side of jam sessions (soundstage.jam_bus), for the HTTP jam routes and the WebSocket: claim a
slot and start a session on the worker that has it, read its events, send it controls, keep its client's
lease. Asynchronous Redis, on a pool of its own: a `next` that waits 30 s holds a connection, not a thread.

Whoever holds the client's connection relays; any API replica can serve any call of any session, since all
of a session's state is in Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from soundstage import jam_bus
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.jam_stream import (
    CONTROL,
    ChunkEvent,
    ConsumeControl,
    ErrorEvent,
    JamControl,
    JamEvent,
    JamStart,
    StartedEvent,
    StopControl,
    StoppedEvent,
)

logger = logging.getLogger(__name__)

START_WAIT_SECONDS = 60.0
"""How long a start waits for its worker to set the session up (embed the styles, encode the loop)."""
ENDED_GRACE_READS = 3
"""Quiet reads (a second each) a follower of an ended session waits for its worker's `stopped`."""
CAPACITY_RETRY_AFTER = 10
"""`Retry-After` of a start refused for capacity: about a chunk (a session may end in the meantime)."""
CLIENT_ERRORS = frozenset(
    {
        ErrorCode.STEERING_UNAVAILABLE,
        ErrorCode.AUDIO_UNDECODABLE,
        ErrorCode.AUDIO_EMPTY,
        ErrorCode.AUDIO_TOO_LONG,
        ErrorCode.AUDIO_TOO_LARGE,
        ErrorCode.AUDIO_REQUIRED,
        ErrorCode.UNKNOWN_MODEL,
        ErrorCode.CHECKPOINT_INVALID,
        ErrorCode.UNKNOWN_CHECKPOINT_STEP,
        ErrorCode.CHECKPOINT_REPO_NOT_FOUND,
        ErrorCode.VALIDATION_ERROR,
    }
)
"""Codes of a session's failure that the request caused (422); any other is the server's (503)."""


@dataclass(frozen=True)
class Entry:
    """One entry of a session's event stream."""

    id: str
    event: JamEvent
    audio: bytes | None


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    fields: dict[str, str]

    @property
    def owner(self) -> str | None:
        return self.fields.get("owner") or None

    @property
    def ended(self) -> bool:
        return self.fields.get("state") == "ended"

    def index(self, name: str) -> int:
        return int(self.fields.get(name) or 0)

    @property
    def params(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.fields.get("params") or "{}")
        return loaded


def session_ended(record: SessionRecord) -> AppError:
    reason = record.fields.get("end_reason") or "it was stopped"
    code = record.fields.get("end_code") or None
    return AppError(
        ErrorCode.SESSION_ENDED,
        f"Jam session {record.session_id!r} has ended: {reason}.",
        status_code=404,
        details={"reason": reason, "code": code},
    )


def not_found(session_id: str) -> AppError:
    return AppError(ErrorCode.SESSION_NOT_FOUND, f"No jam session {session_id!r}.", status_code=404)


def failure(event: ErrorEvent) -> AppError:
    """A session's failure at its start, as an answer: 422 when the request caused it, else 503."""
    client = event.code in {code.value for code in CLIENT_ERRORS}
    try:
        code = ErrorCode(event.code)
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    return AppError(code, event.message, status_code=422 if client else 503)


class JamSessions:
    def __init__(self, redis_url: str, max_connections: int) -> None:
        # Blocking: past max_connections a call waits (up to 10 s) for a free connection instead of failing.
        self._pool: redis.asyncio.BlockingConnectionPool[Any] = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=10, socket_connect_timeout=2, socket_timeout=40
        )
        self.redis = redis.asyncio.Redis(connection_pool=self._pool)

    async def aclose(self) -> None:
        await self._pool.disconnect()

    # -- starting -------------------------------------------------------------------------------------------

    async def hosts(self, model: str) -> list[str]:
        """The live workers that host jams of ``model``."""
        names = []
        async for key in self.redis.scan_iter(match=jam_bus.HOST_PATTERN, count=200):
            worker = str(jam_bus.as_text(key)).removeprefix(jam_bus.host_key(""))
            models = await self.redis.hget(key, "models")
            if models is not None and model in json.loads(models):
                names.append(worker)
        return names

    async def start(self, start: JamStart, *, idle_seconds: float) -> StartedEvent:
        """Claim a slot for ``start`` and wait until its worker has set the session up. 503 `model_unavailable`
        with no worker hosting jams of its model, 429 `capacity` when all their slots are taken."""
        hosts = await self.hosts(start.model)
        if not hosts:
            raise AppError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"No magenta worker hosting jams of {start.model!r} is up (MAGENTA_SESSIONS_PER_WORKER > 0).",
                status_code=503,
            )
        session_id = start.session_id
        claimed = await self.redis.eval(  # type: ignore[misc,no-untyped-call]
            jam_bus.CLAIM_SLOT, 0, session_id, jam_bus.HOST_TTL_SECONDS, *hosts
        )
        if not claimed:
            raise AppError(
                ErrorCode.CAPACITY,
                f"Every jam slot is taken ({len(hosts)} worker(s)); try again shortly.",
                status_code=429,
                headers={"Retry-After": str(CAPACITY_RETRY_AFTER)},
                details={"workers": len(hosts)},
            )
        worker = str(jam_bus.as_text(claimed))
        record = {
            "owner": start.owner or "",
            "worker": worker,
            "model": start.model,
            "state": "starting",
            "params": start.params.model_dump_json(),
            "pace": start.pace.value,
            "generated": 0,
            "delivered": 0,
            "consumed": 0,
            "created_at": time.time(),
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(jam_bus.session_key(session_id), mapping=record)  # type: ignore[arg-type]
        pipe.expire(jam_bus.session_key(session_id), jam_bus.SESSION_TTL_SECONDS)
        pipe.sadd(jam_bus.owner_key(start.owner), session_id)
        pipe.expire(jam_bus.owner_key(start.owner), jam_bus.SESSION_TTL_SECONDS)
        pipe.set(jam_bus.client_lease_key(session_id), "1", ex=max(1, round(idle_seconds)))
        pipe.xadd(jam_bus.inbox_key(worker), {"start": start.model_dump_json()})
        pipe.expire(jam_bus.inbox_key(worker), jam_bus.SESSION_TTL_SECONDS)  # never a key without a TTL
        await pipe.execute()
        return await self._started(session_id, idle_seconds)

    async def _started(self, session_id: str, idle_seconds: float) -> StartedEvent:
        deadline = asyncio.get_running_loop().time() + START_WAIT_SECONDS
        async for entry in self.follow(session_id, "0-0", deadline=deadline):
            await self.touch(session_id, idle_seconds)  # the client is waiting: its lease must not lapse
            if isinstance(entry.event, StartedEvent):
                return entry.event
            if isinstance(entry.event, ErrorEvent) and entry.event.fatal:
                raise failure(entry.event)
            if isinstance(entry.event, StoppedEvent):
                break
        await self.stop(session_id, "it did not start in time")
        raise AppError(
            ErrorCode.SERVICE_UNAVAILABLE, "The jam session could not be started; try again.", status_code=503
        )

    # -- reading --------------------------------------------------------------------------------------------

    async def record(self, session_id: str) -> SessionRecord | None:
        raw = await self.redis.hgetall(jam_bus.session_key(session_id))
        return SessionRecord(session_id, jam_bus.record_fields(raw)) if raw else None

    async def read(self, session_id: str, after: str, block_seconds: float, count: int = 16) -> list[Entry]:
        """The entries after id ``after``, waiting up to ``block_seconds`` for one (0: no wait)."""
        block = max(1, int(block_seconds * 1000)) if block_seconds > 0 else None
        answer = await self.redis.xread({jam_bus.events_key(session_id): after}, count=count, block=block)
        entries = []
        for _, items in answer or []:
            for entry_id, fields in items:
                event, audio = jam_bus.decode_event(fields)
                entries.append(Entry(str(jam_bus.as_text(entry_id)), event, audio))
        return entries

    async def follow(self, session_id: str, after: str, *, deadline: float) -> AsyncIterator[Entry]:
        """The entries after ``after`` as they come, until ``deadline`` (the loop's clock) or the session's
        `stopped`. A session whose worker stopped refreshing its lease ends with a `worker_lost` error and
        `stopped`; one that ended without its worker writing `stopped` (it died after the end was asked for),
        or whose keys are gone, ends with a `stopped` made here: a follower never waits forever."""
        loop = asyncio.get_running_loop()
        quiet = 0
        while (remaining := deadline - loop.time()) > 0:
            entries = await self.read(session_id, after, min(remaining, jam_bus.LEASE_REFRESH_SECONDS))
            for entry in entries:
                after = entry.id
                yield entry
                if isinstance(entry.event, StoppedEvent):
                    return
            if entries:
                quiet = 0
                continue
            quiet += 1
            ending = await self._without_worker(session_id, quiet)
            if ending is not None:
                for entry in ending:
                    yield entry
                return

    async def _without_worker(self, session_id: str, quiet: int) -> list[Entry] | None:
        """What ends a follow that heard nothing for ``quiet`` reads, or None to go on: the worker is there,
        or a session just claimed is still on its way to it."""
        if await self.redis.exists(jam_bus.worker_lease_key(session_id)):
            return None
        record = await self.record(session_id)
        if record is None:
            return [self._stopped("The session is gone.", None, 0)]
        if record.ended:
            if quiet < ENDED_GRACE_READS:  # its worker may be writing `stopped` now
                return None
            code = record.fields.get("end_code") or None
            return [self._stopped(record.fields.get("end_reason") or "it ended", code, record.index("generated"))]
        if record.fields.get("state") == "starting" and await self.redis.exists(
            jam_bus.host_key(record.fields.get("worker", ""))
        ):
            return None
        return await self.lost(session_id)

    @staticmethod
    def _stopped(reason: str, code: str | None, last: int) -> Entry:
        return Entry("", StoppedEvent(reason=reason, code=code, last_index=last), None)

    async def lost(self, session_id: str) -> list[Entry]:
        """End a session whose worker died (its lease lapsed): the error and stop events a worker would
        have written, for whoever follows it; its stored uploads go."""
        record = await self.record(session_id)
        if record is None or record.ended:
            return []
        message = "The worker holding this jam stopped answering; start a new jam."
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            jam_bus.session_key(session_id),
            mapping={"state": "ended", "end_reason": message, "end_code": ErrorCode.WORKER_LOST.value},
        )
        for key in jam_bus.session_keys(session_id):
            pipe.expire(key, jam_bus.ENDED_TTL_SECONDS)
        await pipe.execute()
        logger.warning("jam %s: its worker %s is gone", session_id, record.fields.get("worker"))
        last = record.index("generated")
        return [
            Entry("", ErrorEvent(code=ErrorCode.WORKER_LOST.value, message=message, fatal=True), None),
            self._stopped(message, ErrorCode.WORKER_LOST.value, last),
        ]

    async def take_chunk(self, session_id: str, timeout: float) -> tuple[ChunkEvent, bytes] | None:
        """The chunk after the last one delivered, marked delivered (never to two callers), waiting up to
        ``timeout`` seconds; None when none came. 404 `session_ended` once the session ended (a session whose
        worker died still hands out the chunks it made first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = await self.record(session_id)
            if record is None:
                raise not_found(session_id)
            if record.ended and record.fields.get("end_code") != ErrorCode.WORKER_LOST.value:
                raise session_ended(record)
            delivered = record.index("delivered")
            remaining = max(0.0, deadline - loop.time())
            # Entries after chunk d are `d-2`, `d-3`, ... (status, error), then chunk d+1 is `(d+1)-1`: a read
            # from the largest id of chunk d skips the others and waits for exactly the next chunk.
            block = 0.0 if record.ended else min(remaining, jam_bus.LEASE_REFRESH_SECONDS)
            entries = await self.read(session_id, jam_bus.last_id_of(delivered), block, count=1)
            chunk = entries[0] if entries else None
            if chunk is not None and isinstance(chunk.event, ChunkEvent) and chunk.audio is not None:
                moved = await self.redis.eval(  # type: ignore[misc,no-untyped-call]
                    jam_bus.ADVANCE_DELIVERED,
                    1,
                    jam_bus.session_key(session_id),
                    str(delivered),
                    str(chunk.event.index),
                )
                if moved:
                    return chunk.event, chunk.audio
                continue  # another call took it: the next one is ours
            if record.ended:
                raise session_ended(record)
            if await self._without_worker(session_id, ENDED_GRACE_READS) is not None:
                continue  # it ended (the record now says how): answered above
            if remaining <= 0:
                return None

    # -- writing --------------------------------------------------------------------------------------------

    async def send(self, session_id: str, control: JamControl) -> None:
        key = jam_bus.control_key(session_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(key, {"control": CONTROL.dump_json(control)}, maxlen=256, approximate=True)
        pipe.expire(key, jam_bus.SESSION_TTL_SECONDS)
        await pipe.execute()

    async def consume(self, record: SessionRecord, index: int) -> int:
        """Record chunk ``index`` consumed (it only ever grows) and wake the worker; the consumed index now.
        422 `validation_error` for a chunk not made yet (it would open the window past what exists)."""
        newest = record.index("generated")
        if index > newest:
            message = f"chunk {index} has not been made yet (the newest is {newest})."
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                message,
                status_code=422,
                details=[{"loc": ["body", "chunk_index"], "msg": message, "type": "value_error"}],
            )
        session_id = record.session_id
        consumed = await self.redis.eval(  # type: ignore[misc,no-untyped-call]
            jam_bus.RAISE_CONSUMED, 1, jam_bus.session_key(session_id), str(index)
        )
        await self.send(session_id, ConsumeControl(index=index, at=time.time()))
        return int(consumed)

    async def mark_delivered(self, session_id: str, index: int) -> None:
        """A relay sent chunk ``index`` to its client."""
        await self.redis.eval(  # type: ignore[misc,no-untyped-call]
            jam_bus.SET_IF_EXISTS, 1, jam_bus.session_key(session_id), "delivered", str(index)
        )

    async def touch(self, session_id: str, seconds: float) -> None:
        """The client is there: its lease runs ``seconds`` more."""
        await self.redis.set(jam_bus.client_lease_key(session_id), "1", ex=max(1, round(seconds)))

    async def stop(self, session_id: str, reason: str) -> None:
        """End the session for its client at once (the worker finishes the chunk it is making, then frees
        the slot)."""
        await self.send(session_id, StopControl(reason=reason))
        pipe = self.redis.pipeline(transaction=False)
        pipe.eval(jam_bus.END_IF_EXISTS, 1, jam_bus.session_key(session_id), reason)
        pipe.delete(jam_bus.client_lease_key(session_id))
        await pipe.execute()

    async def owned(self, owner: str | None) -> list[str]:
        members = await self.redis.smembers(jam_bus.owner_key(owner))  # type: ignore[misc]
        return sorted(str(jam_bus.as_text(member)) for member in members)

    async def every_session(self) -> list[str]:
        prefix = jam_bus.session_key("")
        return sorted(
            [
                str(jam_bus.as_text(key)).removeprefix(prefix)
                async for key in self.redis.scan_iter(match=f"{prefix}*", count=500)
            ]
        )

    async def active(self) -> bool:
        """Whether any jam holds a slot of a live worker now."""
        async for key in self.redis.scan_iter(match=jam_bus.HOST_PATTERN, count=200):
            worker = str(jam_bus.as_text(key)).removeprefix(jam_bus.host_key(""))
            if await self.redis.scard(jam_bus.held_key(worker)):  # type: ignore[misc]
                return True
        return False

    async def stop_running(self, reason: str, owner: str | None = None, *, everyone: bool) -> list[str]:
        """Stop every running session of ``owner`` (``everyone``: of all owners); the ids stopped. Sessions
        whose keys expired leave the owner's set."""
        ids = await (self.every_session() if everyone else self.owned(owner))
        stopped = []
        for session_id in ids:
            record = await self.record(session_id)
            if record is None:
                await self.redis.srem(jam_bus.owner_key(owner), session_id)  # type: ignore[misc]
                continue
            if not record.ended and (everyone or record.owner == owner):
                await self.stop(session_id, reason)
                stopped.append(session_id)
        return stopped
