"""Transport limits of the real API process (soundstage_api.transport), over raw sockets: a request head
over MAX_HEADER_KB is 431, a client that does not finish its head is 408 and dropped, a stalled body is
dropped, and a slow but steady one still gets its answer."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.conftest import StackFactory
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HALF_SENT = 200


def connect(stack: Stack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.port), timeout=10)


def read_answer(connection: socket.socket) -> tuple[int, bytes]:
    """The status and body of the one answer on ``connection`` (which the server then closes)."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def closed_by_server(connection: socket.socket) -> bool:
    """True once the server closed ``connection`` (what it sent first, if anything, is read and dropped)."""
    connection.setblocking(False)
    try:
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    stack = make_module_stack(MAX_HEADER_KB="16", HEADER_TIMEOUT_SECONDS="2", BODY_IDLE_TIMEOUT_SECONDS="2")
    stack.start_api()
    return stack


def test_a_head_over_max_header_kb_is_431(stack: Stack) -> None:
    with connect(stack) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17 * 1024 + b"\r\n\r\n")
        status, body = read_answer(connection)
    assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
    with connect(stack) as connection:  # many small headers count together
        headers = b"".join(b"X-H%d: %s\r\n" % (index, b"b" * 200) for index in range(100))
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert read_answer(connection)[0] == 431
    with connect(stack) as connection:  # a head within the cap is served
        connection.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: " + b"c" * 8000 + b"\r\n\r\n"
        )
        assert read_answer(connection)[0] == 200


def test_half_sent_requests_are_answered_408_and_dropped(stack: Stack) -> None:
    connections = [connect(stack) for _ in range(HALF_SENT)]
    try:
        for index, connection in enumerate(connections):
            if index % 2:  # half send nothing at all, half stop inside the head
                connection.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Ty")
        opened = time.monotonic()
        wait_until(lambda: all(closed_by_server(c) for c in connections), 15, message="half-sent requests dropped")
        assert time.monotonic() - opened < 10
    finally:
        for connection in connections:
            connection.close()
    with connect(stack) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_answer(connection)[0] == 200  # the server is as it was


def test_a_408_says_so_in_json(stack: Stack) -> None:
    with connect(stack) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        status, body = read_answer(connection)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


def _post_head(length: int) -> bytes:
    return (
        b"POST /generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_stalled_body_is_dropped_and_a_slow_steady_one_is_served(stack: Stack) -> None:
    body = json.dumps({"prompt": "slow client", "duration": 1, "model": "no-such-model"}).encode()
    with connect(stack) as connection:
        connection.sendall(_post_head(len(body)) + body[:10])
        stalled = time.monotonic()
        assert connection.recv(65536) == b""  # closed, without an answer: the route saw a disconnect
        assert 1.5 < time.monotonic() - stalled < 8
    with connect(stack) as connection:
        connection.sendall(_post_head(len(body)))
        for start in range(0, len(body), 8):  # a few bytes a second: slower in all than the idle timeout
            connection.sendall(body[start : start + 8])
            time.sleep(0.4)
        status, answer = read_answer(connection)
    assert status == 422 and json.loads(answer)["error"]["code"] == "unknown_model"  # it was read whole
