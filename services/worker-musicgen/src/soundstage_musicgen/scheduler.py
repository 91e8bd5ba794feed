"""Batching across requests: one decoding thread per model runs cohorts of waiting windows.

Job threads (the Celery `threads` pool) submit a window's rows and wait. Whenever the
decoding thread is free it takes the oldest waiting submission and every other waiting
one with the same context length, up to `max_rows` rows, and decodes them as one batch
(`cohort.run_cohort`): different prompts, settings and lengths; rows leave as they
finish or are cancelled, and what arrived meanwhile joins at the next cohort. If a
batched run fails, each submission is retried alone, so one job's failure never fails
its batch-mates.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from soundstage_musicgen.cohort import Row, run_cohort
from soundstage_musicgen.loading import LoadedModel

logger = logging.getLogger(__name__)


@dataclass
class _Submission:
    rows: list[Row]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    @property
    def context_frames(self) -> int:
        return int(self.rows[0].context.shape[-1])


class CohortScheduler:
    def __init__(self, loaded: LoadedModel, max_rows: int) -> None:
        self._loaded = loaded
        self._max_rows = max(1, max_rows)
        self._pending: deque[_Submission] = deque()
        self.cohorts = 0  # decoded so far
        self.largest_cohort = 0  # most rows decoded together
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="musicgen-decoder", daemon=True)
        self._thread.start()

    def run(self, rows: list[Row]) -> None:
        """Decode ``rows`` (one window of one job's takes) with whatever else is waiting; blocks
        until each row has a result or an error. Raises if the batch itself failed."""
        submission = _Submission(rows)
        with self._wake:
            self._pending.append(submission)
            self._wake.notify()
        submission.done.wait()
        if submission.error is not None:
            raise submission.error

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                batch = self._take_cohort()
            self._decode(batch)

    def _take_cohort(self) -> list[_Submission]:
        first = self._pending.popleft()
        batch, rows = [first], len(first.rows)
        for submission in list(self._pending):
            if submission.context_frames == first.context_frames and rows + len(submission.rows) <= self._max_rows:
                self._pending.remove(submission)
                batch.append(submission)
                rows += len(submission.rows)
        return batch

    def _decode(self, batch: list[_Submission]) -> None:
        self.cohorts += 1
        self.largest_cohort = max(self.largest_cohort, sum(len(submission.rows) for submission in batch))
        try:
            run_cohort(self._loaded, [row for submission in batch for row in submission.rows])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                logger.warning("batched decoding failed (%s); retrying each job alone", error)
                for submission in batch:
                    self._decode([submission])
                return
        for submission in batch:
            submission.done.set()
