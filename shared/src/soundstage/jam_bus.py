"""The Redis side of jam sessions: where sessions, slots and their streams live, and the scripts that change
them atomically. The worker uses it through a synchronous client, the API through an asynchronous one; the
key names, scripts and encodings are defined here once for both.

- **Slots.** Each magenta worker that hosts sessions keeps ``host:<worker>`` (its capacity, a hash) and
  ``held:<worker>`` (the sessions holding its slots, a set) alive with a TTL of HOST_TTL_SECONDS, refreshed
  every second: a dead worker's slots vanish with it. The API claims a slot with CLAIM_SLOT (the worker with
  the most free slots, in one script, so two starts never take the last slot twice), then writes the start
  request to that worker's ``inbox:<worker>`` stream.
- **A session** is ``session:<id>`` (a hash: owner, worker, params, state, the generated / delivered /
  consumed chunk indexes, why it ended), ``events:<id>`` (worker to API: started, chunk, status, error,
  stopped) and ``control:<id>`` (API to worker: update, consume, reseed, stop).
- **Event ids say where they are**: chunk k is entry ``k-1``; what comes after it before chunk k+1 is
  ``k-2``, ``k-3``, ...; so "everything after chunk d" is an XREAD from ``d-1``, without scanning the stream.
- **Leases.** ``worker:<id>`` (refreshed each second by the worker holding the session; gone: the worker
  died) and ``client:<id>`` (refreshed by the API while its client is there: every HTTP call, an open socket;
  gone: the session is abandoned, and its worker ends it and frees the slot).
"""

from __future__ import annotations

from typing import Any

from soundstage.schemas.jam_stream import EVENT, JamEvent

PREFIX = "soundstage:jam:"
HOST_TTL_SECONDS = 5
"""A worker's slots stay claimable this long after its last refresh (it refreshes every LEASE_REFRESH)."""
LEASE_REFRESH_SECONDS = 1.0
WORKER_LEASE_SECONDS = 5
"""A session whose worker has not refreshed its lease this long is lost (the worker died)."""
SESSION_TTL_SECONDS = 3600
"""A session's keys are kept this long after its last change (a running session changes every chunk)."""
ENDED_TTL_SECONDS = 600
"""An ended session's keys are kept this long, so that its client is told it ended (not that it is unknown)."""
EVENT_FIELD = b"event"
AUDIO_FIELD = b"audio"


def host_key(worker: str) -> str:
    return f"{PREFIX}host:{worker}"


def held_key(worker: str) -> str:
    return f"{PREFIX}held:{worker}"


def inbox_key(worker: str) -> str:
    return f"{PREFIX}inbox:{worker}"


def session_key(session_id: str) -> str:
    return f"{PREFIX}session:{session_id}"


def events_key(session_id: str) -> str:
    return f"{PREFIX}events:{session_id}"


def control_key(session_id: str) -> str:
    return f"{PREFIX}control:{session_id}"


def worker_lease_key(session_id: str) -> str:
    return f"{PREFIX}worker:{session_id}"


def client_lease_key(session_id: str) -> str:
    return f"{PREFIX}client:{session_id}"


def owner_key(owner: str | None) -> str:
    """The set of an owner's sessions (`stop_all`); ``-`` while auth is off."""
    return f"{PREFIX}owner:{owner or '-'}"


HOST_PATTERN = f"{PREFIX}host:*"


def session_keys(session_id: str) -> list[str]:
    return [session_key(session_id), events_key(session_id), control_key(session_id)]


CLAIM_SLOT = """
-- KEYS: none (the worker names come as ARGV: one Redis, not a cluster)
-- ARGV[1]: session id; ARGV[2]: held-set TTL; ARGV[3..]: candidate worker names
-- The candidate with the most free slots gets the session; false when none has one.
local best, best_free = false, 0
for i = 3, #ARGV do
  local worker = ARGV[i]
  local capacity = tonumber(redis.call('HGET', 'soundstage:jam:host:' .. worker, 'capacity') or '0')
  local free = capacity - redis.call('SCARD', 'soundstage:jam:held:' .. worker)
  if free > best_free then best, best_free = worker, free end
end
if best then
  redis.call('SADD', 'soundstage:jam:held:' .. best, ARGV[1])
  redis.call('EXPIRE', 'soundstage:jam:held:' .. best, tonumber(ARGV[2]))
end
return best
"""

ADVANCE_DELIVERED = """
-- KEYS[1]: session hash; ARGV[1]: the delivered index read; ARGV[2]: the new one
-- Moves `delivered` on only if nobody else did since it was read (two `next` calls never get one chunk).
if redis.call('HGET', KEYS[1], 'delivered') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'delivered', ARGV[2])
  return 1
end
return 0
"""

RAISE_CONSUMED = """
-- KEYS[1]: session hash; ARGV[1]: a consumed index (digits). `consumed` only ever grows, and only on a
-- session that exists (an expired one is not brought back as a hash without a TTL).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(redis.call('HGET', KEYS[1], 'consumed') or '0')
if tonumber(ARGV[1]) > now then redis.call('HSET', KEYS[1], 'consumed', ARGV[1]) return tonumber(ARGV[1]) end
return now
"""

SET_IF_EXISTS = """
-- KEYS[1]: session hash; ARGV[1], ARGV[2]: a field and its value, set only on a session that exists.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""

END_IF_EXISTS = """
-- KEYS[1]: session hash; ARGV[1]: why. Marks an existing session ended (the client sees it at once).
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'ended', 'end_reason', ARGV[1])
end
return 0
"""

START_RUNNING = """
-- KEYS[1]: session hash; ARGV[1]: the worker. `starting` becomes `running`; a session ended meanwhile
-- (stopped during its start) stays ended. Returns 1 when it runs.
if redis.call('HGET', KEYS[1], 'state') == 'starting' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1])
  return 1
end
return 0
"""


def event_id(after_chunk: int, sequence: int) -> str:
    """The stream id of an entry: chunk k is ``k-1``; the n-th entry after it ``k-(n+1)`` (see the module)."""
    return f"{after_chunk}-{sequence}"


MAX_SEQUENCE = 18446744073709551615
"""The largest sequence number of a stream id: ``last_id_of(d)`` is after every entry of chunk d."""


def last_id_of(chunk: int) -> str:
    """The id after every entry that follows chunk ``chunk`` and before chunk ``chunk + 1``."""
    return f"{chunk}-{MAX_SEQUENCE}"


def encode_event(event: JamEvent, audio: bytes | None = None) -> dict[bytes, bytes]:
    fields = {EVENT_FIELD: EVENT.dump_json(event)}
    if audio is not None:
        fields[AUDIO_FIELD] = audio
    return fields


def decode_event(fields: dict[Any, Any]) -> tuple[JamEvent, bytes | None]:
    raw = fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.decode()))
    audio = fields.get(AUDIO_FIELD, fields.get(AUDIO_FIELD.decode()))
    return EVENT.validate_json(raw or b""), audio


def chunk_of(entry_id: bytes | str) -> int:
    """The chunk an event id comes after (or is)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def as_text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def record_fields(raw: dict[Any, Any]) -> dict[str, str]:
    """A session hash as text."""
    return {str(as_text(key)): str(as_text(value)) for key, value in raw.items()}


def live_slots(redis: Any, workers: list[str]) -> dict[str, tuple[int, int] | None]:
    """(capacity, claimed) of each worker's jam slots as they are now; None for a worker whose slots are
    closed (not loaded yet, stopping, or gone: its host key lapsed)."""
    pipe = redis.pipeline(transaction=False)
    for worker in workers:
        pipe.hget(host_key(worker), "capacity")
        pipe.scard(held_key(worker))
    answers = pipe.execute()
    live: dict[str, tuple[int, int] | None] = {}
    for index, worker in enumerate(workers):
        capacity, claimed = answers[2 * index], answers[2 * index + 1]
        live[worker] = None if capacity is None else (int(capacity), int(claimed))
    return live
