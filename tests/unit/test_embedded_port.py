"""The embedded launcher's port check: a port in use is refused, a port a stopped stack just left is not."""

from __future__ import annotations

import socket
import time

import pytest

from soundstage.embedded import PortInUseError, _require_free_port


def _time_wait_port() -> int:
    """A port whose only socket is in TIME_WAIT: the server side closed a connection first, as a stopping
    API does with its keep-alive clients, then stopped listening."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds (Linux needs it on both)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = int(server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the active close: this end goes to TIME_WAIT
    deadline = time.monotonic() + 5
    while client.recv(1) and time.monotonic() < deadline:
        pass
    client.close()
    server.close()
    return port


def test_a_port_left_in_time_wait_by_a_stopped_stack_is_free() -> None:
    port = _time_wait_port()
    with socket.socket() as plain:  # what the check did before: a bind without SO_REUSEADDR fails
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    _require_free_port("127.0.0.1", port)


def test_a_port_another_program_listens_on_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}"):
            _require_free_port("127.0.0.1", port)
