"""Batching across requests: one decoding thread per model runs cohorts of waiting windows.

Job threads (the Celery `threads` pool) submit a window's rows and wait. Whenever the
decoding thread is free it takes the oldest waiting submission and every other waiting
one with the same context length, up to `max_rows` rows, and decodes them as one batch
(`cohort.run_cohort`): different prompts, settings and lengths; rows leave as they
finish or are cancelled, and what arrived meanwhile joins at the next cohort. If a
batched run fails, each submission is retried alone, so one job's failure never fails
its batch-mates.

A cohort that runs out of device memory is split in halves, each decoded on its own (down to
single rows: a job's takes too), after the allocator's cache is emptied; and later cohorts are
capped below the size that did not fit, so the worker settles on a batch its device holds. Only a
single row that does not fit fails its job (``model_oom``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from soundstage.device_faults import DeviceFault, device_fault
from soundstage_musicgen.cohort import Row, run_cohort
from soundstage_musicgen.loading import LoadedModel

logger = logging.getLogger(__name__)

# Jobs submitted together reach the decoder tens to hundreds of milliseconds apart (each
# first encodes its prompt). A batch about to start waits at most this long for jobs that
# have begun arriving, instead of making them wait a whole window (up to 30 s of audio).
GATHER_SECONDS = 1.0


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
        self._arriving = 0  # jobs that started `generate` but have not submitted their first window
        self.cohorts = 0  # decoded so far
        self.largest_cohort = 0  # most rows decoded together
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="musicgen-decoder", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Callable[[], None]]:
        """Count a job as arriving until it calls the yielded function (at its first submission)
        or leaves the block."""
        with self._wake:
            self._arriving += 1
        done = False

        def arrived() -> None:
            nonlocal done
            with self._wake:
                if not done:
                    done = True
                    self._arriving -= 1
                    self._wake.notify_all()

        try:
            yield arrived
        finally:
            arrived()

    def run(self, rows: list[Row], arrived: Callable[[], None] | None = None) -> None:
        """Decode ``rows`` (one window of one job's takes) with whatever else is waiting; blocks
        until each row has a result or an error. Raises if the batch itself failed."""
        submission = _Submission(rows)
        with self._wake:
            self._pending.append(submission)
            self._wake.notify_all()
        if arrived is not None:
            arrived()
        submission.done.wait()
        if submission.error is not None:
            raise submission.error

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                self._gather()
                batch = self._take_cohort()
            self._decode(batch)

    def _gather(self) -> None:
        """Wait (briefly, lock held by the caller's condition) for jobs that are arriving."""
        deadline = time.monotonic() + GATHER_SECONDS
        while self._arriving > 0 and sum(len(s.rows) for s in self._pending) < self._max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)

    def _take_cohort(self) -> list[_Submission]:
        first = self._pending.popleft()
        batch, rows = [first], len(first.rows)
        for submission in list(self._pending):
            if submission.context_frames == first.context_frames and rows + len(submission.rows) <= self._max_rows:
                self._pending.remove(submission)
                batch.append(submission)
                rows += len(submission.rows)
        return batch

    @property
    def max_rows(self) -> int:
        """The most rows decoded together now (lowered when a cohort ran out of device memory)."""
        return self._max_rows

    def _run_rows(self, rows: list[Row]) -> None:
        """``run_cohort``, split in halves as often as the device runs out of memory."""
        try:
            run_cohort(self._loaded, rows)
        except Exception as error:
            if device_fault(error) is not DeviceFault.OUT_OF_MEMORY or len(rows) == 1:
                raise
            half = len(rows) // 2
            with self._wake:  # below what did not fit: the cap settles on the largest batch the device holds
                self._max_rows = min(self._max_rows, len(rows) - 1)
            logger.warning(
                "out of device memory with %d rows; decoding halves, at most %d rows from now on",
                len(rows),
                self._max_rows,
            )
            _release_cached_memory()
            self._run_rows(rows[:half])
            self._run_rows(rows[half:])

    def _decode(self, batch: list[_Submission]) -> None:
        self.cohorts += 1
        self.largest_cohort = max(self.largest_cohort, sum(len(submission.rows) for submission in batch))
        try:
            self._run_rows([row for submission in batch for row in submission.rows])
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


def _release_cached_memory() -> None:
    """Give the CUDA allocator's cached blocks back before decoding smaller batches (no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
