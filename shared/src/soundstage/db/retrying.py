"""Writing the end of a run through a short database outage, instead of losing the run's work.

A run that finished while PostgreSQL was away (a restart, a failover) has its outputs stored already;
raising would send the task back to be run again from the start. Trying again for RECORD_RETRY_SECONDS
keeps the work: the job completes the moment the database is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc

logger = logging.getLogger(__name__)

RECORD_RETRY_SECONDS = 60.0
_BACKOFF = (0.2, 0.5, 1.0, 2.0)

T = TypeVar("T")


def through_outage(write: Callable[[], T], *, what: str, give_up_after: float = RECORD_RETRY_SECONDS) -> T:
    """``write()``, tried again while the database cannot be reached, for up to ``give_up_after`` seconds
    (then its error is raised: the task's own retry takes over)."""
    started = time.monotonic()
    tries = 0
    while True:
        try:
            return write()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            waited = time.monotonic() - started
            if waited >= give_up_after:
                raise
            if tries == 0:
                logger.warning("%s: the database is unavailable (%s); trying again", what, type(error).__name__)
            time.sleep(min(_BACKOFF[min(tries, len(_BACKOFF) - 1)], give_up_after - waited))
            tries += 1
