"""Shared life cycle of the throwaway test servers (see the package docstring).

:class:`ManagedServer` owns everything that is the same for every server:
the private temp directory and log file, the fixed port (kept across
restarts), the readiness deadline poll, graceful and forced stops, and the
interpreter-exit cleanup of servers nobody closed.  Subclasses only supply a
command line and a readiness probe, plus optional one-off setup hooks.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from tests.support.waiting import free_port, wait_until

__all__ = [
    "LOOPBACK",
    "ManagedServer",
    "ServerStartError",
    "find_executable",
    "log_tail",
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
_LIVE_SERVERS: set[ManagedServer] = set()


@atexit.register
def _close_leftover_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            server.close()


def log_tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    """Return the end of a log file (or a note saying why there is none)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    text = data.decode("utf-8", errors="replace")
    if len(text) > chars:
        text = "...\n" + text[-chars:]
    return text or "<log is empty>"


def find_executable(name: str, *fallbacks: str) -> str:
    """Locate a server binary on PATH, then at well-known locations."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerStartError(f"cannot find {name!r} on PATH or at {', '.join(fallbacks) or '(no fallbacks)'}")


class ManagedServer:
    """One server process with a private temp dir, a log file and a fixed port.

    Subclasses supply the command line and a readiness probe; this class owns
    the life cycle so every server behaves the same way on start, restart,
    failure and cleanup.
    """

    kind: ClassVar[str] = "server"
    log_name: ClassVar[str] = "server.log"

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
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
        return log_tail(self.log_path)

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
            attempts = 1 if (self._port_pinned or not first) else _FIRST_START_PORT_ATTEMPTS
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
            log.write(f"\n=== starting {self.kind} on port {self.port}: {command}\n".encode())
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
            raise ServerStartError(f"{exc}\n--- {self.kind} log ---\n{self.log_text()}") from exc
        if outcome is _EXITED:
            self._proc = None
            new_output = log_path.read_bytes()[log_start:].decode("utf-8", errors="replace")
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
