"""A MusicGen worker SIGKILLed mid-job, again and again, as the OOM killer or a lost node would do it.

Two workers of one job each (`MUSICGEN_MAX_BATCH=1`, so a kill hits exactly the job it aims at) serve a
stream of jobs; every round submits one, waits for it to make progress, kills the whole process group of
the worker running it and starts a replacement, as a supervisor would. The broker's visibility timeout
stays at its default (over an hour): getting the job back is the reaper's work (JOB_REAP_AFTER_SECONDS).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.chaos.common import FINISHED, Outcome, Row, RowWatch, outputs_of, rows, seconds, submit
from bench.services import services_env
from soundstage import migrations
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import ServiceProcess, Stack
from tests.support.waiting import wait_until

WORKERS = 2
STRANDED_LIMIT_S = 60.0
JOB_SECONDS = 20.0  # long enough to be caught running on random:tiny, short enough to finish soon after


def worker_running(stack: Stack, row: Row) -> ServiceProcess | None:
    """The live worker process whose pid the row names (workers call themselves ``host:pid``)."""
    pid = (row.worker or "").rpartition(":")[2]
    return next((w for w in stack.workers if w.alive() and str(w.pid) == pid), None)


def run(workdir: Path, *, rounds: int = 20) -> Outcome:
    with RedisServer() as redis_server, PostgresServer() as postgres:
        migrations.upgrade(postgres.url)
        env = services_env(workdir, redis_url=redis_server.url, database_url=postgres.url, MUSICGEN_MAX_BATCH="1")
        stack = Stack(env=env, log_dir=workdir)
        kills: list[tuple[str, Row, float]] = []
        try:
            stack.start_api()
            for _ in range(WORKERS):
                stack.start_worker()
            stack.wait_for_workers(WORKERS, timeout=300)
            with stack.client() as client, RowWatch(postgres.dsn) as watch:
                for round_ in range(1, rounds + 1):
                    job_id = submit(client, duration=JOB_SECONDS, prompt=f"chaos round {round_}")
                    watch.add(job_id)

                    def caught(job_id: str = job_id) -> tuple[Row, ServiceProcess] | None:
                        row = rows(postgres.dsn, [job_id]).get(job_id)
                        if row is None or row.status != "processing" or row.progress <= 0:
                            return None
                        worker = worker_running(stack, row)
                        return (row, worker) if worker else None

                    row, worker = wait_until(caught, 300, interval=0.1, message=f"round {round_}: job {job_id} running")
                    worker.kill_group()
                    kills.append((job_id, row, time.monotonic()))
                    print(f"  round {round_}: killed {worker.name} (pid {worker.pid}) running {job_id}", flush=True)
                    stack.start_worker()  # the supervisor's replacement (embedded launcher, compose, Kubernetes)
                ids = [job_id for job_id, _, _ in kills]
                wait_until(
                    lambda: all(r.status in FINISHED for r in rows(postgres.dsn, ids).values()),
                    900,
                    interval=1,
                    message="every killed job to finish",
                )
                time.sleep(1)  # one more look by the watch
                final = rows(postgres.dsn, ids)
                stranded = {
                    job_id: (watch.first_time(job_id, died, row) or float("inf")) - died for job_id, row, died in kills
                }
            storage = Path(env["STORAGE_URL"])
            return judge(kills, final, stranded, {job_id: len(outputs_of(storage, job_id)) for job_id in ids})
        finally:
            stack.stop()


def judge(
    kills: list[tuple[str, Row, float]], final: dict[str, Row], stranded: dict[str, float], outputs: dict[str, int]
) -> Outcome:
    completed = [job_id for job_id, row in final.items() if row.status == "completed"]
    once = [job_id for job_id in completed if outputs[job_id] == 1]
    finite = [s for s in stranded.values() if s != float("inf")]
    attempts = sorted(row.attempts for row in final.values())
    outcome = Outcome(
        "sigkill: a worker killed mid-job, 20 times in a row",
        {
            "kills": str(len(kills)),
            "completed": f"{len(completed)} of {len(kills)}",
            "exactly one output": f"{len(once)} of {len(kills)}",
            "attempts": f"{attempts[0]}..{attempts[-1]}" if attempts else "-",
            "processing after its worker died": seconds(finite),
        },
    )
    for job_id, row in final.items():
        if row.status != "completed":
            outcome.problems.append(f"job {job_id} ended {row.status}")
        elif outputs[job_id] != 1:
            outcome.problems.append(f"job {job_id} left {outputs[job_id]} outputs")
    for job_id, took in stranded.items():
        if took > STRANDED_LIMIT_S:
            outcome.problems.append(f"job {job_id} stayed processing {took:.0f} s after its worker died")
    return outcome
