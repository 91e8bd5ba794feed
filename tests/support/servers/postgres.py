"""A private PostgreSQL cluster for tests (the production database backend)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar

import psycopg
from psycopg import sql

from tests.support.servers.base import LOOPBACK, ManagedServer, ServerStartError, find_executable, log_tail

__all__ = ["PostgresServer"]


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


class PostgresServer(ManagedServer):
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
        self._runuser = find_executable("runuser", "/usr/sbin/runuser", "/sbin/runuser") if self._as_root else ""

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
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(self.user)))
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
                raise ServerStartError(f"initdb failed: {exc}\n--- initdb log ---\n{log_tail(initdb_log)}") from exc
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb exited with status {result.returncode}: {command}\n--- initdb log ---\n{log_tail(initdb_log)}"
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
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.database), sql.Identifier(self.user))
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
