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
        await pipe.execute()
        return await self._started(session_id)

    async def _started(self, session_id: str) -> StartedEvent:
        deadline = asyncio.get_running_loop().time() + START_WAIT_SECONDS
        async for entry in self.follow(session_id, "0-0", deadline=deadline):
            if isinstance(entry.event, StartedEvent):
                return entry.event
            if isinstance(entry.event, ErrorEvent) and entry.event.fatal:
                raise failure(entry.event)
            if isinstance(entry.event, StoppedEvent):
                break
        await self.send(session_id, StopControl(reason="it did not start in time"))
        raise AppError(
            ErrorCode.SERVICE_UNAVAILABLE, "The jam session could not be started; try again.", status_code=503
        )

    # -- reading --------------------------------------------------------------------------------------------

    async def record(self, session_id: str) -> SessionRecord | None:
        raw = await self.redis.hgetall(jam_bus.session_key(session_id))
        return SessionRecord(session_id, jam_bus.record_fields(raw)) if raw else None

    async def read(self, session_id: str, after: str, block_seconds: float) -> list[Entry]:
        """The entries after id ``after``, waiting up to ``block_seconds`` for one (0: no wait)."""
        block = max(1, int(block_seconds * 1000)) if block_seconds > 0 else None
        answer = await self.redis.xread({jam_bus.events_key(session_id): after}, count=16, block=block)
        entries = []
        for _, items in answer or []:
            for entry_id, fields in items:
                event, audio = jam_bus.decode_event(fields)
                entries.append(Entry(str(jam_bus.as_text(entry_id)), event, audio))
        return entries

    async def follow(self, session_id: str, after: str, *, deadline: float) -> AsyncIterator[Entry]:
        """The entries after ``after`` as they come, until ``deadline`` (the loop's clock); ends with a
        `worker_lost` error and stop when the worker holding the session stops refreshing its lease."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline - loop.time()) > 0:
            entries = await self.read(session_id, after, min(remaining, jam_bus.LEASE_REFRESH_SECONDS))
            for entry in entries:
                after = entry.id
                yield entry
            if not entries and not await self.worker_alive(session_id):
                for lost in await self.lost(session_id):
                    yield lost
                return

    async def worker_alive(self, session_id: str) -> bool:
        """Whether the session's worker still holds it (an ended or unknown session counts as alive: nothing
        is lost)."""
        if await self.redis.exists(jam_bus.worker_lease_key(session_id)):
            return True
        record = await self.record(session_id)
        if record is None or record.ended:
            return True
        # A session just claimed may not have reached its worker yet: its host must still be there then.
        if record.fields.get("state") == "starting":
            return bool(await self.redis.exists(jam_bus.host_key(record.fields.get("worker", ""))))
        return False

    async def lost(self, session_id: str) -> list[Entry]:
        """End a session whose worker died (its lease lapsed): the error and stop events a worker would
        have written, for whoever follows it."""
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
            Entry("", StoppedEvent(reason=message, code=ErrorCode.WORKER_LOST.value, last_index=last), None),
        ]

    async def take_chunk(self, session_id: str, timeout: float) -> tuple[ChunkEvent, bytes] | None:
        """The chunk after the last one delivered, marked delivered (never to two callers), waiting up to
        ``timeout`` seconds; None when none came. 404 `session_ended` once the session ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = await self.record(session_id)
            if record is None:
                raise not_found(session_id)
            if record.ended:
                raise session_ended(record)
            delivered = record.index("delivered")
            after = jam_bus.event_id(delivered, 1) if delivered else "0-0"
            remaining = deadline - loop.time()
            entries = await self.read(session_id, after, min(max(remaining, 0.0), jam_bus.LEASE_REFRESH_SECONDS))
            chunk = next((e for e in entries if isinstance(e.event, ChunkEvent)), None)
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
            if not entries and not await self.worker_alive(session_id):
                await self.lost(session_id)
                continue
            if remaining <= 0:
                return None

    # -- writing --------------------------------------------------------------------------------------------

    async def send(self, session_id: str, control: JamControl) -> None:
        key = jam_bus.control_key(session_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(key, {"control": CONTROL.dump_json(control)}, maxlen=256, approximate=True)
        pipe.expire(key, jam_bus.SESSION_TTL_SECONDS)
        await pipe.execute()

    async def consume(self, session_id: str, index: int) -> int:
        """Record chunk ``index`` consumed (it only ever grows) and wake the worker; the consumed index now."""
        consumed = await self.redis.eval(  # type: ignore[misc,no-untyped-call]
            jam_bus.RAISE_CONSUMED, 1, jam_bus.session_key(session_id), str(index)
        )
        await self.send(session_id, ConsumeControl(index=index))
        return int(consumed)

    async def mark_delivered(self, session_id: str, index: int) -> None:
        """A relay sent chunk ``index`` to its client."""
        await self.redis.hset(jam_bus.session_key(session_id), "delivered", index)

    async def touch(self, session_id: str, seconds: float) -> None:
        """The client is there: its lease runs ``seconds`` more."""
        await self.redis.set(jam_bus.client_lease_key(session_id), "1", ex=max(1, round(seconds)))

    async def stop(self, session_id: str, reason: str) -> None:
        """End the session for its client at once (the worker finishes the chunk it is making, then frees
        the slot)."""
        await self.send(session_id, StopControl(reason=reason))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(jam_bus.session_key(session_id), mapping={"state": "ended", "end_reason": reason})
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
        """Stop every running session of ``owner`` (``everyone``: of all owners); the ids stopped."""
        ids = await (self.every_session() if everyone else self.owned(owner))
        stopped = []
        for session_id in ids:
            record = await self.record(session_id)
            if record is not None and not record.ended and (everyone or record.owner == owner):
                await self.stop(session_id, reason)
                stopped.append(session_id)
        return stopped
