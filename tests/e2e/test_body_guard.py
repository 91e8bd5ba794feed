"""The real API process answers a body it will refuse before the body arrives: a request without a valid
key, and a JSON body declared larger than MAX_BODY_KB. Raw sockets, so nothing but the headers is sent."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.conftest import StackFactory
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

KEY = "k-body-guard"
DECLARED = 300 * 1024 * 1024  # what the request claims; only its headers are ever sent


def answer_to_headers(stack: Stack, path: str, headers: dict[str, str]) -> tuple[int, dict[str, object], float]:
    """Send only the headers of a POST declaring a DECLARED-byte body; the status and JSON of the answer,
    and how long it took (the body never comes: a server that waited for it would time out)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{stack.port}", f"Content-Length: {DECLARED}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            chunk = connection.recv(65536)  # raises TimeoutError if the server waits for the body
            if not chunk:
                break
            received += chunk
    elapsed = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body[: _length(received)]), elapsed


def _length(received: bytes) -> int:
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_a_body_is_refused_from_its_headers_alone(make_stack: StackFactory) -> None:
    stack = make_stack(API_KEYS=KEY, MAX_BODY_KB="64")
    stack.start_api()
    json_headers = {"Content-Type": "application/json"}
    for path in ("/generate", "/generate/soundtrack", "/separate"):
        status, body, elapsed = answer_to_headers(stack, path, json_headers)
        assert (status, body["error"]["code"]) == (401, "api_key_missing"), body  # type: ignore[index]
        assert elapsed < 5
        status, body, _ = answer_to_headers(stack, path, {**json_headers, "X-API-Key": "wrong"})
        assert (status, body["error"]["code"]) == (403, "api_key_invalid"), body  # type: ignore[index]
        status, body, _ = answer_to_headers(stack, path, {**json_headers, "X-API-Key": KEY})
        assert (status, body["error"]["code"]) == (413, "body_too_large"), body  # type: ignore[index]
        assert body["error"]["details"] == {"max_bytes": 64 * 1024}  # type: ignore[index]
    # The hosted API's route knows no 403: a wrong key is a 401 there, still before the body.
    hosted = "/segmind/v1/meta-musicgen-medium"
    status, body, _ = answer_to_headers(stack, hosted, {**json_headers, "x-api-key": "wrong"})
    assert (status, body["error"]["code"]) == (401, "api_key_invalid"), body  # type: ignore[index]
