"""The ``api_keys`` table: create, list, revoke, and find a key by its hash (the API's key check)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from soundstage.db.models import ApiKey, utcnow
from soundstage.keys import SHOWN_CHARACTERS, Scope, hash_key, new_key


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a stored key (never the key)."""

    id: str
    name: str
    shown: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class CreatedKey:
    info: KeyInfo
    api_key: str  # shown once, at creation; not kept anywhere


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        shown=row.shown,
        scopes=frozenset(Scope(scope) for scope in row.scopes if scope in set(Scope)),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class ApiKeyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, scopes: frozenset[Scope]) -> CreatedKey:
        api_key = new_key()
        row = ApiKey(
            id=secrets.token_hex(6),
            name=name,
            shown=api_key[:SHOWN_CHARACTERS],
            key_hash=hash_key(api_key),
            scopes=sorted(scopes),
            created_at=utcnow(),
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            info = _info(row)
        return CreatedKey(info=info, api_key=api_key)

    def list(self) -> list[KeyInfo]:
        with self._sessions() as session:
            return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]

    def revoke(self, key_id: str) -> KeyInfo | None:
        """Revoke ``key_id`` (again is a no-op); None when there is no such key."""
        with self._sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _info(row)

    def find_active(self, api_key: str) -> KeyInfo | None:
        """The unrevoked key ``api_key``, or None."""
        with self._sessions() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(api_key)))
            return _info(row) if row is not None and row.revoked_at is None else None

    def touch(self, key_id: str) -> None:
        """Record that ``key_id`` was used just now (the key check calls this at most once per cache period)."""
        with self._sessions.begin() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))

    def any_created(self) -> bool:
        """Whether any key was ever created (revoked ones count: revoking the last key keeps auth on)."""
        with self._sessions() as session:
            return bool(session.scalar(select(func.count()).select_from(ApiKey)))
