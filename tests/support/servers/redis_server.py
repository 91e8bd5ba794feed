"""A private ``redis-server`` for tests (the Celery broker and stream store)."""

from __future__ import annotations

import socket
from typing import Any

import redis

from tests.support.servers.base import LOOPBACK, ManagedServer, find_executable

__all__ = ["RedisServer"]


class RedisServer(ManagedServer):
    """A private ``redis-server``, with persistence disabled unless ``appendonly``.

    Without persistence no RDB/AOF files are written, so a stop()/start() cycle
    (a simulated broker outage) comes back EMPTY on the same port, like a
    broker that lost its in-memory state.  With ``appendonly`` it keeps an
    append-only file fsynced every second, as the compose and Kubernetes
    deployments run it, and comes back with what it held.  Use :meth:`kill`
    to simulate a crash instead of a clean shutdown.
    """

    kind = "redis"
    log_name = "redis.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        startup_timeout: float = 15.0,
        executable: str | None = None,
        appendonly: bool = False,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.appendonly = appendonly
        self.executable = executable or find_executable("redis-server", "/usr/bin/redis-server")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis[Any]:
        """A redis-py client for database 0 (caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    def kill(self) -> None:
        """SIGKILL the server: an abrupt crash; start() brings it back."""
        self._kill_process()

    def _command(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",  # stdout, which is our log file
        ]  # fmt: skip

    def _probe(self) -> bool:
        # A raw PING rather than redis-py: the client's own retries and
        # backoff would stretch one probe over many seconds if something
        # that is not our Redis holds the port.
        with socket.create_connection((LOOPBACK, self.port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
