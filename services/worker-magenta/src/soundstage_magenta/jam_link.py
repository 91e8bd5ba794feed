"""One jam session's side of Redis on the worker holding it (soundstage.jam_bus): its events out, its
controls in, its window (what its client consumed), and its end."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from soundstage import jam_bus
from soundstage.schemas.jam_stream import CONTROL, JamControl, JamEvent

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)


class SessionLink:
    def __init__(self, redis: Redis[bytes], session_id: str) -> None:
        self._redis = redis
        self.session_id = session_id
        self._record = jam_bus.session_key(session_id)
        self._events = jam_bus.events_key(session_id)
        self._control = jam_bus.control_key(session_id)
        self._after_chunk = 0
        self._sequence = 1  # `0-1` is the first id a stream takes
        self._control_cursor = "0"

    def emit(self, event: JamEvent, audio: bytes | None = None, *, chunk: int | None = None) -> None:
        """Append ``event`` (chunk ``chunk`` with its WAV ``audio``, or an event after the last chunk)."""
        if chunk is not None:
            self._after_chunk, self._sequence = chunk, 1
        else:
            self._sequence += 1
        entry = jam_bus.event_id(self._after_chunk, self._sequence)
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._events, jam_bus.encode_event(event, audio), id=entry)  # type: ignore[arg-type]
        pipe.expire(self._events, jam_bus.SESSION_TTL_SECONDS)
        pipe.execute()

    def trim(self, keep_from_chunk: int) -> None:
        """Drop the entries before chunk ``keep_from_chunk`` (delivered and consumed: nobody reads them again)."""
        if keep_from_chunk > 1:
            self._redis.xtrim(self._events, minid=jam_bus.event_id(keep_from_chunk, 0))

    def controls(self, block_seconds: float) -> list[JamControl]:
        """The controls sent since the last call, waiting up to ``block_seconds`` for the first (0: no wait).
        One that does not parse is logged and skipped (the API only sends valid ones)."""
        block = max(1, int(block_seconds * 1000)) if block_seconds > 0 else None
        answer = self._redis.xread({self._control: self._control_cursor}, count=32, block=block)
        parsed: list[JamControl] = []
        for _, entries in answer or []:
            for entry_id, fields in entries:
                self._control_cursor = jam_bus.as_text(entry_id) or self._control_cursor
                raw = fields.get(b"control")
                try:
                    parsed.append(CONTROL.validate_json(raw or b""))
                except ValidationError:
                    logger.warning("jam %s: skipping a control that does not parse", self.session_id)
        return parsed

    def window(self) -> tuple[int, int]:
        """(consumed, delivered): the chunks the client consumed and the API delivered."""
        consumed, delivered = self._redis.hmget(self._record, ["consumed", "delivered"])
        return _index(consumed), _index(delivered)

    def client_present(self) -> bool:
        return bool(self._redis.exists(jam_bus.client_lease_key(self.session_id)))

    def begin_running(self, worker: str) -> bool:
        """`starting` becomes `running`; False when the session was ended during its start."""
        return bool(self._redis.eval(jam_bus.START_RUNNING, 1, self._record, worker))  # type: ignore[no-untyped-call]

    def update(self, **fields: str | int | float) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._record, mapping=fields)  # type: ignore[arg-type]
        for key in jam_bus.session_keys(self.session_id):
            pipe.expire(key, jam_bus.SESSION_TTL_SECONDS)
        pipe.execute()

    def end(self, **fields: str | int | float) -> None:
        """Mark the session ended (why: ``fields``), keep its keys ENDED_TTL_SECONDS, drop the worker lease."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._record, mapping={"state": "ended", **fields})  # type: ignore[arg-type,dict-item]
        for key in jam_bus.session_keys(self.session_id):
            pipe.expire(key, jam_bus.ENDED_TTL_SECONDS)
        pipe.delete(jam_bus.worker_lease_key(self.session_id))
        pipe.execute()


def _index(raw: bytes | None) -> int:
    """A chunk index as stored (digits; 0 when unset or unreadable)."""
    try:
        return int(raw or 0)
    except ValueError:
        return 0
