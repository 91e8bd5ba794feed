"""Which keys the API accepts, and what each may do: the environment's keys (API_KEY, API_KEYS,
ADMIN_API_KEYS) and the keys stored hashed in the database (``soundstage keys create``).

Looking a stored key up is one indexed query; its answer (found or not) is kept KEY_CACHE_SECONDS, so a
new key works and a revoked one stops within that time, and a flood of requests costs the database one
query per key and period. Auth is on when the environment names a key or the database holds one (revoked
ones count: revoking the last key never opens the API).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from soundstage.db import ApiKeyStore
from soundstage.keys import ALL_SCOPES, ENV_KEY_SCOPES, Scope, effective, hash_key, owner_of
from soundstage.settings import Settings

CACHED_KEYS = 10_000  # lookups remembered at most (wrong keys too: a flood of them cannot grow memory)


@dataclass(frozen=True)
class Caller:
    """A valid key: whose jobs its submissions become and what it may do."""

    owner: str  # soundstage.keys.owner_of(key)
    scopes: frozenset[Scope]
    key_id: str | None = None  # a stored key's id; None for the environment's keys

    @property
    def admin(self) -> bool:
        return Scope.ADMIN in self.scopes


class KeyRing:
    def __init__(self, settings: Settings, store: ApiKeyStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._env: list[tuple[bytes, frozenset[Scope]]] = [
            (key.encode(), ENV_KEY_SCOPES)
            for key in settings.accepted_api_keys
            if key not in settings.accepted_admin_keys
        ] + [(key.encode(), ALL_SCOPES) for key in settings.accepted_admin_keys]
        self._store = store
        self._ttl = settings.key_cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._found: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()
        self._stored_any: tuple[float, bool] = (-1.0, False)

    async def auth_enabled(self) -> bool:
        known = self._enabled_known()
        return known if known is not None else await run_in_threadpool(self.enabled)

    def enabled(self) -> bool:
        """Whether the API asks for keys (blocking: may query the database)."""
        known = self._enabled_known()
        if known is None:
            known = self._store.any_created()
            self._stored_any = (self._clock() + self._ttl, known)
        return known

    def _enabled_known(self) -> bool | None:
        if self._env:
            return True
        expires, known = self._stored_any
        if known or self._clock() < expires:
            return known  # once a key exists it stays (revoked keys are kept)
        return None

    async def resolve(self, api_key: str) -> Caller | None:
        """The caller ``api_key`` names, or None when no active key matches."""
        env = self._env_caller(api_key)
        if env is not None:
            return env
        digest = hash_key(api_key)
        now = self._clock()
        with self._lock:
            cached = self._found.get(digest)
            if cached is not None and now < cached[0]:
                return cached[1]
        caller = await run_in_threadpool(self._load, api_key)
        with self._lock:
            self._found[digest] = (self._clock() + self._ttl, caller)
            self._found.move_to_end(digest)
            while len(self._found) > CACHED_KEYS:
                self._found.popitem(last=False)
        return caller

    def _env_caller(self, api_key: str) -> Caller | None:
        # Compare against every key, without stopping early, in constant time per key.
        encoded, scopes = api_key.encode(), None
        for candidate, candidate_scopes in self._env:
            if hmac.compare_digest(encoded, candidate):
                scopes = candidate_scopes
        return Caller(owner=owner_of(api_key), scopes=scopes) if scopes is not None else None

    def _load(self, api_key: str) -> Caller | None:
        info = self._store.find_active(api_key)
        if info is None:
            return None
        self._store.touch(info.id)
        return Caller(owner=owner_of(api_key), scopes=effective(info.scopes), key_id=info.id)
