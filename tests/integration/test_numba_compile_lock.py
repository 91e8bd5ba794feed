"""Processes that warm the pipeline's audio analysis up together, from a cold numba cache, all live.

numba writes a gufunc's two cache files separately (numba/numba#10128): before the compile lock, four
processes compiling librosa's beat tracker at once left a mixed pair on disk in 3 rounds of 4, and every
process that loaded it (the pipeline pool's prefork processes, a test) died of a segmentation fault.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

WARM_UP = "from soundstage_pipeline.engine import MixEngine\nMixEngine().load()\n"
PROCESSES = 3


def _wave(cache: Path) -> list[int]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    processes = [
        subprocess.Popen([sys.executable, "-c", WARM_UP], env=env, stderr=subprocess.PIPE) for _ in range(PROCESSES)
    ]
    deadline = time.monotonic() + 300
    codes = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
        codes.append(process.returncode)
    return codes


def test_concurrent_cold_warm_ups_leave_a_cache_every_process_can_load(tmp_path: Path) -> None:
    cache = tmp_path / "numba"
    assert _wave(cache) == [0] * PROCESSES  # they compile together (one at a time, under the lock)
    assert any(cache.rglob("guf-*.nbc")), "the beat tracker's gufunc was cached"
    assert _wave(cache) == [0] * PROCESSES  # and later processes load what they wrote
