"""`POST /generate/soundtrack` in-process against real Redis and each real database (no workers): what a
soundtrack job row and its message hold, and every refusal, each with its code, naming the field, and
leaving no job row, no message and no file behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from soundstage.pools import Queue
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.support import heartbeats
from tests.support.servers import RedisServer

# The photo-memory video generator's call (musicgen-api's README example): integer durations, no model.
CLIENT_BODY = {
    "base_prompt": "cinematic orchestral music",
    "scenes": [
        {"mood": "peaceful morning", "duration": 20},
        {"mood": "joyful celebration", "duration": 25},
        {"mood": "gentle farewell", "duration": 15},
    ],
    "use_beat_aligned_crossfade": True,
    "crossfade_duration": 2.0,
}


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    heartbeats.report(redis.client(), "demucs", heartbeats.DEMUCS_TINY, heartbeats.DEMUCS_SIX)
    served = {
        "musicgen": {"models": ["random:tiny", "random:tiny-melody"]},
        "demucs": {"models": ["random:tiny", "random:tiny-6s"]},
    }
    with make_client(database_url, redis, tmp_path, **served) as client:
        yield client


def _nothing_created(client: TestClient) -> None:
    state = client.app.state.soundstage  # type: ignore[attr-defined]
    assert client.get("/jobs").json()["total"] == 0
    assert [state.redis.llen(queue.value) for queue in Queue] == [0] * len(Queue)
    stored = Path(state.settings.resolved_storage_url)
    assert not stored.exists() or [p.name for p in stored.iterdir() if not p.name.startswith(".")] == []


def test_the_clients_call_is_recorded_and_sent_to_the_pipeline_pool(client: TestClient, redis: RedisServer) -> None:
    response = client.post("/generate/soundtrack", json=CLIENT_BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"job_id", "status"} and body["status"] == "queued"
    job_id = body["job_id"]
    assert len(job_id) == 36
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["kind"], job["status"], job["model"], job["children"]) == ("soundtrack", "queued", "random:tiny", [])
    params = job["params"]
    assert [scene["duration"] for scene in params["scenes"]] == [20.0, 25.0, 15.0]
    assert params["crossfade_duration"] == 2.0 and params["use_beat_aligned_crossfade"] is True
    # Server defaults, decided at submission (USE_STEM_AWARE_CROSSFADE, USE_QUALITY_LOOP, ...).
    assert (params["use_stem_aware_crossfade"], params["use_quality_loop"], params["max_regen_attempts"]) == (
        True,
        True,
        3,
    )
    assert (params["demucs_model"], params["loudness_target"], params["format"]) == ("random:tiny", -14.0, "wav")
    assert 0 <= params["seed"] <= 2**31 - 1
    messages = queued_payloads(redis, Queue.PIPELINE)
    assert [(m["headers"]["task"], m["payload"]) for m in messages] == [
        ("pipeline.advance", {"version": 1, "job_id": job_id})
    ]
    assert queued_payloads(redis, Queue.MUSICGEN) == []


def test_fractional_durations_overrides_and_stems(client: TestClient) -> None:
    body = {
        "base_prompt": "lofi",
        "scenes": [{"mood": "rain", "duration": 5.5, "prompt": "soft piano"}, {"duration": 7.25, "prompt": None}],
        "crossfade_duration": 0.5,
        "use_stem_aware_crossfade": False,
        "use_quality_loop": False,
        "stems": 6,
        "format": "flac",
        "sample_rate": 44100,
        "loudness_target": -16,
        "seed": 42,
        "model": "random:tiny",
    }
    response = client.post("/generate/soundtrack", json=body)
    assert response.status_code == 200, response.text
    params = client.get(f"/jobs/{response.json()['job_id']}").json()["params"]
    assert params["demucs_model"] == "random:tiny-6s"  # the served model that has six sources
    assert [scene["duration"] for scene in params["scenes"]] == [5.5, 7.25]
    assert (params["use_stem_aware_crossfade"], params["use_quality_loop"], params["stems"]) == (False, False, 6)
    assert (params["seed"], params["format"], params["sample_rate"], params["loudness_target"]) == (
        42,
        "flac",
        44100,
        -16,
    )


REFUSALS: dict[str, tuple[dict[str, Any], list[Any], str]] = {
    "no scenes": ({"base_prompt": "x", "scenes": []}, ["body", "scenes"], "validation_error"),
    "scenes missing": ({"base_prompt": "x"}, ["body", "scenes"], "validation_error"),
    "base_prompt missing": ({"scenes": [{"duration": 10}]}, ["body", "base_prompt"], "validation_error"),
    "empty base_prompt": (
        {"base_prompt": " ", "scenes": [{"duration": 10}]},
        ["body", "base_prompt"],
        "validation_error",
    ),
    "scene under 5 s": (
        {"base_prompt": "x", "scenes": [{"duration": 4.9}]},
        ["body", "scenes", 0, "duration"],
        "validation_error",
    ),
    "scene without duration": (
        {"base_prompt": "x", "scenes": [{"mood": "a"}]},
        ["body", "scenes", 0, "duration"],
        "validation_error",
    ),
    "crossfade too short": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "crossfade_duration": 0.4},
        ["body", "crossfade_duration"],
        "validation_error",
    ),
    "crossfade too long": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "crossfade_duration": 5.1},
        ["body", "crossfade_duration"],
        "validation_error",
    ),
    "unknown scene field": (
        {"base_prompt": "x", "scenes": [{"duration": 10, "tempo": 120}]},
        ["body", "scenes", 0, "tempo"],
        "validation_error",
    ),
    "bad stems": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "stems": 3},
        ["body", "stems"],
        "validation_error",
    ),
    "unknown model": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "model": "nope"},
        ["body", "model"],
        "unknown_model",
    ),
    "six stems on a four-source model": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "stems": 6},
        ["body", "stems"],
        "stems_not_supported",
    ),
    "melody on a text model": (
        {"base_prompt": "x", "scenes": [{"duration": 10}], "melody_audio_url": "http://127.0.0.1:9/m.wav"},
        ["body", "model"],
        "model_not_melody",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_name_the_field_and_create_nothing(
    database_url: str, redis: RedisServer, tmp_path: Path, case: str
) -> None:
    body, loc, code = REFUSALS[case]
    heartbeats.report(redis.client(), "demucs", heartbeats.DEMUCS_TINY)
    heartbeats.report(redis.client(), "musicgen", heartbeats.MUSICGEN_TINY)
    with make_client(
        database_url, redis, tmp_path, musicgen={"model": "random:tiny"}, demucs={"model": "random:tiny"}
    ) as client:
        error = _error(client.post("/generate/soundtrack", json=body), 422, code)
        assert any(detail["loc"] == loc for detail in error["details"]), error
        _nothing_created(client)


LIMITS: list[tuple[dict[str, float], dict[str, Any], list[Any]]] = [
    ({"max_scenes": 2}, {"scenes": [{"duration": 10}] * 3}, ["body", "scenes"]),
    (
        {"max_scene_seconds": 30},
        {"scenes": [{"duration": 10}, {"duration": 31}]},
        ["body", "scenes", 1, "duration"],
    ),
    ({"max_total_seconds": 60}, {"scenes": [{"duration": 30}, {"duration": 30.5}]}, ["body", "scenes"]),
    ({"min_scene_seconds": 8}, {"scenes": [{"duration": 7}]}, ["body", "scenes", 0, "duration"]),
]


@pytest.mark.parametrize("case", LIMITS, ids=["scenes", "scene", "total", "minimum"])
def test_server_limits_are_422_naming_the_field(
    database_url: str, redis: RedisServer, tmp_path: Path, case: tuple[dict[str, float], dict[str, Any], list[Any]]
) -> None:
    limits, body, loc = case
    with make_client(database_url, redis, tmp_path, soundtrack=limits) as client:
        error = _error(client.post("/generate/soundtrack", json={"base_prompt": "x", **body}), 422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [loc]
        assert "on this server" in error["message"]
        _nothing_created(client)


def test_limits_well_beyond_the_reference(client: TestClient) -> None:
    """musicgen-api refuses more than 40 scenes, scenes over 120 s and totals over 1200 s; the defaults here
    take 200 scenes, 10-minute scenes and an hour in all."""
    many = {"base_prompt": "x", "scenes": [{"duration": 18}] * 200}
    assert client.post("/generate/soundtrack", json=many).status_code == 200
    long = {"base_prompt": "x", "scenes": [{"duration": 600}] * 6}
    assert client.post("/generate/soundtrack", json=long).status_code == 200
    over = {"base_prompt": "x", "scenes": [{"duration": 600}] * 6 + [{"duration": 5}]}
    _error(client.post("/generate/soundtrack", json=over), 422, "validation_error")


def test_openapi_documents_the_soundtrack(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/generate/soundtrack"]["post"]
    assert "stems_not_supported" in operation["responses"]["422"]["description"]
    request = schema["components"]["schemas"]["SoundtrackRequest"]["properties"]
    assert {"base_prompt", "scenes", "crossfade_duration", "use_beat_aligned_crossfade", "stems"} <= set(request)
    assert request["crossfade_duration"]["minimum"] == 0.5 and request["crossfade_duration"]["maximum"] == 5.0
