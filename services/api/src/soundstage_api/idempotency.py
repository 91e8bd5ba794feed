"""``Idempotency-Key`` on every job-creating POST: the same key and request give the same job for
IDEMPOTENCY_HOURS (24 h); the same key with another request is 409 ``idempotency_key_reused``.

A client that lost the answer to a POST (a timeout, a dropped connection) sends it again with the same
key and gets the job it already has, with ``Idempotent-Replayed: true``, instead of a second job.

- The key belongs to the caller: keys are scoped by a hash of the API key (one scope for all with auth
  off), so two clients never see each other's jobs through a key.
- The request is fingerprinted as it arrives (:class:`BodyFingerprint`): method, path, query,
  content type and body bytes. A multipart body is hashed with its boundary blanked, because an HTTP
  client draws a new random boundary each time it encodes the same form.
- The routes run as usual (validation, fetching, probing); only where the job would be created
  (soundstage_api.routes.generate.submit) a prior job for the key is answered instead. A request refused
  before that point (422, 413, ...) leaves the key unused, so a corrected request may reuse it.
- The key's row is written in the job's own transaction (soundstage.db.idempotency): of two racing
  requests with one key, one job is made and both answer with it.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import Request

from soundstage.db import JobRepository, utcnow
from soundstage.db.idempotency import IdempotencyRecord
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import JobCreated, JobStatus
from soundstage.settings import Settings
from soundstage_api import viewer

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
PUBLIC_SCOPE = "public"

_current: ContextVar[Claim | None] = ContextVar("soundstage_idempotency", default=None)


class BodyFingerprint:
    """A running sha256 of a request body; with ``boundary`` (multipart), every occurrence of it is
    hashed as the same placeholder, also where it straddles two chunks."""

    def __init__(self, boundary: bytes | None = None) -> None:
        self._hash = hashlib.sha256()
        self._boundary = boundary or None
        self._tail = b""

    def update(self, chunk: bytes) -> None:
        if self._boundary is None:
            self._hash.update(chunk)
            return
        data = (self._tail + chunk).replace(self._boundary, b"\x00boundary\x00")
        keep = len(self._boundary) - 1  # the most of a boundary that can end a chunk unmatched
        self._hash.update(data[:-keep] if len(data) > keep else b"")
        self._tail = data[-keep:] if len(data) > keep else data

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(self._tail)
        return final.hexdigest()


@dataclass
class Claim:
    """This request's key, whose it is, and the fingerprint of what it asks."""

    scope: str
    key: str
    route: str  # method, path, query and content type
    body: BodyFingerprint
    window: timedelta
    replayed: bool = field(default=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.route}\n{self.body.hexdigest()}".encode()).hexdigest()

    def record(self) -> IdempotencyRecord:
        return IdempotencyRecord(self.scope, self.key, self.fingerprint(), since=utcnow() - self.window)

    def prior(self, repo: JobRepository) -> JobCreated | None:
        """The job this key already created (``replayed`` is then set), or None; 409 when the key was used
        for another request."""
        prior = repo.prior_job(self.scope, self.key, utcnow() - self.window)
        if prior is None:
            return None
        if prior.fingerprint != self.fingerprint():
            raise AppError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                f"This Idempotency-Key was used for another request (job {prior.job_id}); use a new key for a "
                "new request.",
                status_code=409,
                details={"job_id": prior.job_id},
            )
        job = repo.get(prior.job_id)
        if job is None:  # removed between the two reads: the key is free again
            return None
        self.replayed = True
        return JobCreated(job_id=job.id, status=JobStatus(job.status))


def start(request: Request, settings: Settings) -> tuple[Claim, Token[Claim | None]] | None:
    """The claim of a POST that sends ``Idempotency-Key`` (made current for the request), else None;
    422 for a key that is empty, too long or not visible ASCII."""
    key = request.headers.get(HEADER)
    if key is None or request.method != "POST":
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(char) <= 126 for char in key):
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            f"Invalid request: {HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
            status_code=422,
            details=[
                {
                    "loc": ["header", HEADER],
                    "msg": f"1 to {MAX_KEY_LENGTH} visible ASCII characters",
                    "type": "idempotency_key",
                }
            ],
        )
    content_type = request.headers.get("content-type", "")
    media_type, _, parameters = content_type.partition(";")
    boundary = _boundary(parameters) if media_type.strip().lower() == "multipart/form-data" else None
    claim = Claim(
        scope=scope_of(),
        key=key,
        route=f"POST {request.url.path}?{request.url.query} {media_type.strip().lower()}",
        body=BodyFingerprint(boundary),
        window=timedelta(hours=settings.idempotency_hours),
    )
    return claim, _current.set(claim)


def finish(token: Token[Claim | None]) -> None:
    _current.reset(token)


def current() -> Claim | None:
    """The claim of the request being served, if it sent a key."""
    return _current.get()


def scope_of() -> str:
    """Whose keys these are: the caller's owner hash (the key check ran first), or everyone's with auth off."""
    return viewer.current().owner or PUBLIC_SCOPE


def _boundary(parameters: str) -> bytes | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None
