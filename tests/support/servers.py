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
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import psycopg
import redis
from psycopg import sql

from tests.support.waiting import free_port, wait_until

if TYPE_CHECKING:
    from botocore.client import BaseClient  # pragma: no cover - typing only

__all__ = [
    "PostgresServer",
    "RedisServer",
    "S3Server",
    "ServerStartError",
]

LOOPBACK = "127.0.0.1"

# How much of a server log goes into an exception: enough to see the fatal
# lines at the end without drowning the test report.
_LOG_TAIL_CHARS = 8000

# Attempts to find a free port on the FIRST start only: free_port() cannot
# reserve the port, so another process may grab it before the server binds.
# Restarts never move to another port, because tests rely on the URL staying
# valid across an outage.
_FIRST_START_PORT_ATTEMPTS = 3

_EXITED = object()  # readiness outcome: the server process died while starting


class ServerStartError(RuntimeError):
    """A test server could not be started; the message includes its log."""

    def __init__(self, message: str, *, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


# Servers started but not yet closed.  Context-manager users always clean up;
# this only guards explicit start() callers that forget close() (or a test
# run interrupted between start and close) so no orphan daemons are left.
_LIVE_SERVERS: set[_ManagedServer] = set()


@atexit.register
def _close_leftover_servers() -> None:
    for server in list(_LIVE_SERVERS):
        try:
            server.close()
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter exit
            pass


def _tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    """Return the end of a log file (or a note saying why there is none)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    text = data.decode("utf-8", errors="replace")
    if len(text) > chars:
        text = "...\n" + text[-chars:]
    return text or "<log is empty>"


def _find_executable(name: str, *fallbacks: str) -> str:
    """Locate a server binary on PATH, then at well-known locations."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerStartError(
        f"cannot find {name!r} on PATH or at {', '.join(fallbacks) or '(no fallbacks)'}"
    )


class _ManagedServer:
    """One server process with a private temp dir, a log file and a fixed port.

    Subclasses supply the command line and a readiness probe; this class owns
    the life cycle so every server behaves the same way on start, restart,
    failure and cleanup.
    """

    kind: ClassVar[str] = "server"
    log_name: ClassVar[str] = "server.log"

    def __init__(
        self, *, port: int | None = None, startup_timeout: float = 30.0
    ) -> None:
        self._port_pinned = port is not None
        self.port: int = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = 30.0
        self._directory: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------- public API

    @property
    def directory(self) -> Path:
        """The private temp directory (exists from first start until close)."""
        if self._directory is None:
            raise RuntimeError(f"{self.kind} has not been started")
        return self._directory

    @property
    def log_path(self) -> Path:
        """File that receives the server's stdout and stderr (all starts)."""
        return self.directory / self.log_name

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """The tail of the server log, for assertion messages."""
        return _tail(self.log_path)

    def start(self) -> Self:
        """Start the server (again) and block until it serves requests.

        The first start creates the temp directory and runs one-off setup;
        later starts reuse the same directory and port.  Starting a running
        server is a no-op.  On a failed first start everything is cleaned up
        before :class:`ServerStartError` is raised.
        """
        if self.running:
            return self
        first = self._directory is None
        if first:
            self._directory = self._make_directory()
            _LIVE_SERVERS.add(self)
        try:
            if first:
                self._prepare()
            attempts = (
                1 if (self._port_pinned or not first) else _FIRST_START_PORT_ATTEMPTS
            )
            for attempt in range(1, attempts + 1):
                try:
                    self._launch_and_wait()
                    break
                except ServerStartError as exc:
                    if not exc.port_in_use or attempt == attempts:
                        raise
                    self.port = free_port()
            self._port_pinned = True
            if first:
                self._bootstrap()
        except BaseException:
            if first:
                self.close()
            else:
                self._stop_process()
            raise
        return self

    def stop(self) -> None:
        """Stop the server gracefully, keeping its port and directory for start()."""
        self._stop_process()

    def close(self) -> None:
        """Stop the server and delete its temp directory (idempotent)."""
        try:
            self._stop_process()
        finally:
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None
            _LIVE_SERVERS.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {LOOPBACK}:{self.port} {state}>"

    # --------------------------------------------------- subclass contract

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Return truthy once the server answers; raising means "not yet"."""
        raise NotImplementedError

    def _make_directory(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"soundstage-{self.kind}-"))

    def _prepare(self) -> None:
        """One-off setup after the directory exists, before the first launch."""

    def _bootstrap(self) -> None:
        """One-off setup after the first successful launch."""

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _request_shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        """Ask the process to exit cleanly; the caller waits for it."""
        proc.terminate()

    # ------------------------------------------------------------ internals

    def _launch_and_wait(self) -> None:
        log_path = self.log_path
        log_start = log_path.stat().st_size if log_path.exists() else 0
        command = self._command()
        with log_path.open("ab") as log:
            log.write(
                f"\n=== starting {self.kind} on port {self.port}: {command}\n".encode()
            )
            log.flush()
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=self._environment(),
                )
            except OSError as exc:
                raise ServerStartError(f"cannot run {command[0]!r}: {exc}") from exc
        self._proc = proc

        def ready() -> object:
            if proc.poll() is not None:
                return _EXITED
            answered = self._probe()
            # Re-check: if our process died meanwhile, whatever answered the
            # probe is some other program holding the port, not our server.
            return _EXITED if proc.poll() is not None else answered

        try:
            outcome = wait_until(
                ready,
                timeout=self.startup_timeout,
                message=f"{self.kind} on {LOOPBACK}:{self.port} to accept connections",
            )
        except TimeoutError as exc:
            self._stop_process()
            raise ServerStartError(
                f"{exc}\n--- {self.kind} log ---\n{self.log_text()}"
            ) from exc
        if outcome is _EXITED:
            self._proc = None
            new_output = log_path.read_bytes()[log_start:].decode(
                "utf-8", errors="replace"
            )
            raise ServerStartError(
                f"{self.kind} exited with status {proc.returncode} while starting on "
                f"{LOOPBACK}:{self.port}\n--- {self.kind} log ---\n{self.log_text()}",
                port_in_use="address already in use" in new_output.lower(),
            )

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                try:
                    self._request_shutdown(proc)
                    proc.wait(timeout=self.stop_timeout)
                except (subprocess.TimeoutExpired, OSError, subprocess.SubprocessError):
                    self._force_kill(proc)
        finally:
            self._proc = None

    def _force_kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Last resort when a graceful stop failed."""
        proc.kill()
        proc.wait(timeout=self.stop_timeout)

    def _kill_process(self) -> None:
        """SIGKILL the server (a crash, not a shutdown) and reap it."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=self.stop_timeout)
        finally:
            self._proc = None


# ====================================================================== Redis


class RedisServer(_ManagedServer):
    """A private ``redis-server`` with persistence disabled.

    No RDB/AOF files are written, so a stop()/start() cycle (a simulated
    broker outage) comes back EMPTY on the same port, like a broker that lost
    its in-memory state.  Use :meth:`kill` to simulate a crash instead of a
    clean shutdown.
    """

    kind = "redis"
    log_name = "redis.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        startup_timeout: float = 15.0,
        executable: str | None = None,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.executable = executable or _find_executable(
            "redis-server", "/usr/bin/redis-server"
        )

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
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
            "--appendonly", "no",
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


# ================================================================= PostgreSQL

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _postgres_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres of one PostgreSQL install.

    Debian puts the real binaries in /usr/lib/postgresql/<major>/bin and may
    put version-dispatching wrappers on PATH, so a PATH hit only counts if
    all three binaries live side by side after resolving symlinks.
    """
    needed = ("initdb", "pg_ctl", "postgres")
    candidates: list[Path] = []
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(
        sorted(
            installed,
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in needed):
            return bindir
    raise ServerStartError(
        "cannot find a PostgreSQL install (initdb, pg_ctl and postgres in one directory); "
        f"looked in {[str(c) for c in candidates]}"
    )


class PostgresServer(_ManagedServer):
    """A private PostgreSQL cluster with durability turned off for speed.

    PostgreSQL refuses to run as root, so when the tests run as root every
    server command goes through ``runuser -u postgres`` and the temp dir is
    handed to that user.  Authentication is ``trust`` (loopback only, test
    data only); the ``soundstage`` superuser still has the password
    ``soundstage`` so application URLs look like production ones.

    Tests isolate from each other with :meth:`create_database` rather than
    one server per test, because a fresh database takes milliseconds and a
    fresh cluster takes seconds.
    """

    kind = "postgres"
    log_name = "postgres.log"
    user: ClassVar[str] = "soundstage"
    password: ClassVar[str] = "soundstage"
    database: ClassVar[str] = "soundstage"
    os_user: ClassVar[str] = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
        bindir: str | Path | None = None,
        max_connections: int = 200,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.bindir = Path(bindir) if bindir is not None else _postgres_bindir()
        self.max_connections = max_connections
        self._as_root = os.geteuid() == 0
        self._runuser = (
            _find_executable("runuser", "/usr/sbin/runuser", "/sbin/runuser")
            if self._as_root
            else ""
        )

    # ----------------------------------------------------------- public API

    @property
    def data_directory(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self.directory / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy-style URL of the ``soundstage`` database."""
        return self.url_for(self.database)

    @property
    def dsn(self) -> str:
        """Plain libpq URL of the ``soundstage`` database (for psycopg.connect)."""
        return self.dsn_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy-style ``postgresql+psycopg://`` URL of ``database``."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """Plain ``postgresql://`` URL of ``database``, accepted by psycopg/libpq."""
        return f"postgresql://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database owned by ``soundstage``; return its URL.

        ``name`` must be a plain identifier (letters, digits, underscore) so
        the returned URL needs no escaping.
        """
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain identifier of at most 63 chars: {name!r}")
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        return self.url_for(name)

    # ------------------------------------------------------------ internals

    def _as_postgres(self, *argv: str) -> list[str]:
        if self._as_root:
            return [self._runuser, "-u", self.os_user, "--", *argv]
        return list(argv)

    def _make_directory(self) -> Path:
        base = Path(tempfile.gettempdir())
        if self._as_root and not (base.stat().st_mode & 0o001):
            # The postgres user must be able to traverse into our directory.
            base = Path("/tmp")
        directory = Path(tempfile.mkdtemp(prefix="soundstage-postgres-", dir=base))
        if self._as_root:
            account = pwd.getpwnam(self.os_user)
            os.chown(directory, account.pw_uid, account.pw_gid)
        return directory

    def _environment(self) -> dict[str, str]:
        # Stray PG* variables (PGDATA, PGPORT, PGHOST...) from the developer's
        # shell must not redirect our private cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _prepare(self) -> None:
        initdb_log = self.directory / "initdb.log"
        command = self._as_postgres(
            str(self.bindir / "initdb"),
            "--pgdata", str(self.data_directory),
            "--username", "postgres",
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        with initdb_log.open("wb") as log:
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=self._environment(),
                    timeout=self.startup_timeout,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ServerStartError(
                    f"initdb failed: {exc}\n--- initdb log ---\n{_tail(initdb_log)}"
                ) from exc
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb exited with status {result.returncode}: {command}\n"
                f"--- initdb log ---\n{_tail(initdb_log)}"
            )

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.directory),
            "max_connections": str(self.max_connections),
            # Durability is worthless for throwaway test data; speed is not.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_directory),
            "-p",
            str(self.port),
        ]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return self._as_postgres(*argv)

    def _admin_conninfo(self, dbname: str = "postgres") -> str:
        return f"host={LOOPBACK} port={self.port} user=postgres dbname={dbname} connect_timeout=2"

    def _probe(self) -> bool:
        with psycopg.connect(self._admin_conninfo()) as conn:
            conn.execute("SELECT 1")
        return True

    def _bootstrap(self) -> None:
        with psycopg.connect(self._admin_conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} WITH LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    def _request_shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        # "fast": roll back open transactions and disconnect clients now,
        # which is what an operator restarting a database does.
        command = self._as_postgres(
            str(self.bindir / "pg_ctl"), "stop",
            "-D", str(self.data_directory),
            "-m", "fast", "-w", "-t", str(int(self.stop_timeout)),
        )  # fmt: skip
        with self.log_path.open("ab") as log:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self._environment(),
                timeout=self.stop_timeout + 5,
                check=True,
            )

    def _force_kill(self, proc: subprocess.Popen[bytes]) -> None:
        # With runuser in between, killing our child would orphan the
        # postmaster; signal the postmaster itself (immediate shutdown).
        pid_file = self.data_directory / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGQUIT)
        except (OSError, ValueError, IndexError):
            pass
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            super()._force_kill(proc)


# ========================================================================= S3


class S3Server(_ManagedServer):
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

    def __init__(
        self, *, port: int | None = None, startup_timeout: float = 30.0
    ) -> None:
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
        self.client().create_bucket(Bucket=name)
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
        with self._http.open(
            f"{self.endpoint_url}/moto-api/data.json", timeout=2
        ) as response:
            return bool(response.status == 200)
