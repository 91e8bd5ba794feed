"""Redis, the broker, killed and restarted with a backlog of jobs, as deployed: an append-only file fsynced
every second (docker-compose.yml, the Kubernetes dev overlay, the embedded Redis).

100 jobs are queued while no worker runs; a worker starts on them and, a few completions in, Redis is
SIGKILLed (a crash, not a clean shutdown) and started again on the same port from its file. Submissions
during the outage must be 503 with a code; afterwards every one of the 100 completes, once.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench.chaos.common import FINISHED, Outcome, Row, outputs_of, rows, submit
from bench.services import services_env
from soundstage import migrations
from soundstage.pools import Queue
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import Stack
from tests.support.waiting import wait_until

JOBS = 100
JOB_SECONDS = 2.0
OUTAGE_S = 5.0
RESENT = "the broker held no message for it; sent again"  # the reaper's line (soundstage.reaper)


def run(workdir: Path) -> Outcome:
    with RedisServer(appendonly=True) as redis_server, PostgresServer() as postgres:
        migrations.upgrade(postgres.url)
        env = services_env(workdir, redis_url=redis_server.url, database_url=postgres.url)
        stack = Stack(env=env, log_dir=workdir)
        try:
            stack.start_api()
            with stack.client() as client:
                ids = [submit(client, duration=JOB_SECONDS, prompt=f"chaos backlog {n}") for n in range(JOBS)]
                broker = redis_server.client()
                queued_before = int(broker.llen(Queue.MUSICGEN.value))
                broker.close()
                stack.start_worker()

                def some_completed() -> int | None:
                    done = sum(1 for r in rows(postgres.dsn, ids).values() if r.status == "completed")
                    return done if done >= 3 else None

                wait_until(some_completed, 300, interval=0.2, message=f"the first completions\n{stack.logs()}")
                at_crash = rows(postgres.dsn, ids)
                redis_server.kill()
                crashed = time.monotonic()
                during = [_answer(client) for _ in range(5)]
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - crashed)))
                redis_server.start()
                back = time.monotonic()
                recovered_s = wait_until(
                    lambda: time.monotonic() - back if _answer(client)[0] == 200 else None,
                    60,
                    interval=0.2,
                    message="the API to accept jobs again",
                )
                wait_until(
                    lambda: all(r.status in FINISHED for r in rows(postgres.dsn, ids).values()),
                    900,
                    interval=1,
                    message=f"the backlog to finish\n{stack.logs()}",
                )
                final = rows(postgres.dsn, ids)
            storage = Path(env["STORAGE_URL"])
            outputs = {job_id: len(outputs_of(storage, job_id)) for job_id in ids}
            return judge(
                queued_before=queued_before,
                at_crash=at_crash,
                during=during,
                recovered_s=recovered_s,
                final=final,
                outputs=outputs,
                worker_alive=stack.workers[0].alive(),
                resent=sum(worker.log_text().count(RESENT) for worker in stack.workers),
            )
        finally:
            stack.stop()


def _answer(client: httpx.Client) -> tuple[int, str]:
    """The status and error code of one submission (during the outage: 503 `broker_unavailable`)."""
    try:
        response = client.post("/generate", json={"prompt": "during the outage", "duration": 1}, timeout=15)
    except httpx.HTTPError as error:
        return 0, type(error).__name__
    code = response.json().get("error", {}).get("code", "") if response.status_code >= 400 else ""
    return response.status_code, code


def judge(
    *,
    queued_before: int,
    at_crash: dict[str, Row],
    during: list[tuple[int, str]],
    recovered_s: float,
    final: dict[str, Row],
    outputs: dict[str, int],
    worker_alive: bool,
    resent: int,
) -> Outcome:
    statuses: dict[str, int] = {}
    for row in at_crash.values():
        statuses[row.status] = statuses.get(row.status, 0) + 1
    completed = [job_id for job_id, row in final.items() if row.status == "completed"]
    outcome = Outcome(
        f"redis: the broker killed and restarted (append-only file) with {JOBS} jobs queued",
        {
            "queued in Redis before": str(queued_before),
            "at the crash": ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
            "submissions while down": ", ".join(sorted({f"{status} {code}" for status, code in during})),
            "accepting jobs again": f"{recovered_s:.1f} s after the restart",
            "completed": f"{len(completed)} of {JOBS}",
            "lost": str(JOBS - len(completed)),
            "run more than once (attempts > 1)": str(sum(1 for row in final.values() if row.attempts > 1)),
            "messages the broker lost, sent again": str(resent),
            "worker restarted": "no" if worker_alive else "yes (it died)",
        },
    )
    if queued_before != JOBS:
        outcome.problems.append(f"{queued_before} messages queued, not {JOBS}")
    if any(status != 503 or code != "broker_unavailable" for status, code in during):
        outcome.problems.append(f"answers during the outage: {during}")
    for job_id, row in final.items():
        if row.status != "completed":
            outcome.problems.append(f"job {job_id} ended {row.status}")
        elif outputs[job_id] != 1:
            outcome.problems.append(f"job {job_id} left {outputs[job_id]} outputs")
        elif row.attempts != 1:
            outcome.problems.append(f"job {job_id} was started {row.attempts} times")
    if not worker_alive:
        outcome.problems.append("the worker did not survive the broker's restart")
    return outcome
