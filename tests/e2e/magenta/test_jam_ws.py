"""The jam WebSocket (/ws/jam, /magenta/ws/jam) end to end through the package's real Magenta worker
(random:tiny, two slots) and real Redis: rt, binary and bar modes, live updates, ping, stop, every bad input
answered with an error event on a socket that stays up, a dropped socket freeing its slot, capacity on a
two-slot and a one-slot worker, and a worker killed mid-session."""

from __future__ import annotations

import base64
import json
import socket as socket_module
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.e2e.magenta.test_bars import loop_file
from tests.e2e.magenta.test_jam_http import all_free, slots, start, started
from tests.support.audio import assert_not_silent, decode
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

MAGENTA = "soundstage_magenta.app"
RT_START = {"type": "start", "mode": "rt", "params": {"styles": "disco, funk", "style_weights": "1, 0.5"}}


def ws_url(stack: Stack, path: str = "/ws/jam") -> str:
    return stack.url.replace("http://", "ws://") + path


@pytest.fixture
def socket(stack: Stack, client: httpx.Client) -> Iterator[ClientConnection]:
    with connect(ws_url(stack), max_size=None, open_timeout=10) as connection:
        yield connection
    wait_until(lambda: all_free(client), 60, message="the socket's session to free its slot")


def send(connection: ClientConnection, message: dict[str, Any]) -> None:
    connection.send(json.dumps(message))


def receive(connection: ClientConnection, *types: str, timeout: float = 60) -> dict[str, Any]:
    """The next text message of one of ``types`` (others are skipped), within ``timeout``."""
    while True:
        raw = connection.recv(timeout=timeout)
        if isinstance(raw, bytes):
            continue
        message: dict[str, Any] = json.loads(raw)
        if not types or message["type"] in types:
            return message


def test_rt_jam_streams_chunks_takes_updates_answers_pings_and_stops(socket: ClientConnection) -> None:
    send(socket, RT_START)
    begun = receive(socket, "started", "error")
    assert begun["type"] == "started", begun
    assert begun["chunk_duration_seconds"] == 2.0 and begun["sample_rate"] == 48_000 and begun["mode"] == "rt"
    assert set(begun["steering_assets"]) == {"repo", "mean", "centroids"} and begun["random_weights"] is True
    chunks = [receive(socket, "chunk") for _ in range(3)]
    assert [chunk["index"] for chunk in chunks] == [1, 2, 3]
    for chunk in chunks:
        audio = decode(base64.b64decode(chunk["audio_base64"]))
        assert audio.sample_rate == 48_000 and audio.channels == 2
        assert audio.samples.shape[1] == chunk["metadata"]["total_samples"] == 96_000
        assert_not_silent(audio)
    send(socket, {"type": "update", "styles": "jazz", "temperature": 1.4, "topk": 30})
    applied = receive(socket, "status", "error")
    assert applied["type"] == "status" and applied["applied_from_chunk"] > 3, applied
    chunk = receive(socket, "chunk")
    while chunk["index"] < applied["applied_from_chunk"]:
        assert chunk["metadata"]["temperature"] == pytest.approx(1.1)
        chunk = receive(socket, "chunk")
    assert chunk["metadata"]["temperature"] == pytest.approx(1.4) and chunk["metadata"]["topk"] == 30
    send(socket, {"type": "consume", "chunk_index": 10**6})
    too_far = receive(socket, "error")
    assert too_far["code"] == "validation_error" and too_far["fatal"] is False
    send(socket, {"type": "ping", "t": 42})
    pong = receive(socket, "pong")
    assert pong["t"] == 42 and pong["server_time"] > 0
    send(socket, {"type": "stop"})
    stopped = receive(socket, "stopped")
    assert stopped["last_index"] >= chunk["index"] and stopped["code"] is None


def test_binary_mode_sends_a_wav_frame_then_its_metadata(stack: Stack, client: httpx.Client) -> None:
    with connect(ws_url(stack, "/magenta/ws/jam"), max_size=None) as connection:
        send(connection, {**RT_START, "binary_audio": True, "params": {"styles": "techno", "chunk_seconds": 1.0}})
        assert receive(connection, "started")["binary_audio"] is True
        for index in (1, 2):
            frame = connection.recv(timeout=60)
            assert isinstance(frame, bytes) and frame[:4] == b"RIFF"
            meta = json.loads(connection.recv(timeout=10))
            assert meta["type"] == "chunk_meta" and meta["index"] == index and meta["bytes"] == len(frame)
            audio = decode(frame)
            assert audio.samples.shape[1] == meta["metadata"]["total_samples"] == 48_000
        send(connection, {"type": "stop"})
        receive(connection, "stopped")
    wait_until(lambda: all_free(client), 60, message="the slot to be free")


def test_bar_mode_continues_a_loop_in_bar_exact_chunks(socket: ClientConnection) -> None:
    loop = base64.b64encode(loop_file(44_100)).decode()
    send(socket, {"type": "start", "mode": "bar", "loop_audio_b64": loop, "bpm": 100, "bars_per_chunk": 2})
    begun = receive(socket, "started", "error")
    assert begun["type"] == "started", begun
    assert begun["sample_rate"] == 44_100 and begun["chunk_duration_seconds"] == pytest.approx(4.8)  # the loop's
    lengths = [receive(socket, "chunk")["metadata"]["total_samples"] for _ in range(2)]
    assert lengths == [round(4.8 * 44_100), round(9.6 * 44_100) - round(4.8 * 44_100)]


def test_bad_messages_get_error_events_and_the_socket_stays_up(socket: ClientConnection) -> None:
    def error_for(message: str | bytes) -> dict[str, Any]:
        socket.send(message)
        answer = receive(socket, "error")
        assert answer["fatal"] is False
        return answer

    assert error_for(b"\x00\x01binary")["code"] == "bad_message"
    assert error_for("{not json")["code"] == "bad_message"
    assert error_for(json.dumps({"type": "dance"}))["code"] == "bad_message"
    assert error_for(json.dumps({"no": "type"}))["code"] == "bad_message"
    assert error_for(json.dumps({"type": "ping", "extra": 1}))["code"] == "bad_message"
    assert error_for(json.dumps({"type": "update", "styles": "jazz"}))["code"] == "session_not_started"
    assert error_for(json.dumps({"type": "consume", "chunk_index": 1}))["code"] == "session_not_started"
    huge = json.dumps({"type": "ping", "t": "x" * (25 * 1024 * 1024)})
    assert error_for(huge)["code"] == "body_too_large"
    bar_without_bpm = {"type": "start", "mode": "bar", "loop_audio_b64": base64.b64encode(loop_file()).decode()}
    assert error_for(json.dumps(bar_without_bpm))["code"] == "validation_error"
    assert error_for(json.dumps({**bar_without_bpm, "bpm": 0}))["code"] == "bad_message"
    not_audio = {**bar_without_bpm, "bpm": 120, "loop_audio_b64": base64.b64encode(b"not audio" * 50).decode()}
    assert error_for(json.dumps(not_audio))["code"] == "audio_undecodable"
    assert error_for(json.dumps({**not_audio, "loop_audio_b64": "%%%"}))["code"] == "audio_undecodable"
    other = {"type": "start", "mode": "bar", "session_id": "f" * 32}
    assert error_for(json.dumps(other))["code"] == "session_not_found"
    send(socket, {"type": "ping"})
    assert receive(socket, "pong")["type"] == "pong"  # still up, still answering


def test_a_dropped_socket_stops_its_session_and_frees_its_slot(stack: Stack, client: httpx.Client) -> None:
    with connect(ws_url(stack), max_size=None) as connection:
        send(connection, RT_START)
        session_id = receive(connection, "started")["session_id"]
        receive(connection, "chunk")
        assert [slot["used"] for slot in slots(client)] == [1]
        connection.socket.shutdown(socket_module.SHUT_RDWR)  # the network is gone: no close frame
        wait_until(lambda: all_free(client), 30, message="the dropped socket's slot to be freed")
    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["running"] is False


def test_capacity_on_two_slot_and_one_slot_workers_and_a_killed_worker_ends_its_jam(
    stack: Stack, client: httpx.Client
) -> None:
    http_jams = [started(client), started(client)]  # the package's worker: two slots, both served
    try:
        refused = start(client)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "capacity"
        assert int(refused.headers["Retry-After"]) > 0
        with connect(ws_url(stack), max_size=None) as connection:
            send(connection, RT_START)
            full = receive(connection, "error")
            assert full["code"] == "capacity" and "slot" in full["message"]

        # A second worker with one slot takes the next jam; then everything is full again.
        second = stack.start_worker(module=MAGENTA, env={"MAGENTA_SESSIONS_PER_WORKER": "1"})
        try:
            wait_until(lambda: sorted(s["capacity"] for s in slots(client)) == [1, 2], 300, message=stack.logs())
            with connect(ws_url(stack), max_size=None) as connection:
                send(connection, RT_START)
                session_id = receive(connection, "started")["session_id"]
                assert start(client).json()["error"]["code"] == "capacity"
                status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
                assert status["worker"].endswith(f":{second.pid}")
                receive(connection, "chunk")

                second.kill_group()  # mid-session: no goodbye; its lease lapses
                lost = receive(connection, "error", timeout=30)
                assert lost["code"] == "worker_lost" and lost["fatal"] is True
                assert receive(connection, "stopped")["code"] == "worker_lost"
                send(connection, {"type": "ping"})
                assert receive(connection, "pong")["type"] == "pong"  # the socket outlives its session
            ended = client.get("/magenta/jam/next", params={"session_id": session_id})
            assert ended.status_code == 404 and ended.json()["error"]["details"]["code"] == "worker_lost"
        finally:
            second.stop()
            stack.workers.remove(second)
    finally:
        for session_id in http_jams:
            client.post("/magenta/jam/stop", json={"session_id": session_id})
    wait_until(lambda: all_free(client), 60, message="the slots to be free again")


def test_health_has_what_a_same_origin_tester_page_reads_and_metrics_show_the_jams(
    socket: ClientConnection, client: httpx.Client
) -> None:
    health = client.get("/health").json()
    assert health["ok"] is True and health["mode"] == "serve" and health["warmed"] is True and health["status"]
    send(socket, RT_START)
    receive(socket, "started")
    receive(socket, "chunk")
    [worker] = [w for w in client.get("/health").json()["workers"] if w.get("jam")]
    assert worker["jam"]["capacity"] == 2 and worker["jam"]["used"] == 1 and worker["jam"]["free"] == 1
    metrics = client.get("/metrics").text
    assert f'soundstage_jam_slots{{state="used",worker="{worker["hostname"]}"}} 1.0' in metrics
    assert f'soundstage_jam_slots{{state="free",worker="{worker["hostname"]}"}} 1.0' in metrics
    chunks = [
        line for line in metrics.splitlines() if line.startswith('soundstage_jam_chunks_total{model="random:tiny"}')
    ]
    assert chunks and float(chunks[0].split()[-1]) >= 1
    assert 'soundstage_jam_chunk_lateness_seconds_bucket{kind="jam",le="0.0",model="random:tiny"}' in metrics
    assert "# TYPE soundstage_jam_underruns_total counter" in metrics
    send(socket, {"type": "stop"})
    receive(socket, "stopped")
