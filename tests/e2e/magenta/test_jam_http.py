"""The HTTP jam under /magenta/jam end to end (the iOS looper's contract), through the package's real
Magenta worker (random:tiny, MAGENTA_SESSIONS_PER_WORKER=2, MAGENTA_MAX_AHEAD_CHUNKS=2) and real Redis:
bar-exact chunks that join without a click, next/consume/update/status/stop with their codes, capacity,
another key's session, selecting a model (test_jam_ws has capacity and a killed worker)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.e2e.magenta.test_bars import loop_file
from tests.support.audio import DecodedAudio, assert_not_silent, decode
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

MAGENTA = "soundstage_magenta.app"
BPM = 120.0  # 4/4, one bar a chunk: 2 s chunks
CHUNK_SECONDS = 2.0
INTEGER_FIELDS = ("bpm", "bars", "beats_per_bar", "sample_rate", "channels", "total_samples", "topk")


def start(client: httpx.Client, **fields: str) -> httpx.Response:
    data = {"bpm": str(BPM), "bars_per_chunk": "1", "styles": "acid house", **fields}
    return client.post("/magenta/jam/start", files={"loop_audio": ("loop.wav", loop_file(48_000))}, data=data)


def started(client: httpx.Client, **fields: str) -> str:
    response = start(client, **fields)
    assert response.status_code == 200, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def take(client: httpx.Client, session_id: str, **params: Any) -> dict[str, Any]:
    response = client.get("/magenta/jam/next", params={"session_id": session_id, **params})
    assert response.status_code == 200, response.text
    chunk: dict[str, Any] = response.json()["chunk"]
    return chunk


def audio_of(chunk: dict[str, Any]) -> DecodedAudio:
    return decode(base64.b64decode(chunk["audio_base64"]))


def consume(client: httpx.Client, session_id: str, index: int) -> httpx.Response:
    return client.post("/magenta/jam/consume", data={"session_id": session_id, "chunk_index": str(index)})


def stop(client: httpx.Client, session_id: str) -> None:
    response = client.post("/magenta/jam/stop", json={"session_id": session_id})
    assert response.status_code == 200, response.text


def slots(client: httpx.Client) -> list[dict[str, Any]]:
    return [w["jam"] for w in client.get("/health").json()["workers"] if w.get("jam")]


def all_free(client: httpx.Client) -> bool:
    return all(slot["used"] == 0 for slot in slots(client))


@pytest.fixture
def jams(client: httpx.Client) -> Iterator[list[str]]:
    """Sessions a test started, stopped after it whatever happened (so the next test finds free slots)."""
    ids: list[str] = []
    yield ids
    for session_id in ids:
        client.post("/magenta/jam/stop", json={"session_id": session_id})
    wait_until(lambda: all_free(client), 60, message="the jam slots to be free again")


def test_a_jam_streams_bar_exact_chunks_that_join_without_a_click(client: httpx.Client, jams: list[str]) -> None:
    session_id = started(client, target_sample_rate="48000", seed="7")
    jams.append(session_id)
    chunks = []
    for index in (1, 2, 3):
        chunk = take(client, session_id)
        assert chunk["index"] == index
        metadata = chunk["metadata"]
        for name in INTEGER_FIELDS:
            assert type(metadata[name]) is int, (name, metadata[name])  # the iOS client decodes these as Int
        assert metadata["sample_rate"] == 48_000 and metadata["channels"] == 2 and metadata["bars"] == 1
        assert metadata["seconds_per_bar"] == 2.0 and metadata["loop_duration_seconds"] == 2.0
        audio = audio_of(chunk)
        assert audio.sample_rate == 48_000 and audio.channels == 2
        assert audio.samples.shape[1] == metadata["total_samples"] == 96_000  # bar-exact
        assert_not_silent(audio)
        chunks.append(audio.samples)
        assert consume(client, session_id, index).status_code == 200
    joined = np.concatenate(chunks, axis=1)
    # The step across each join is an ordinary step of the stream (the chunks are consecutive samples of it;
    # test_magenta_engine proves them equal to one uninterrupted stream).
    steps = np.abs(np.diff(joined, axis=1))
    for join in (96_000, 192_000):
        assert (steps[:, join - 1] <= np.percentile(steps, 99.9, axis=1)).all(), f"click at sample {join}"

    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["running"] is True and status["last_delivered_index"] == 3
    assert status["last_consumed_index"] == 3 and status["last_generated_index"] >= 3
    assert status["bpm"] == BPM and status["beats_per_bar"] == 4 and status["bars_per_chunk"] == 1
    assert status["chunk_duration_seconds"] == CHUNK_SECONDS and status["target_sample_rate"] == 48_000
    assert status["buffer_ahead"] == status["last_generated_index"] - 3 <= 2


def test_an_update_is_heard_from_the_next_chunk_made_and_stop_ends_the_session(
    client: httpx.Client, jams: list[str]
) -> None:
    session_id = started(client)
    jams.append(session_id)
    first = take(client, session_id)
    assert first["metadata"]["temperature"] == pytest.approx(1.1) and first["metadata"]["topk"] == 40
    response = client.post(
        "/magenta/jam/update",
        data={"session_id": session_id, "styles": "jazz, hiphop", "style_weights": "1, 0.5", "temperature": "1.3"},
    )
    assert response.status_code == 200, response.text
    consume(client, session_id, 1)
    generated = client.get("/magenta/jam/status", params={"session_id": session_id}).json()["last_generated_index"]
    # Chunks made before the update keep the old knobs; the first made after it has the new ones.
    seen = [take(client, session_id) for _ in range(generated)]
    for chunk in seen:
        consume(client, session_id, chunk["index"])
    temperatures = [chunk["metadata"]["temperature"] for chunk in seen]
    assert temperatures[-1] == pytest.approx(1.3) or take(client, session_id)["metadata"]["temperature"] == (
        pytest.approx(1.3)
    ), temperatures

    # Many controls at once (a slider) leave many events between two chunks: the next chunk still comes.
    for value in range(20):
        assert (
            client.post("/magenta/jam/update", json={"session_id": session_id, "topk": 20 + value}).status_code == 200
        )
    index = take(client, session_id)["index"]
    consume(client, session_id, index)

    # Reseeds: from the session's loop, from a new one, from the mix the client hears; the chunks stay bar-exact.
    assert client.post("/magenta/jam/reseed", data={"session_id": session_id}).status_code == 200
    new_loop = {"loop_audio": ("loop2.wav", loop_file(48_000, frequency=330.0))}
    assert (
        client.post("/magenta/jam/reseed", data={"session_id": session_id, "seed": "-1"}, files=new_loop).status_code
        == 200
    )
    mix = {"combined_audio": ("mix.wav", loop_file(48_000, seconds=4.0, frequency=110.0))}
    spliced = client.post("/magenta/jam/reseed_splice", data={"session_id": session_id, "anchor_bars": "1"}, files=mix)
    assert spliced.status_code == 200, spliced.text
    for _ in range(3):
        chunk = take(client, session_id)
        consume(client, session_id, chunk["index"])
        assert chunk["metadata"]["total_samples"] == 96_000
        assert_not_silent(audio_of(chunk))
    assert client.post("/magenta/jam/reseed", data={"session_id": session_id, "seed": str(2**64)}).status_code == 422
    no_mix = client.post("/magenta/jam/reseed_splice", data={"session_id": session_id})
    assert no_mix.status_code == 422 and no_mix.json()["error"]["code"] == "validation_error"
    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["running"] is True  # nothing above ended it

    stop(client, session_id)
    ended = client.get("/magenta/jam/next", params={"session_id": session_id})
    assert ended.status_code == 404 and ended.json()["error"]["code"] == "session_ended"
    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["running"] is False and status["state"] == "ended" and status["end_code"] is None
    again = client.post("/magenta/jam/stop", json={"session_id": session_id})
    assert again.status_code == 200  # stopping an ended session is not an error


def test_next_answers_204_without_waiting_408_after_its_timeout_and_consume_opens_the_window(
    client: httpx.Client, jams: list[str]
) -> None:
    session_id = started(client)
    jams.append(session_id)
    assert take(client, session_id)["index"] == 1
    assert take(client, session_id)["index"] == 2
    # Nothing consumed: the worker stops at 2 chunks ahead (MAGENTA_MAX_AHEAD_CHUNKS), so nothing comes.
    assert client.get("/magenta/jam/next", params={"session_id": session_id, "wait": "false"}).status_code == 204
    timed_out = client.get("/magenta/jam/next", params={"session_id": session_id, "timeout": "1.5"})
    assert timed_out.status_code == 408 and timed_out.json()["error"]["code"] == "chunk_timeout"
    assert "consume" in timed_out.json()["error"]["message"]
    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["last_generated_index"] == 2 and status["queued_chunks"] == 0 and status["buffer_ahead"] == 2

    too_far = consume(client, session_id, 5)
    assert too_far.status_code == 422 and too_far.json()["error"]["code"] == "validation_error"
    assert client.post("/magenta/jam/consume", json={"session_id": session_id, "chunk_index": 2}).status_code == 200
    assert take(client, session_id)["index"] == 3


def test_unknown_sessions_and_bad_requests_get_codes(client: httpx.Client) -> None:
    for path in ("/magenta/jam/next", "/magenta/jam/status"):
        response = client.get(path, params={"session_id": "nope"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found", path
    for path in ("/magenta/jam/update", "/magenta/jam/consume", "/magenta/jam/stop", "/magenta/jam/reseed"):
        fields = {"session_id": "f" * 32, **({"chunk_index": "1"} if path.endswith("consume") else {})}
        response = client.post(path, data=fields)
        assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found", path
    assert client.post("/magenta/jam/stop", json={}).json()["error"]["code"] == "validation_error"
    assert (
        client.post("/magenta/jam/stop", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    )

    bad = [
        ({"bpm": "0"}, "validation_error"),
        ({"bars_per_chunk": "16", "bpm": "20", "beats_per_bar": "16"}, "validation_error"),  # 768 s chunks
        ({"target_sample_rate": "22050"}, "validation_error"),
        ({"style_weights": "1, 2"}, "weights_mismatch"),
        ({"mean": "1"}, "steering_unavailable"),
    ]
    for fields, code in bad:
        response = start(client, **fields)
        assert response.status_code == 422, (fields, response.text)
        error = response.json()["error"]
        assert code in (error["code"], *(d.get("type") for d in error.get("details") or [])), (fields, error)
    not_audio = client.post(
        "/magenta/jam/start", files={"loop_audio": ("loop.wav", b"not audio at all" * 100)}, data={"bpm": "120"}
    )
    assert not_audio.status_code == 422 and not_audio.json()["error"]["code"] == "audio_undecodable"
    nothing = client.post("/magenta/jam/start", data={"bpm": "120"})
    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "validation_error"
    assert all_free(client)  # nothing refused took a slot


def test_a_keys_sessions_are_its_own_and_a_keyless_client_uses_a_per_key_path(
    stack: Stack, client: httpx.Client, jams: list[str]
) -> None:
    keyed = Stack(env={**stack.env, "API_KEYS": "alice-key,bob-key"}, log_dir=stack.log_dir / "keyed")
    keyed.log_dir.mkdir(exist_ok=True)
    keyed.start_api()
    try:
        alice = keyed.client(headers={"X-API-Key": "alice-key"})
        bob = keyed.client(headers={"X-API-Key": "bob-key"})
        session_id = started(alice)
        jams.append(session_id)
        assert take(alice, session_id)["index"] == 1
        for response in (
            bob.get("/magenta/jam/next", params={"session_id": session_id}),
            bob.get("/magenta/jam/status", params={"session_id": session_id}),
            bob.post("/magenta/jam/stop", json={"session_id": session_id}),
            bob.post("/magenta/jam/update", data={"session_id": session_id, "temperature": "2"}),
        ):
            assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found"
        assert bob.post("/magenta/jam/stop_all").json()["stopped"] == []
        assert alice.post("/magenta/jam/stop_all").json()["stopped"] == [session_id]
        wait_until(
            lambda: alice.get("/magenta/jam/status", params={"session_id": session_id}).json()["running"] is False,
            30,
            message="stop_all to end alice's session",
        )
        wait_until(lambda: all_free(client), 60, message="alice's slot to be free")

        # A client that sends no key at all (the iOS looper) is given a per-key base URL instead.
        keyless = keyed.client()
        assert start(keyless).status_code == 401
        base = "/k/alice-key/magenta"
        assert keyless.get(f"{base}/health").json()["status"] in ("ready", "initializing")
        jam = keyless.post(
            f"{base}/jam/start",
            files={"loop_audio": ("loop.wav", loop_file())},
            data={"bpm": "120", "bars_per_chunk": "1"},
        )
        assert jam.status_code == 200, jam.text
        keyless_id = jam.json()["session_id"]
        jams.append(keyless_id)
        assert keyless.get(f"{base}/jam/next", params={"session_id": keyless_id}).json()["chunk"]["index"] == 1
        assert alice.get("/magenta/jam/status", params={"session_id": keyless_id}).json()["running"] is True
        assert bob.get("/magenta/jam/status", params={"session_id": keyless_id}).status_code == 404
        wrong = keyless.get("/k/mallory-key/magenta/jam/status", params={"session_id": keyless_id})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "api_key_invalid"
        assert keyless.post(f"{base}/jam/stop", json={"session_id": keyless_id}).status_code == 200
        wait_until(lambda: all_free(client), 60, message="the keyless jam's slot to be free")

        # The socket too: no key is refused with an error event; the per-key path passes.
        socket_url = keyed.url.replace("http://", "ws://")
        with connect(f"{socket_url}/ws/jam") as refused:
            error = json.loads(refused.recv(timeout=10))
            assert error["type"] == "error" and error["code"] == "api_key_missing" and error["fatal"] is True
        with connect(f"{socket_url}/k/alice-key/magenta/ws/jam") as socket:
            socket.send(json.dumps({"type": "start", "params": {"styles": "dub"}}))
            begun = json.loads(socket.recv(timeout=60))
            assert begun["type"] == "started", begun
            socket.send(json.dumps({"type": "stop"}))
        assert keyed.api is not None and "alice-key" not in keyed.api.log_text()  # the path's key is never logged
    finally:
        keyed.stop()


def test_selecting_a_model_stops_running_jams_unless_told_not_to(client: httpx.Client, jams: list[str]) -> None:
    session_id = started(client)
    jams.append(session_id)
    assert take(client, session_id)["index"] == 1
    dry = client.post("/magenta/model/select", json={"size": "random:tiny", "dry_run": True})
    assert dry.status_code == 200 and dry.json()["active_jam"] is True, dry.text
    assert client.get("/magenta/model/config").json()["active_jam"] is True
    kept = client.post("/magenta/model/select", json={"size": "random:tiny", "stop_active": False})
    assert kept.status_code == 200 and kept.json()["active_jam"] is True
    assert client.get("/magenta/jam/status", params={"session_id": session_id}).json()["running"] is True
    switched = client.post("/magenta/model/select", json={"size": "random:tiny"})
    assert switched.status_code == 200 and switched.json()["active_jam"] is True
    status = client.get("/magenta/jam/status", params={"session_id": session_id}).json()
    assert status["running"] is False and status["end_reason"] == "the model was switched"
    wait_until(lambda: all_free(client), 30, message="the stopped jam to free its slot")
    assert client.get("/magenta/model/config").json()["active_jam"] is False
