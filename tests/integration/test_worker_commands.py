"""The worker's probe and model warm-up commands, run for real (they back the Kubernetes
probes and warm-up Job, the image HEALTHCHECK and `make models`)."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from soundstage.db.models import utcnow
from soundstage.schemas.system import WorkerInfo
from soundstage.workers import publish
from tests.support.servers import RedisServer

PROBE = "soundstage-worker-probe"
POD = "soundstage-worker-musicgen-5d8c7b9f4-x2x7q"


@pytest.fixture
def probe_redis(redis_server: RedisServer) -> Iterator[tuple[str, redis.Redis[bytes]]]:
    """A database of the session Redis that no worker of another test writes to."""
    url = redis_server.url.rsplit("/", 1)[0] + "/13"
    client: redis.Redis[bytes] = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def run_probe(mode: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Exit code of `python -m soundstage.probe` run as this test's pod (POD) for the musicgen queue."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(socket, "gethostname", lambda: POD)
    monkeypatch.setattr(sys, "argv", ["soundstage-worker-probe", mode, "musicgen"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("soundstage.probe", run_name="__main__", alter_sys=True)
    return int(exit_info.value.code or 0)


def heartbeat(hostname: str, *, loaded: bool, queue: str = "musicgen", age_s: float = 0) -> WorkerInfo:
    return WorkerInfo(
        hostname=hostname,
        queue=queue,
        model="random:tiny",
        device="cpu",
        gpu_available=False,
        random_weights=True,
        models_loaded=["random:tiny"] if loaded else [],
        model_loaded=loaded,
        seen_at=utcnow() - timedelta(seconds=age_s),
    )


@pytest.mark.parametrize(
    "case",
    [
        ([], 1, 1),
        ([heartbeat(f"{POD}:7", loaded=False)], 0, 1),
        ([heartbeat(f"{POD}:7", loaded=True)], 0, 0),
        ([heartbeat(f"{POD}:7", loaded=True), heartbeat(f"{POD}:8", loaded=False)], 0, 1),
        ([heartbeat(f"{POD}:7", loaded=True, age_s=45)], 1, 1),
        ([heartbeat(f"{POD}-other:7", loaded=True)], 1, 1),
        ([heartbeat(f"{POD}:7", loaded=True, queue="demucs")], 1, 1),
    ],
    ids=["none", "loading", "loaded", "one-child-loading", "stale", "other-pod", "other-queue"],
)
def test_worker_probe_reads_this_pods_heartbeat(
    probe_redis: tuple[str, redis.Redis[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[list[WorkerInfo], int, int],
) -> None:
    """Exit codes of `alive` and `ready` for the heartbeat entries in Redis."""
    entries, alive, ready = case
    url, client = probe_redis
    for entry in entries:
        publish(client, entry)
    assert run_probe("alive", url, monkeypatch) == alive
    assert run_probe("ready", url, monkeypatch) == ready


def test_worker_probe_keeps_workers_alive_while_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    assert run_probe("alive", url, monkeypatch) == 0
    assert run_probe("ready", url, monkeypatch) == 1


def test_worker_probe_console_script_prints_why_it_fails(probe_redis: tuple[str, redis.Redis[bytes]]) -> None:
    """The installed command, as the kubelet and Docker run it; its output is the probe's log."""
    url, client = probe_redis
    command = Path(sys.executable).parent / PROBE
    env = {**os.environ, "REDIS_URL": url}
    hostname = socket.gethostname()

    def probe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(command), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    usage = probe("sideways", "musicgen")
    assert usage.returncode == 2 and "usage: soundstage-worker-probe ready|alive <queue>" in usage.stderr
    none = probe("alive", "musicgen")
    assert none.returncode == 1 and f"no heartbeat from {hostname}:*" in none.stdout
    publish(client, heartbeat(f"{hostname}:7", loaded=False))
    assert probe("alive", "musicgen").returncode == 0
    loading = probe("ready", "musicgen")
    assert loading.returncode == 1 and f"{hostname}:7: models not loaded (loading)" in loading.stdout
    publish(client, heartbeat(f"{hostname}:7", loaded=True))
    assert probe("ready", "musicgen").returncode == 0


def test_model_warmup_loads_every_served_model(tmp_path: Path) -> None:
    """`python -m soundstage_musicgen.models` (the warm-up Job's `soundstage-musicgen-models`)."""
    cache = tmp_path / "cache"
    env = {**os.environ, "MODEL_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "LOG_FORMAT": "text"}

    def warm(models: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "soundstage_musicgen.models"],
            env={**env, "MUSICGEN_MODELS": models},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    ok = warm("random:tiny")
    assert ok.returncode == 0, ok.stderr
    built = cache / "random-tiny"
    assert (built / "config.json").is_file(), "the random model was not built into MODEL_CACHE_DIR"
    assert "random:tiny" in ok.stderr
    failed = warm(f"random:tiny,{tmp_path / 'missing'},random:no-such-model")
    assert failed.returncode == 1
    assert "missing" in failed.stderr and "random:no-such-model" in failed.stderr
