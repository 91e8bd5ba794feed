"""librosa's numba kernels compiled by one process at a time, machine-wide.

librosa compiles its kernels with ``cache=True``: the first process to use one writes it to disk and the
others load it. numba writes a gufunc's two cache files (the kernel and its ``guf-`` wrapper) separately
(numba/numba#10128): when two processes compile at once, the pair on disk can come from different
processes, and every process that loads that pair afterwards dies of a segmentation fault: the pipeline
pool's prefork processes and a test process warming up together did exactly that, 3 times in 4 from a
cold cache.

So the first call of each analysis in a process (the one that compiles or loads its kernels) holds an
exclusive lock on :data:`LOCK_PATH`; later calls run unlocked, because their kernels are in memory and,
with the float32 input the analyses pass, need no other specialisation.
"""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

LOCK_PATH = Path(tempfile.gettempdir()) / "soundstage-numba-compile.lock"
"""Shared by every process on the machine that can share librosa's on-disk cache (same /tmp)."""

P = ParamSpec("P")
R = TypeVar("R")

_thread_lock = threading.Lock()


@contextmanager
def _machine_lock() -> Iterator[None]:
    """The exclusive flock, held by one thread of this process at a time. The locked functions are leaves
    (none calls another), so the lock is never taken twice by one thread."""
    with _thread_lock:
        # Read-only is enough for flock, and opens a lock file another user created (mode 0644 after umask).
        descriptor = os.open(LOCK_PATH, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)


def first_call_locked(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function``'s calls under the machine-wide lock until one has succeeded in this process."""
    compiled = False

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal compiled
        if compiled:
            return function(*args, **kwargs)
        with _machine_lock():
            result = function(*args, **kwargs)
            compiled = True
            return result

    return wrapper
