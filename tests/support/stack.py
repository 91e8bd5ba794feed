"""Start the API and workers as real processes, the way operators run them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import free_port, wait_until


@dataclass
class ServiceProcess:
    """A child process with its output in a log file (shown when a test fails)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        return self.proc.returncode

    def kill_group(self) -> None:
        """SIGKILL the process and everything it started (a crashed machine, an OOM kill)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (a Celery worker's pool processes)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@dataclass
class Stack:
    """API + workers sharing one environment (services mode: real Redis, PostgreSQL, S3)."""

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    api: ServiceProcess | None = None
    workers: list[ServiceProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def start_api(self) -> ServiceProcess:
        env = {**self.env, "PORT": str(self.port)}
        self.api = ServiceProcess(
            "api", [sys.executable, "-m", "soundstage_api"], env, self.log_dir / "api.log"
        ).start()
        wait_until(
            lambda: self._get("/health").status_code == 200,
            60,
            message=f"API to answer /health\n{self.api.log_text()[-3000:]}",
        )
        return self.api

    def start_worker(
        self, *extra_args: str, env: Mapping[str, str] | None = None, module: str = "soundstage_musicgen.app"
    ) -> ServiceProcess:
        """A worker of the pool whose entry module is `module` (MusicGen by default)."""
        index = len(self.workers)
        worker = ServiceProcess(
            f"worker-{index}",
            [sys.executable, "-m", module, "--hostname", f"w{index}@%h", *extra_args],
            {**self.env, **(env or {})},
            self.log_dir / f"worker-{index}.log",
        ).start()
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        def ready() -> bool:
            health = self._get("/health").json()
            return sum(1 for w in health["workers"] if w["model_loaded"]) >= count

        wait_until(ready, timeout, interval=0.2, message=f"{count} worker(s) with a loaded model\n{self.logs()}")

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def logs(self) -> str:
        parts = [f"--- {p.name} ---\n{p.log_text()[-4000:]}" for p in [self.api, *self.workers] if p]
        return "\n".join(parts)

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None:
                process.stop()


def poll_job(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    """Poll `/jobs/{id}` until its status is one of `statuses`."""

    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        return job if job.get("status") in statuses else None

    return wait_until(reached, timeout, interval=0.1, message=f"job {job_id} to reach {sorted(statuses)}")
