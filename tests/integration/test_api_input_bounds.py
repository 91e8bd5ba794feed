"""Input that used to reach a server error: numbers past what the database takes, JSON nested past what
the parser recurses through, and conditional downloads the way RFC 9110 spells them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from soundstage.schemas.jobs import MAX_LIST_SKIP
from soundstage_api.json_text import MAX_JSON_DEPTH
from tests.integration.test_api import make_client
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.integration.test_api_continue import _error
from tests.integration.test_api_wait import app_state, finish_job
from tests.support.audio_files import encode, synth
from tests.support.servers import RedisServer

HUGE = 3609499379709934078787584  # the skip that overflowed SQLite's 64-bit OFFSET


@pytest.fixture
def client(database_url: str, redis: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(database_url, redis, tmp_path) as client:
        yield client


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/jobs", "/files"])
def test_a_skip_past_the_bound_is_a_422_and_the_bound_itself_answers(client: TestClient, path: str) -> None:
    for bad in (HUGE, MAX_LIST_SKIP + 1, 2**63):
        error = _error(client.get(path, params={"skip": bad}), 422, "validation_error")
        assert error["details"][0]["loc"] == ["query", "skip"]
    assert client.get(path, params={"skip": MAX_LIST_SKIP}).status_code == 200


def test_an_overlong_parent_id_is_a_422(client: TestClient) -> None:
    _error(client.get("/jobs", params={"parent_id": "x" * 65}), 422, "validation_error")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 30_000])  # 30,000: past the parser's recursion, under 64 KiB
def test_json_nested_too_deep_is_a_422_on_every_kind_of_body(client: TestClient, depth: int) -> None:
    headers = {"Content-Type": "application/json"}
    separate = _error(
        client.post("/separate", content=f'{{"audio_url": {_nested(depth)}}}', headers=headers), 422, "validation_error"
    )
    assert "levels deep" in separate["message"] and separate["details"][0]["type"] == "json_too_deep"
    prompt = encode("wav", synth(32000, 1, 1.0), 32000)
    files = {"audio_file": ("p.wav", prompt, "audio/wav"), "params": (None, f'{{"prompt": {_nested(depth)}}}')}
    form = _error(client.post("/generate/continue", files=files), 422, "validation_error")
    assert form["details"][0]["loc"] == ["body", "params"] and form["details"][0]["type"] == "json_too_deep"
    assert client.get("/jobs").json()["total"] == 0  # nothing was created
    assert client.get("/health").status_code == 200  # and the connection and the server are fine


def test_json_nested_past_the_parsers_recursion_on_a_json_route_is_a_422(client: TestClient) -> None:
    body = f'{{"prompt": "x", "duration": 1, "mood": {_nested(100_000)}}}'
    error = _error(
        client.post("/generate", content=body, headers={"Content-Type": "application/json"}), 422, "validation_error"
    )
    assert error["details"][0]["type"] == "json_too_deep"


def test_a_body_that_cannot_be_parsed_is_a_422_with_a_code(client: TestClient) -> None:
    # Not UTF-8: FastAPI's own answer was a bare 400 `http_error` (found by `make fuzz`).
    garbage = b"\x1c{\xff\xfe"
    headers = {"Content-Type": "application/json"}
    error = _error(client.post("/generate", content=garbage, headers=headers), 422, "validation_error")
    assert error["details"][0]["type"] == "body_unparsable"
    # S.Rocks answers its validation errors as 400, this one too.
    assert client.post("/srocks/generate/", content=garbage, headers=headers).status_code == 400


def test_json_nested_within_the_bound_is_judged_as_usual(client: TestClient) -> None:
    body = f'{{"audio_url": {_nested(MAX_JSON_DEPTH - 1)}}}'
    error = _error(
        client.post("/separate", content=body, headers={"Content-Type": "application/json"}), 422, "validation_error"
    )
    assert error["details"][0]["type"] != "json_too_deep"


def test_if_none_match_star_and_weak_tags_answer_304(client: TestClient) -> None:
    job_id = client.post("/generate", json={"prompt": "x", "duration": 1}).json()["job_id"]
    finish_job(app_state(client), job_id)
    name = f"/files/{job_id}_generated.wav"
    etag = client.get(name).headers["etag"]
    for header in ("*", etag, f"W/{etag}", f'"other", {etag}'):
        answer = client.get(name, headers={"If-None-Match": header})
        assert answer.status_code == 304 and answer.content == b"", header
    assert client.get(name, headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_405_names_every_method_the_path_serves(client: TestClient) -> None:
    # FastAPI makes one route per method; Starlette's 405 named the first one's only ("GET").
    refused = client.options("/jobs/0658da75-efdb-4f56-92bd-accbc08dacec")
    assert refused.status_code == 405 and refused.headers["Allow"] == "DELETE, GET"
    assert refused.json()["error"]["code"] == "method_not_allowed"


def test_openapi_states_the_error_shape_and_the_key_errors_of_every_operation(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in repr(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if "422" in responses:
                schema = responses["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(responses), (method, path)
    assert "422" in document["paths"]["/jobs"]["get"]["responses"]
    assert {"401", "403"} <= set(document["paths"]["/files/"]["get"]["responses"])
    assert "404" in document["paths"]["/jobs"]["get"]["responses"]  # an unknown parent_id
    srocks = document["paths"]["/srocks/files/"]["get"]["responses"]
    assert "400" in srocks and "422" not in srocks  # S.Rocks answers its validation errors as 400


def test_a_json_body_past_max_body_kb_is_a_413_even_without_a_length(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length to refuse it by
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}'

    with make_client(database_url, redis, tmp_path, max_body_kb=32) as client:
        error = _error(
            client.post("/generate", content=chunks(), headers={"Content-Type": "application/json"}),
            413,
            "body_too_large",
        )
        assert error["details"] == {"max_bytes": 32 * 1024} and "MAX_BODY_KB" in error["message"]
        assert client.get("/jobs").json()["total"] == 0
        small = client.post("/generate", json={"prompt": "x" * 1000, "duration": 1})
        assert small.status_code == 200, small.text  # under the cap, read and parsed as before


def test_every_api_route_checks_its_key_before_the_body(client: TestClient) -> None:
    from fastapi.routing import APIRoute

    from soundstage_api.guarded_route import GuardedRoute

    def walk(routes: list[object]) -> Iterator[object]:  # FastAPI keeps included routers' routes inside them
        for route in routes:
            inner = getattr(route, "original_router", None)
            yield from walk(inner.routes) if inner is not None else [route]

    routes = [route for route in walk(client.app.routes) if isinstance(route, APIRoute)]  # type: ignore[attr-defined]
    assert routes and all(isinstance(route, GuardedRoute) for route in routes), [
        route.path for route in routes if not isinstance(route, GuardedRoute)
    ]
