"""Embedded mode: `soundstage run` (what `make run` starts) with no servers installed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.audio import assert_not_silent, decode
from tests.support.stack import ServiceProcess, child_pids
from tests.support.waiting import free_port, wait_until

pytestmark = pytest.mark.e2e


def test_embedded_stack_generates_and_stops_cleanly(tmp_path: Path, model_cache_dir: Path) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "STORAGE_URL", "API_KEY", "API_KEYS")
    }
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
        MUSICGEN_MODEL="random:tiny",
        MODEL_CACHE_DIR=str(model_cache_dir),
        PYTHONUNBUFFERED="1",
    )
    launcher = ServiceProcess(
        "soundstage run", [sys.executable, "-m", "soundstage", "run"], env, tmp_path / "run.log"
    ).start()
    base = f"http://127.0.0.1:{port}"
    started: list[int] = []  # the launcher's children, killed at the end whatever happens
    try:

        def loaded() -> bool:
            return bool(httpx.get(f"{base}/health", timeout=5).json()["models_loaded"]["musicgen"])

        wait_until(loaded, 120, interval=0.2, message=f"embedded stack to load its model\n{launcher.log_text()}")
        with httpx.Client(base_url=base, timeout=30) as client:
            job_id = client.post("/generate", json={"prompt": "lofi", "duration": 3}).json()["job_id"]

            job = wait_until(lambda: _finished(client, job_id), 120, interval=0.1, message="embedded job to finish")
            assert job["status"] == "completed", (job, launcher.log_text())
            audio = decode(client.get(f"/files/{job_id}_generated.wav").content)
            assert audio.sample_rate == 32000 and abs(audio.duration - 3) <= 0.02
            assert_not_silent(audio)
            assert client.get("/ready").json()["status"] == "ready"
        data = tmp_path / "data"
        assert (data / "soundstage.db").exists()
        assert (data / "files" / f"{job_id}_generated.wav").exists()

        children = child_pids(launcher.pid)
        started.extend(children)
        commands = [_cmdline(pid) for pid in children]
        assert any("soundstage_api" in c for c in commands), commands
        assert any("soundstage_musicgen" in c for c in commands), commands

        # A worker that dies (SIGKILL: the OOM killer) is restarted; the rest of the stack keeps serving.
        (killed,) = [pid for pid in children if "soundstage_musicgen" in _cmdline(pid)]
        os.killpg(killed, signal.SIGKILL)

        def replaced() -> int | None:
            fresh = [
                pid
                for pid in child_pids(launcher.pid)
                if pid not in children and "soundstage_musicgen" in _cmdline(pid)
            ]
            return fresh[0] if fresh else None

        replacement = wait_until(
            replaced, 30, interval=0.2, message=f"killed worker to be restarted\n{launcher.log_text()}"
        )
        started.append(replacement)
        assert launcher.alive() and "restarting it in" in launcher.log_text()
        with httpx.Client(base_url=base, timeout=30) as client:
            again = client.post("/generate", json={"prompt": "lofi", "duration": 3}).json()["job_id"]
            job = wait_until(
                lambda: _finished(client, again), 180, interval=0.2, message="a job on the restarted worker"
            )
            assert job["status"] == "completed", (job, launcher.log_text())
        children = child_pids(launcher.pid)
        started.extend(children)
        redis_url = re.search(r"embedded Redis at (redis://\S+)", launcher.log_text())
        assert redis_url, launcher.log_text()
        assert redis.Redis.from_url(redis_url.group(1)).ping()
        assert launcher.proc is not None
        launcher.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert launcher.proc.wait(timeout=60) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"child {pid} still running"
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(redis_url.group(1), socket_connect_timeout=1).ping()
        assert "stopped" in launcher.log_text()
    finally:
        if launcher.alive():
            launcher.kill_group()
        for pid in started:  # children run in their own sessions: not in the launcher's group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        leftover = re.search(r"embedded Redis at (redis://\S+)", launcher.log_text())
        if leftover:  # the embedded redis-server daemonizes; stop it if the launcher could not
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(leftover.group(1), socket_connect_timeout=1).shutdown(nosave=True)


def _finished(client: httpx.Client, job_id: str) -> dict[str, object] | None:
    job: dict[str, object] = client.get(f"/jobs/{job_id}").json()
    return job if job["status"] in ("completed", "failed") else None


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    subprocess.run([sys.executable, "-m", "soundstage", "migrate"], env=env, check=True, timeout=120)
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "m.db").execute("select name from sqlite_master")}
    assert {"jobs", "job_files", "alembic_version"} <= tables
