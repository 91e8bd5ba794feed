"""`X-Request-ID` (echoed, or made), on the API's log lines and on the task message of the job the request
made; the per-route HTTP counter the 5xx alert reads. In-process against real Redis and each database."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from soundstage.logs import JsonFormatter, _ContextFilter
from soundstage.queue import REQUEST_ID_HEADER
from tests.integration.test_api import make_client, queued_payloads
from tests.integration.test_api import redis as redis  # noqa: PLC0414 - the fixture, re-exported for pytest
from tests.support.servers import RedisServer


def test_a_request_id_is_echoed_logged_and_sent_with_the_job(
    database_url: str, redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis.client().flushall()
    caplog.handler.addFilter(_ContextFilter())
    with make_client(database_url, redis, tmp_path) as client, caplog.at_level(logging.INFO):
        response = client.post("/generate", json={"prompt": "x", "duration": 1}, headers={"X-Request-ID": "abc-123"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "abc-123"
        (message,) = queued_payloads(redis)
        assert message["headers"][REQUEST_ID_HEADER] == "abc-123"  # the worker's lines will carry it
        for bad in ("", "x" * 129, "has space", "semi;colon"):
            made = client.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert made != bad and len(made) == 32  # a fresh id instead
        assert client.get("/health").headers["x-request-id"] != client.get("/health").headers["x-request-id"]
    tagged = [record for record in caplog.records if getattr(record, "request_id", None) == "abc-123"]
    assert tagged, "the API's lines for the request carry its id"
    line = JsonFormatter().format(tagged[0])
    assert '"request_id": "abc-123"' in line and f'"job_id": "{message["payload"]["job_id"]}"' in line


def test_answers_are_counted_per_route_template(database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    with make_client(database_url, redis, tmp_path) as client:
        client.get("/jobs/00000000-0000-0000-0000-000000000000")  # 404 from the route
        client.get("/no/such/path/12345")
        client.post("/generate", json={"prompt": "x", "duration": -1})  # 422
        metrics = client.get("/metrics").text
    assert 'soundstage_http_requests_total{method="GET",route="/jobs/{job_id}",status="404"} 1.0' in metrics
    assert 'soundstage_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in metrics
    assert 'soundstage_http_requests_total{method="POST",route="/generate",status="422"} 1.0' in metrics


def test_every_metric_the_alerts_and_dashboard_read_is_served(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    from tests.deploy.test_compose import SERVED_METRICS

    with make_client(database_url, redis, tmp_path) as client:
        client.get("/health")
        metrics = client.get("/metrics").text
    families = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ")}
    for name in SERVED_METRICS:
        family = name.removesuffix("_bucket")
        assert family in families or family.removesuffix("_total") in families, name
