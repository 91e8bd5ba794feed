"""Segments of concurrent separations share the model's calls (as demucs' own server batches them).

Each running job (inside :meth:`SegmentBatcher.joined`) hands its next segments, its fair share of a
call (:attr:`share`), to :meth:`SegmentBatcher.run` and waits. Whoever finds the model idle waits a
moment (at most ``gather_s``) for the other running jobs to hand in theirs, then runs the model on up
to ``max_rows`` waiting segments, oldest first, from every job whose segments fit the same call (same
sub-model, same input length), and wakes their owners. There is no scheduler thread: a call's leader
is simply the first thread to find the model idle.
If a shared call fails (say, out of GPU memory), each job's segments are run again on their own, so one
job's failure is never another's.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(eq=False)
class _Request:
    model: Any
    inputs: list[torch.Tensor]
    taken: int = 0
    outputs: list[np.ndarray | None] = field(default_factory=list)
    error: BaseException | None = None
    alone: bool = False  # after a failed shared call: run without other jobs
    arrived: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[int, int]:
        return id(self.model), self.inputs[0].shape[-1]

    @property
    def finished(self) -> bool:
        return self.error is not None or all(output is not None for output in self.outputs)


class SegmentBatcher:
    def __init__(self, *, max_rows: int, device: str, gather_s: float = 0.1) -> None:
        self.max_rows = max_rows
        self.device = device
        self.gather_s = gather_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._busy = False
        self._active = 0
        self._idle_since = time.monotonic()
        self.calls = 0  # model calls made (for tests and the benchmark)
        self.shared_calls = 0  # calls that held segments of more than one job

    @contextlib.contextmanager
    def joined(self) -> Iterator[None]:
        """A job's separation: while inside, calls wait briefly for its segments and share rows with it."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @property
    def share(self) -> int:
        """Segments one job should hand in at a time so that every running job fits in a call."""
        return max(1, math.ceil(self.max_rows / max(self._active, 1)))

    def run(self, model: Any, inputs: list[torch.Tensor]) -> list[np.ndarray]:
        """The model's output (sources, channels, length) for each input (channels, length)."""
        if not inputs:
            return []
        request = _Request(model, inputs, outputs=[None] * len(inputs))
        with self._cond:
            self._pending.append(request)
            while not request.finished:
                if self._busy:
                    self._cond.wait()
                    continue
                # The gathering moment starts when the model went idle (or this request arrived).
                wait = max(self._idle_since, request.arrived) + self.gather_s - time.monotonic()
                if wait > 0 and len(self._pending) < self._active and self._pending_rows() < self.max_rows:
                    self._cond.wait(wait)  # another running job is about to hand in its segments
                    continue
                self._lead()
        if request.error is not None:
            raise request.error
        return [output for output in request.outputs if output is not None]

    def _pending_rows(self) -> int:
        return sum(len(req.inputs) - req.taken for req in self._pending)

    def _lead(self) -> None:
        """Run one call on the waiting segments (called holding the lock; releases it while computing)."""
        work = self._take()
        self._busy = True
        self._cond.release()
        try:
            try:
                outputs = self._forward(work[0][0].model, [row for req, lo, hi in work for row in req.inputs[lo:hi]])
                error = None
            except BaseException as exc:  # handed to the jobs below; the leader's own job re-raises it
                outputs, error = [], exc
        finally:
            self._cond.acquire()
            self._busy = False
            self._idle_since = time.monotonic()
        if error is None:
            position = 0
            for req, lo, hi in work:
                req.outputs[lo:hi] = outputs[position : position + hi - lo]
                position += hi - lo
        elif len({id(req) for req, _, _ in work}) > 1:
            for req, lo, _ in work:  # retried alone: the failure may belong to one of them only
                req.alone = True
                req.taken = min(req.taken, lo)
                if req not in self._pending:
                    self._pending.insert(0, req)
        else:
            work[0][0].error = error
        self._cond.notify_all()

    def _take(self) -> list[tuple[_Request, int, int]]:
        first = self._pending[0]
        work: list[tuple[_Request, int, int]] = []
        rows = 0
        for req in list(self._pending):
            if req.key != first.key or (work and (req.alone or first.alone)):
                continue
            count = min(len(req.inputs) - req.taken, self.max_rows - rows)
            if count <= 0:
                break
            work.append((req, req.taken, req.taken + count))
            req.taken += count
            rows += count
            if req.taken == len(req.inputs):
                self._pending.remove(req)
        self.calls += 1
        self.shared_calls += len(work) > 1
        return work

    def _forward(self, model: Any, rows: list[torch.Tensor]) -> list[np.ndarray]:
        batch = torch.stack(rows).to(self.device)
        with torch.inference_mode():
            out = model(batch)
        return list(out.float().cpu().numpy())
