"""Submission latency of `POST /generate` against real Redis and PostgreSQL (`make bench-api`).

What runs: a throwaway Redis and PostgreSQL (the test suite's helpers), the migrations,
and the API as its own process on loopback in services mode, with NO worker, so every
job stays on the queue where it can be counted. A keep-alive HTTP client (one
connection per client thread) then sends warm-up requests that are not counted, and
`--requests` measured ones, first from one client, then (`--with-concurrent`) from
several at once. The same client sends as many `GET /jobs/{id}` (the framework plus one
database read) as a baseline.

The run proves the work was done: every answer must be 200 with a new job id, every id
must be on the `musicgen` Redis list (decoded from the Celery messages) and have a job
row. Exit status 0 whether or not the latency target is met (a benchmark reports), 1
when a request failed or a check did not hold.

    python -m bench.bench_api [--requests 1000] [--concurrency 1] [--with-concurrent]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import redis

from soundstage import migrations
from soundstage.pools import Queue
from soundstage.queue import queue_key
from tests.support.messages import queued_tasks
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import Stack

TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
PACKAGES = ("fastapi", "starlette", "uvicorn", "pydantic", "celery", "kombu", "redis", "sqlalchemy", "psycopg")
PROMPTS = (
    "gentle acoustic guitar music for family memories",
    "upbeat synthwave with a driving bassline",
    "slow ambient pads over distant rain",
    "jazzy lo-fi hip hop beat with vinyl crackle",
    "epic orchestral trailer music with taiko drums",
)
MOODS = ("nostalgic", "energetic", "calm", "melancholic", "triumphant")

# One request over a keep-alive connection; the int numbers it; returns the job id it created or read.
Request = Callable[[http.client.HTTPConnection, int], str]


@dataclass
class Run:
    """One measured phase: per-request latencies and what the server answered."""

    label: str
    clients: int
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    api_cpu_s: float = 0.0  # CPU time the API process used during the run
    job_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies_s)
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        return ordered[rank - 1] * 1000

    @property
    def api_cpu_ms_per_request(self) -> float:
        return self.api_cpu_s * 1000 / len(self.latencies_s) if self.latencies_s else 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


class RequestFailedError(Exception):
    pass


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RequestFailedError(f"{method} {path}: HTTP {response.status}: {payload[:300]!r}")
    answer: dict[str, Any] = json.loads(payload)
    return answer


def generate_request(conn: http.client.HTTPConnection, index: int) -> str:
    body = {
        "prompt": f"{PROMPTS[index % len(PROMPTS)]} #{index}",
        "duration": 8 + index % 23,
        "mood": MOODS[index % len(MOODS)],
        "seed": index,
    }
    answer = _exchange(conn, "POST", "/generate", json.dumps(body).encode())
    job_id = answer.get("job_id")
    if not isinstance(job_id, str) or not job_id or answer.get("status") != "queued":
        raise RequestFailedError(f"POST /generate: unexpected answer {answer!r}")
    return job_id


def job_request(job_id: str) -> Request:
    def request(conn: http.client.HTTPConnection, _index: int) -> str:
        answer = _exchange(conn, "GET", f"/jobs/{job_id}", None)
        if answer.get("job_id") != job_id:
            raise RequestFailedError(f"GET /jobs/{job_id}: unexpected answer {str(answer)[:300]}")
        return job_id

    return request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(stack: Stack, label: str, request: Request, *, count: int, clients: int, first_index: int) -> Run:
    """Send `count` requests from `clients` threads (one keep-alive connection each), all at once."""
    assert stack.api is not None
    port, pid = stack.port, stack.api.pid
    run = Run(label=label, clients=clients)
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def client(indexes: range) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.connect()
        latencies, ids, failures = [], [], []
        start_line.wait()
        for index in indexes:
            started = time.perf_counter()
            try:
                ids.append(request(conn, index))
            except (RequestFailedError, OSError, http.client.HTTPException, ValueError) as error:
                failures.append(str(error))
                conn.close()  # a broken exchange leaves the connection unusable; reconnect
            latencies.append(time.perf_counter() - started)
        conn.close()
        with lock:
            run.latencies_s += latencies
            run.job_ids += ids
            run.failures += failures

    share = math.ceil(count / clients)
    threads = [
        threading.Thread(
            target=client, args=(range(first_index + i * share, first_index + min(count, (i + 1) * share)),)
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    start_line.wait()
    started, api_cpu = time.perf_counter(), cpu_seconds(pid)
    for thread in threads:
        thread.join()
    run.wall_s = time.perf_counter() - started
    run.api_cpu_s = cpu_seconds(pid) - api_cpu
    return run


def queued_job_ids(redis_url: str) -> list[str]:
    """Job ids in the Celery messages waiting on the musicgen list (their typed payloads)."""
    client = redis.Redis.from_url(redis_url)
    try:
        tasks = queued_tasks(client, queue_key(Queue.MUSICGEN))
    finally:
        client.close()
    for task in tasks:
        if task.task != "musicgen.generate":
            raise RequestFailedError(f"unexpected task on the queue: {task.task!r}")
    return [task.payload.job_id for task in tasks]


def job_rows(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM jobs WHERE kind = 'generate' AND status = 'queued'")}


def verify(submitted: list[str], redis_url: str, dsn: str) -> list[str]:
    """What does not hold of: one message and one job row per submitted job, and nothing else."""
    problems = []
    if len(set(submitted)) != len(submitted):
        problems.append(f"{len(submitted) - len(set(submitted))} job ids were returned twice")
    on_queue = queued_job_ids(redis_url)
    if sorted(on_queue) != sorted(submitted):
        problems.append(f"{len(on_queue)} messages on the queue for {len(submitted)} submitted jobs (or other ids)")
    rows = job_rows(dsn)
    if rows != set(submitted):
        problems.append(f"{len(rows)} queued job rows for {len(submitted)} submitted jobs (or other ids)")
    return problems


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} -")
    return [
        ("cpu", f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem_kib / 2**20:.1f} GiB RAM"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("packages", ", ".join(versions)),
    ]


def report(runs: list[Run], requests: int, warmup: int) -> None:
    print()
    print(f"API submission latency: {requests} requests per row after {warmup} warm-up requests, keep-alive, loopback")
    for key, value in machine():
        print(f"  {key:9} {value}")
    print(f"  target    POST /generate from one client: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms")
    print()
    columns = ("clients", "ok", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s", "API cpu")
    header = f"{'request':28} {columns[0]:>7} {columns[1]:>6} " + " ".join(f"{c:>8}" for c in columns[2:]) + "  target"
    print(header)
    print("-" * len(header))
    for run in runs:
        p50, p90, p99, worst = (run.percentile_ms(p) for p in (50, 90, 99, 100))
        verdict = "-"
        if run.label.startswith("POST") and run.clients == 1:
            verdict = "PASS" if p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS else "MISS"
        ok = len(run.latencies_s) - len(run.failures)
        print(
            f"{run.label:28} {run.clients:>7} {ok:>6} {p50:>8.2f} {p90:>8.2f} {p99:>8.2f} {worst:>8.2f} "
            f"{run.rate:>8.0f} {run.api_cpu_ms_per_request:>8.2f}  {verdict}"
        )
    print("(latency: send to last byte read, per request; API cpu: CPU ms the API process used per request)")
    print()


@contextmanager
def profiler(pid: int, output: Path | None) -> Iterator[None]:
    """Sample the API process with py-spy (collapsed stacks) while the block runs, when asked to."""
    if output is None:
        yield
        return
    py_spy = Path(sys.executable).with_name("py-spy")  # `pip install py-spy` into the venv
    command = [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "500", "--output", str(output)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches asynchronously; samples before that would be lost
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(f"py-spy profile of the API during the single-client POST /generate run: {output}")


@contextmanager
def api_stack(workdir: Path) -> Iterator[tuple[Stack, str, str]]:
    """Redis, PostgreSQL (migrated) and the API process; yields (stack, redis url, libpq dsn)."""
    with RedisServer() as redis_server, PostgresServer() as postgres:
        migrations.upgrade(postgres.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOUNDSTAGE", "API_KEY"))}
        env.update(
            REDIS_URL=redis_server.url,
            DATABASE_URL=postgres.url,
            STORAGE_URL=str(workdir / "files"),
            DATA_DIR=str(workdir / "data"),
            MUSICGEN_MODEL="random:tiny",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            # One address stands for every simulated client: the per-address limit would measure itself.
            RATE_LIMIT_PER_MINUTE="0",
            RATE_LIMIT_PER_HOUR="0",
        )
        stack = Stack(env=env, log_dir=workdir)
        try:
            stack.start_api()
            yield stack, redis_server.url, postgres.dsn
        finally:
            stack.stop()


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    client_counts = [args.concurrency]
    if args.with_concurrent and args.concurrent_clients not in client_counts:
        client_counts.append(args.concurrent_clients)
    runs: list[Run] = []
    submitted: list[str] = []
    with api_stack(workdir) as (stack, redis_url, dsn):
        assert stack.api is not None
        index = 0
        for clients in client_counts:
            warm = measure(stack, "warm-up", generate_request, count=args.warmup, clients=clients, first_index=index)
            index += args.warmup
            submitted += warm.job_ids
            if warm.failures or not warm.job_ids:
                print(f"warm-up failed: {warm.failures[:3]}\n{stack.logs()}", file=sys.stderr)
                return 1
            spy = args.profile if clients == 1 else None
            with profiler(stack.api.pid, spy):
                gen = measure(
                    stack, "POST /generate", generate_request, count=args.requests, clients=clients, first_index=index
                )
            index += args.requests
            submitted += gen.job_ids
            read = job_request(warm.job_ids[0])
            measure(stack, "warm-up", read, count=args.warmup, clients=clients, first_index=0)
            base = measure(
                stack, "GET /jobs/{id} (baseline)", read, count=args.requests, clients=clients, first_index=0
            )
            runs += [gen, base]
        problems = [f"{run.label}: {len(run.failures)} failed, e.g. {run.failures[0]}" for run in runs if run.failures]
        problems += verify(submitted, redis_url, dsn)
        report(runs, args.requests, args.warmup)
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
            print(stack.logs(), file=sys.stderr)
            return 1
        print(
            f"verified: {len(submitted)} POST /generate answered 200 with distinct job ids (warm-up included); "
            f"the '{queue_key(Queue.MUSICGEN)}' Redis list holds exactly those {len(submitted)} messages "
            f"and PostgreSQL exactly those {len(submitted)} queued job rows"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per row (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted requests before each row (default 50)")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads of the main run (default 1)")
    parser.add_argument("--with-concurrent", action="store_true", help="also run with --concurrent-clients threads")
    parser.add_argument("--concurrent-clients", type=int, default=4, help="threads for --with-concurrent (default 4)")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile (collapsed stacks) of the 1-client run")
    args = parser.parse_args(argv)
    if min(args.requests, args.warmup, args.concurrency, args.concurrent_clients) < 1:
        parser.error("--requests, --warmup, --concurrency and --concurrent-clients must be at least 1")
    with tempfile.TemporaryDirectory(prefix="soundstage-bench-") as workdir:
        return benchmark(args, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
