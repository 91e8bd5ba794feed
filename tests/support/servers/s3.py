"""A private moto S3 server for tests (the object-storage backend)."""

from __future__ import annotations

import os
import sys
import urllib.request
from typing import TYPE_CHECKING, Any, ClassVar

from tests.support.servers.base import LOOPBACK, ManagedServer

if TYPE_CHECKING:
    from botocore.client import BaseClient  # pragma: no cover - typing only

__all__ = ["S3Server"]


class S3Server(ManagedServer):
    """A private moto S3 server in its own process.

    A subprocess rather than ``moto.server.ThreadedMotoServer`` on purpose:
    the threaded server shares moto's process-global backends with any
    ``mock_aws`` used elsewhere in the test run (and with other S3Server
    instances), and it hangs forever instead of failing when its port is
    taken.  Nothing global is configured: use :meth:`client` (or
    :attr:`client_kwargs`) to talk to it.  State is in memory, so a
    stop()/start() cycle comes back empty.
    """

    kind = "s3"
    log_name = "moto.log"
    access_key: ClassVar[str] = "testing"
    secret_key: ClassVar[str] = "testing"
    region: ClassVar[str] = "us-east-1"

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        # Loopback must never go through a proxy from the environment.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", ...)`` pointing here."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def client(self) -> BaseClient:
        """A boto3 S3 client for this server, with dummy credentials.

        Uses its own boto3 Session so it neither reads nor changes the
        default session, and ignores proxy settings from the environment.
        """
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        config = Config(
            s3={"addressing_style": "path"},
            proxies={},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def create_bucket(self, name: str) -> str:
        """Create a bucket (in us-east-1) and return its name."""
        client: Any = self.client()  # botocore's client methods are generated at runtime
        client.create_bucket(Bucket=name)
        return name

    def kill(self) -> None:
        """SIGKILL the server: an abrupt crash; start() brings it back (empty)."""
        self._kill_process()

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            LOOPBACK,
            "-p",
            str(self.port),
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file before a crash
        return env

    def _probe(self) -> bool:
        with self._http.open(f"{self.endpoint_url}/moto-api/data.json", timeout=2) as response:
            return bool(response.status == 200)
