"""Throwaway real servers (Redis, PostgreSQL, S3) for integration tests.

Why real servers instead of fakes: the platform's failure handling (broker
outages, database restarts, ranged S3 reads) is exactly what fakes get wrong,
so the integration suite exercises the real wire protocols.  Each server:

* listens only on 127.0.0.1, on a kernel-chosen free port, so parallel test
  runs do not collide and nothing is exposed off the machine;
* keeps all its state and its log in a private temporary directory that is
  removed on exit;
* is a context manager (``with RedisServer() as redis_server: ...``) and can
  also be driven explicitly with ``start()`` / ``stop()`` / ``close()``;
* can be stopped and started again on the SAME port (and, for PostgreSQL, the
  same data directory), so tests can simulate an outage and a recovery;
* fails loudly: if it does not become ready within its deadline, the raised
  :class:`ServerStartError` contains the server's own log.

Readiness is always a deadline poll through :func:`wait_until`; nothing here
sleeps on its own.

Layout: ``base`` holds the shared life cycle (:class:`~.base.ManagedServer`),
and ``redis_server``, ``postgres`` and ``s3`` one server each.  Import the
servers from this package, not from the submodules.
"""

from __future__ import annotations

from tests.support.servers.base import ServerStartError
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.redis_server import RedisServer
from tests.support.servers.s3 import S3Server

__all__ = [
    "PostgresServer",
    "RedisServer",
    "S3Server",
    "ServerStartError",
]
