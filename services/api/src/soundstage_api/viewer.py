"""Per-key isolation: a key sees, lists, cancels and downloads only the jobs and files it made, unless it
is an admin key (ADMIN_API_KEYS).

Every job records its ``owner``: a hash of the API key that submitted it (never the key itself), or none
with auth off. The key check (soundstage_api.auth) makes the caller's :class:`Viewer` current for the
request; the routes filter with it. Who sees everything:

- an admin key;
- everyone while auth is off (one tenant);
- with ``PUBLIC_READS`` (musicgen-api's behaviour), a read without a key: its operator made reads public.

Another key's job or file is answered as if it did not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from soundstage.db import Job, JobRepository
from soundstage.errors import AppError, ErrorCode
from soundstage.keys import ALL_SCOPES, Scope, owner_of

if TYPE_CHECKING:
    from soundstage_api.key_ring import Caller

__all__ = ["Viewer", "current", "may_open", "owner_of", "remember_viewer", "visible_job"]


@dataclass(frozen=True)
class Viewer:
    owner: str | None  # whose jobs new submissions become; None with auth off
    sees_all: bool
    scopes: frozenset[Scope] = ALL_SCOPES

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or (owner is not None and owner == self.owner)

    @property
    def only_owner(self) -> str | None:
        """The owner listings are filtered by (None: no filter)."""
        return None if self.sees_all else self.owner


_EVERYONE = Viewer(owner=None, sees_all=True)
_current: ContextVar[Viewer] = ContextVar("soundstage_viewer", default=_EVERYONE)


def remember_viewer(caller: Caller | None) -> None:
    """Make the caller the request's viewer (called by the key check). None: auth is off, or the request
    has no valid key (a read that PUBLIC_READS lets through sees all; anything else is refused)."""
    if caller is None:
        _current.set(_EVERYONE)
        return
    _current.set(Viewer(owner=caller.owner, sees_all=caller.admin, scopes=caller.scopes))


def current() -> Viewer:
    return _current.get()


def visible_job(repo: JobRepository, job_id: str) -> Job:
    """The job ``job_id`` if the caller may see it; else 404 ``job_not_found``, as for an unknown id."""
    job = repo.get(job_id)
    if job is None or not current().may_see(job.owner):
        raise AppError(ErrorCode.JOB_NOT_FOUND, f"No job with id {job_id!r}.", status_code=404)
    return job


def may_open(repo: JobRepository, name: str) -> bool:
    """Whether the caller may download stored object ``name`` (objects are named ``{job_id}_...``)."""
    viewer = current()
    if viewer.sees_all:
        return True
    job = repo.get(name.split("_", 1)[0])
    return job is not None and viewer.may_see(job.owner)
