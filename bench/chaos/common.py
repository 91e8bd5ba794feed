"""What the chaos scenarios share: job bookkeeping (rows read from PostgreSQL, outputs) and the report."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

FINISHED = {"completed", "failed", "cancelled"}


def submit(client: httpx.Client, *, duration: float, prompt: str = "chaos") -> str:
    response = client.post("/generate", json={"prompt": prompt, "duration": duration})
    response.raise_for_status()
    job_id: str = response.json()["job_id"]
    return job_id


def outputs_of(storage: Path, job_id: str) -> list[Path]:
    """The generated files a job left in the storage folder: exactly one for a job that completed once."""
    return sorted(storage.rglob(f"{job_id}_generated*"))


@dataclass(frozen=True)
class Row:
    status: str
    attempts: int
    worker: str | None
    progress: float


def rows(dsn: str, job_ids: Iterable[str]) -> dict[str, Row]:
    """The jobs' rows, read straight from PostgreSQL (what the API would show, without loading it)."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT id, status, attempts, worker, progress FROM jobs WHERE id = ANY(%s)", (list(job_ids),)
        ).fetchall()
    return {job_id: Row(status, attempts, worker, progress) for job_id, status, attempts, worker, progress in found}


@dataclass
class RowWatch:
    """Polls the rows of the jobs it is given twice a second and keeps when each was seen in each state."""

    dsn: str
    interval: float = 0.5
    seen: dict[str, list[tuple[float, Row]]] = field(default_factory=dict)
    _ids: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RowWatch:
        self._thread = threading.Thread(target=self._run, name="row-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.add(job_id)

    def first_time(self, job_id: str, after: float, changed_from: Row) -> float | None:
        """When the job was first seen out of ``changed_from``'s status and attempt after ``after``."""
        with self._lock:
            for at, row in self.seen.get(job_id, []):
                if at > after and (row.status, row.attempts) != (changed_from.status, changed_from.attempts):
                    return at
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = set(self._ids)
            if not ids:
                continue
            try:
                found = rows(self.dsn, ids)
            except psycopg.Error:
                continue  # the database may be the thing that is down
            now = time.monotonic()
            with self._lock:
                for job_id, row in found.items():
                    history = self.seen.setdefault(job_id, [])
                    if not history or history[-1][1] != row:
                        history.append((now, row))


@dataclass
class Outcome:
    """One scenario's figures (printed as a table) and whether it kept its promise."""

    name: str
    figures: dict[str, str]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def render(self) -> str:
        width = max(len(key) for key in self.figures) if self.figures else 0
        lines = [f"## {self.name}: {'PASS' if self.passed else 'FAIL'}"]
        lines += [f"  {key.ljust(width)}  {value}" for key, value in self.figures.items()]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return f"median {median:.1f} s, max {ordered[-1]:.1f} s"
