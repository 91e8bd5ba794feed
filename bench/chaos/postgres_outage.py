"""PostgreSQL stopped for 10 s while clients submit and poll jobs and a worker runs them.

Four clients each submit a short job every second and poll their latest one five times a second, for
the whole run; a quarter of the way
in the database is stopped (`pg_ctl stop -m fast`, what an operator's restart or a failover does) and
started again 10 s later. Every answer is counted by status and code: while it is down the API must
answer 503 with a code (never a 500, never a dropped connection), and afterwards it and the worker go on
without being restarted; every accepted job completes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.chaos.common import FINISHED, Outcome, Row, rows
from bench.services import services_env
from soundstage import migrations
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import Stack
from tests.support.waiting import wait_until

CLIENTS = 4
BEFORE_S = 10.0
OUTAGE_S = 10.0
AFTER_S = 20.0
JOB_SECONDS = 1.0
SUBMIT_EVERY_S = 1.0
POLL_EVERY_S = 0.2
PHASES = ("before", "down", "after")


@dataclass
class Answers:
    """What the clients got, per phase of the run, and the jobs the API accepted."""

    by_phase: dict[str, Counter[str]] = field(default_factory=lambda: {p: Counter() for p in PHASES})
    accepted: list[str] = field(default_factory=list)
    first_success_after_restart: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, phase: str, answer: str, at: float, restarted_at: float | None) -> None:
        with self.lock:
            self.by_phase[phase][answer] += 1
            if restarted_at is not None and answer.startswith("200") and self.first_success_after_restart is None:
                self.first_success_after_restart = at - restarted_at


def _answer(response: httpx.Response) -> str:
    if response.status_code < 400:
        return f"{response.status_code}"
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "(no code)"
    return f"{response.status_code} {code}"


def client_loop(base: str, answers: Answers, clock: dict[str, float | None], stop: threading.Event) -> None:
    """One client: a job submitted every SUBMIT_EVERY_S, its last job polled in between (as apps do)."""
    mine: list[str] = []
    with httpx.Client(base_url=base, timeout=20) as client:
        next_submit = time.monotonic()
        while not stop.is_set():
            submitting = time.monotonic() >= next_submit or not mine
            if submitting:
                next_submit = time.monotonic() + SUBMIT_EVERY_S
            method, path = ("POST", "/generate") if submitting else ("GET", f"/jobs/{mine[-1]}")
            body = {"prompt": "under load", "duration": JOB_SECONDS} if submitting else None
            phase = _phase(clock)
            try:
                response = client.request(method, path, json=body)
                answer = _answer(response)
                if submitting and response.status_code == 200:
                    mine.append(response.json()["job_id"])
            except httpx.HTTPError as error:
                answer = f"no answer ({type(error).__name__})"
            answers.note(phase, f"{answer} ({method})", time.monotonic(), clock["restarted"])
            stop.wait(POLL_EVERY_S)
    with answers.lock:
        answers.accepted.extend(mine)


def _phase(clock: dict[str, float | None]) -> str:
    if clock["stopped"] is None:
        return "before"
    return "down" if clock["restarted"] is None else "after"


def run(workdir: Path) -> Outcome:
    with RedisServer() as redis_server, PostgresServer() as postgres:
        migrations.upgrade(postgres.url)
        env = services_env(workdir, redis_url=redis_server.url, database_url=postgres.url)
        stack = Stack(env=env, log_dir=workdir)
        try:
            stack.start_api()
            stack.start_worker()
            stack.wait_for_workers(1, timeout=300)
            pids = [p.pid for p in (stack.api, *stack.workers) if p]
            answers = Answers()
            clock: dict[str, float | None] = {"stopped": None, "restarted": None}
            stop = threading.Event()
            threads = [
                threading.Thread(target=client_loop, args=(stack.url, answers, clock, stop), daemon=True)
                for _ in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            time.sleep(BEFORE_S)
            clock["stopped"] = time.monotonic()  # from the stop request on: answers may be refused
            postgres.stop()
            time.sleep(OUTAGE_S)
            postgres.start()
            clock["restarted"] = time.monotonic()
            time.sleep(AFTER_S)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            wait_until(
                lambda: all(r.status in FINISHED for r in rows(postgres.dsn, answers.accepted).values()),
                600,
                interval=1,
                message=f"every accepted job to finish\n{stack.logs()}",
            )
            final = rows(postgres.dsn, answers.accepted)
            alive = all(p.alive() for p in (stack.api, *stack.workers) if p)
            same = pids == [p.pid for p in (stack.api, *stack.workers) if p]
            return judge(answers, final, alive and same)
        finally:
            stack.stop()


def judge(answers: Answers, final: dict[str, Row], same_processes: bool) -> Outcome:
    completed = sum(1 for row in final.values() if row.status == "completed")
    figures = {
        f"answers {phase}": ", ".join(f"{n} x {a}" for a, n in counts.most_common()) or "-"
        for phase, counts in answers.by_phase.items()
    }
    recovery = answers.first_success_after_restart
    figures["first job accepted after the restart"] = f"{recovery:.1f} s" if recovery is not None else "never"
    figures["accepted jobs completed"] = f"{completed} of {len(answers.accepted)}"
    figures["processes restarted"] = "none" if same_processes else "some (a process died)"
    outcome = Outcome(f"postgres: the database stopped {OUTAGE_S:.0f} s under load", figures)
    for phase, counts in answers.by_phase.items():
        for answer in counts:
            if answer.startswith("no answer") or (answer.startswith("5") and not answer.startswith("503 ")):
                outcome.problems.append(f"{phase}: {counts[answer]} x {answer}")
            if answer.startswith("503 (no code)"):
                outcome.problems.append(f"{phase}: a 503 without a code")
    if recovery is None:
        outcome.problems.append("no job accepted after the database came back")
    if completed != len(answers.accepted):
        stuck = Counter(row.status for row in final.values() if row.status != "completed")
        outcome.problems.append(f"accepted jobs that did not complete: {dict(stuck)}")
    if not same_processes:
        outcome.problems.append("a process died or was replaced")
    return outcome
