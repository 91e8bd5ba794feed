"""Ctrl-C of the embedded stack (`soundstage run`, what `make run` starts) with jobs running and queued.

The stack runs as a user runs it: SQLite and a local folder under DATA_DIR, the embedded Redis with its
append-only file, one worker per installed pool. With 8 jobs running (a full MusicGen batch) and 20
queued, SIGINT stops it; it is started again at once on the same port and must finish all 28, once each.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import redis

from bench.chaos.common import FINISHED, Outcome, outputs_of, submit
from bench.services import LIMITS_OFF, MODEL
from tests.support.stack import ServiceProcess, child_pids
from tests.support.waiting import free_port, wait_until

RUNNING = 8
QUEUED = 20
JOB_SECONDS = 30.0


def launcher(workdir: Path, env: dict[str, str], name: str) -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, "-m", "soundstage", "run"], env, workdir / f"{name}.log").start()


def wait_loaded(base: str, process: ServiceProcess) -> None:
    def loaded() -> bool:
        try:
            health = httpx.get(f"{base}/health", timeout=5).json()
        except httpx.HTTPError:
            return False
        return bool(health["models_loaded"]["musicgen"])

    wait_until(loaded, 300, interval=0.2, message=f"the embedded stack to load its model\n{process.log_text()[-3000:]}")


def jobs(client: httpx.Client, ids: list[str]) -> dict[str, dict[str, object]]:
    return {job_id: client.get(f"/jobs/{job_id}").json() for job_id in ids}


def run(workdir: Path) -> Outcome:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "STORAGE_URL")}
    env.update(
        DATA_DIR=str(workdir / "data"),
        PORT=str(port),
        MUSICGEN_MODEL=MODEL,
        DEMUCS_MODEL=MODEL,
        MODEL_CACHE_DIR=str(workdir / "models"),
        PYTHONUNBUFFERED="1",
        API_KEYS="",
        **LIMITS_OFF,
    )
    base = f"http://127.0.0.1:{port}"
    first = launcher(workdir, env, "first-run")
    again: ServiceProcess | None = None
    children: list[int] = []
    try:
        wait_loaded(base, first)
        with httpx.Client(base_url=base, timeout=30) as client:
            ids = [submit(client, duration=JOB_SECONDS, prompt=f"chaos embedded {n}") for n in range(RUNNING + QUEUED)]

            def full_batch() -> dict[str, dict[str, object]] | None:
                found = jobs(client, ids)
                running = [j for j in found.values() if j["status"] == "processing" and float(str(j["progress"])) > 0]
                return found if len(running) >= RUNNING else None

            before = wait_until(full_batch, 300, interval=0.2, message=f"{RUNNING} jobs running\n{first.log_text()}")
        statuses_before = _count(before)
        children = child_pids(first.pid)
        assert first.proc is not None
        stopping = time.monotonic()
        first.proc.send_signal(signal.SIGINT)
        code = first.proc.wait(timeout=120)
        stop_s = time.monotonic() - stopping
        handed_back = _stored_statuses(workdir / "data" / "soundstage.db")
        restarting = time.monotonic()
        again = launcher(workdir, env, "second-run")
        wait_loaded(base, again)
        ready_s = time.monotonic() - restarting
        with httpx.Client(base_url=base, timeout=30) as client:

            def all_finished() -> dict[str, dict[str, object]] | None:
                found = jobs(client, ids)
                return found if all(job["status"] in FINISHED for job in found.values()) else None

            final = wait_until(
                all_finished, 900, interval=1, message=f"all {len(ids)} jobs to finish\n{again.log_text()}"
            )
        children += child_pids(again.pid)
        storage = workdir / "data" / "files"
        outputs = {job_id: len(outputs_of(storage, job_id)) for job_id in ids}
        return judge(
            code=code,
            stop_s=stop_s,
            ready_s=ready_s,
            before=statuses_before,
            handed_back=handed_back,
            final=final,
            outputs=outputs,
            first_log=first.log_text(),
        )
    finally:
        for process in (first, again):
            if process is not None and process.alive():
                process.stop(timeout=30)
        for pid in children:  # each child runs in its own session, outside the launcher's group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _stop_leftover_redis(first, again)


def _count(found: dict[str, dict[str, object]]) -> str:
    counts: dict[str, int] = {}
    for job in found.values():
        counts[str(job["status"])] = counts.get(str(job["status"]), 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _stored_statuses(database: Path) -> str:
    """The jobs' statuses and attempts in the stopped stack's SQLite file: what the restart starts from."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        found = conn.execute("SELECT status, attempts, count(*) FROM jobs GROUP BY status, attempts").fetchall()
    return ", ".join(f"{n} {status} (attempts {attempts})" for status, attempts, n in sorted(found))


def _stop_leftover_redis(*processes: ServiceProcess | None) -> None:
    for process in processes:
        if process is None:
            continue
        for url in re.findall(r"embedded Redis at (redis://\S+)", process.log_text()):
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(url, socket_connect_timeout=1).shutdown(nosave=True)


def judge(
    *,
    code: int,
    stop_s: float,
    ready_s: float,
    before: str,
    handed_back: str,
    final: dict[str, dict[str, object]],
    outputs: dict[str, int],
    first_log: str,
) -> Outcome:
    completed = [job_id for job_id, job in final.items() if job["status"] == "completed"]
    attempts = sorted(int(str(job["attempts"])) for job in final.values())
    outcome = Outcome(
        f"ctrl-c: the embedded stack stopped with {RUNNING} running and {QUEUED} queued jobs",
        {
            "at the stop": before,
            "stop took": f"{stop_s:.1f} s (exit status {code})",
            "after the stop": handed_back,
            "restart to model loaded": f"{ready_s:.1f} s, same port",
            "completed": f"{len(completed)} of {len(final)}",
            "exactly one output": f"{sum(1 for n in outputs.values() if n == 1)} of {len(final)}",
            "attempts": f"{attempts[0]}..{attempts[-1]}",
        },
    )
    if code != 0:
        outcome.problems.append(f"the launcher exited with {code}")
    if "did not stop in time" in first_log:
        outcome.problems.append("a child had to be killed at the stop")
    for job_id, job in final.items():
        if job["status"] != "completed":
            outcome.problems.append(f"job {job_id} ended {job['status']} ({job.get('error_code')})")
        elif outputs[job_id] != 1:
            outcome.problems.append(f"job {job_id} left {outputs[job_id]} outputs")
    return outcome
