"""API keys: what a key may do (scopes), how a new one is made, and what is stored about it.

One definition, used by the API's key check, the operator command (``soundstage keys``) and the tests.
A key is 256 random bits; the database keeps only its SHA-256 (a key that random needs no slow hash:
nothing can be guessed from its digest) and the first characters, so a listing can tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum


class Scope(StrEnum):
    """What a key may do. Every valid key reads, cancels and downloads its own jobs and files."""

    GENERATE = "generate"  # text/melody/continuation/soundtrack generation, the compatibility APIs
    SEPARATE = "separate"  # stem separation
    JAM = "jam"  # real-time jams
    ADMIN = "admin"  # sees every key's jobs and files; implies every other scope


ALL_SCOPES = frozenset(Scope)
ENV_KEY_SCOPES = ALL_SCOPES - {Scope.ADMIN}  # API_KEY / API_KEYS: everything but admin (ADMIN_API_KEYS)
KEY_PREFIX = "ss_"
SHOWN_CHARACTERS = 10  # of a key, in listings: "ss_" and 7 characters of the secret
OWNER_LENGTH = 32


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(api_key: str) -> str:
    """What the database keeps of a key (hex SHA-256)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def owner_of(api_key: str) -> str:
    """What a job stores about the key that made it: a hash, never the key."""
    return hash_key(api_key)[:OWNER_LENGTH]


def parse_scopes(text: str) -> frozenset[Scope]:
    """``"generate,separate"`` as scopes; ValueError naming an unknown one."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("name at least one scope: " + ", ".join(Scope))
    unknown = [name for name in names if name not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; scopes are " + ", ".join(Scope))
    return frozenset(Scope(name) for name in names)


def effective(scopes: frozenset[Scope]) -> frozenset[Scope]:
    """Admin implies every scope."""
    return ALL_SCOPES if Scope.ADMIN in scopes else scopes
