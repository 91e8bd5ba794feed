"""Text-to-music end to end in services mode: HTTP in, a real WAV out of S3."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.conftest import StackFactory
from tests.support.audio import assert_not_silent, decode, read_with_wave_module
from tests.support.stack import Stack, poll_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(API_KEYS="key-one,key-two")
    stack.start_api()
    stack.start_worker()
    stack.wait_for_workers(1)
    return stack


def test_generate_poll_download_and_decode(stack: Stack) -> None:
    with stack.client(headers={"X-API-Key": "key-two"}) as client:
        response = client.post(
            "/generate",
            json={"prompt": "gentle acoustic guitar", "duration": 2.5, "mood": "nostalgic and warm", "seed": 7},
            headers={"X-Request-ID": "e2e-request-7"},
        )
        assert response.status_code == 200, response.text
        created = response.json()
        assert created["status"] == "queued"
        job = poll_job(client, created["job_id"], {"completed", "failed"})
        assert job["status"] == "completed", (job, stack.logs())
        # The worker's lines for the job carry the request that made it.
        assert f"[req=e2e-request-7 job={created['job_id']}]" in stack.workers[0].log_text()
        assert job["progress"] == 100
        assert job["result_urls"] == [f"/files/{created['job_id']}_generated.wav"]
        assert job["params"]["full_prompt"] == "gentle acoustic guitar, nostalgic and warm"
        assert job["model"] == "random:tiny"
        assert job["result"]["random_weights"] is True and "random weights" in job["result"]["warning"]
        assert job["result"]["seed"] == 7
        assert job["started_at"] and job["finished_at"] and job["attempts"] == 1

        download = client.get(job["result_urls"][0])
        assert download.status_code == 200
        assert download.headers["content-type"] == "audio/wav"
        assert int(download.headers["content-length"]) == len(download.content)
        # Existing clients read the file with Python's wave module: 16-bit PCM, 32 kHz.
        rate, width, channels, frames = read_with_wave_module(download.content)
        assert (rate, width, channels) == (32000, 2, 1)
        assert abs(frames / rate - 2.5) <= 0.020
        audio = decode(download.content)
        assert_not_silent(audio)

        ranged = client.get(job["result_urls"][0], headers={"Range": "bytes=100-1123"})
        assert ranged.status_code == 206
        assert ranged.content == download.content[100:1124]
        assert ranged.headers["content-range"] == f"bytes 100-1123/{len(download.content)}"

        listing = client.get("/files/", params={"limit": 10}).json()
        assert listing[0]["filename"] == f"{created['job_id']}_generated.wav"
        assert listing[0]["size_kb"] == round(len(download.content) / 1024, 1)

        metrics = client.get("/metrics").text
        assert 'soundstage_jobs_completed_total{kind="generate",model="random:tiny"} 1.0' in metrics
        assert 'soundstage_generated_audio_seconds_total{kind="generate",model="random:tiny"} 2.5' in metrics
        assert "soundstage_job_duration_seconds_count" in metrics
        summary = client.get("/metrics/json").json()
        assert summary["jobs_completed"] == 1 and summary["avg_generation_time"] is not None
        health = client.get("/health").json()
        assert (
            health["models_loaded"] == {"musicgen": True, "magenta": False, "demucs": False}
            and health["device"] == "cpu"
        )
        assert health["loaded_models"] == ["random:tiny"] and health["mps_available"] is False
        worker = next(w for w in health["workers"] if w["queue"] == "musicgen")
        assert worker["capabilities"] == [
            {
                "model": "random:tiny",
                "sample_rate": 32000,
                "channels": 1,
                "melody": False,
                "sources": [],
                "max_segment": None,
                "random_weights": True,
            }
        ]


def test_seed_reproduces_samples_and_other_seeds_differ(stack: Stack) -> None:
    with stack.client(headers={"X-API-Key": "key-one"}) as client:

        def render(seed: int) -> np.ndarray:
            job_id = client.post("/generate", json={"text": "lofi beat", "duration": 1.5, "seed": seed}).json()[
                "job_id"
            ]
            job = poll_job(client, job_id, {"completed", "failed"})
            assert job["status"] == "completed", job
            return decode(client.get(job["result_urls"][0]).content).samples

        first, again, other = render(1234), render(1234), render(4321)
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


def test_auth_and_bad_input(stack: Stack) -> None:
    with stack.client() as client:
        assert client.post("/generate", json={"prompt": "x"}).json()["error"]["code"] == "api_key_missing"
        wrong = client.post("/generate", json={"prompt": "x"}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "api_key_invalid"
        assert client.get("/health").json()["auth_enabled"] is True
        assert client.get("/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
    with stack.client(headers={"X-API-Key": "key-one"}) as client:
        unknown = client.get("/jobs/0123456789abcdef0123456789abcdef")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
        bad = client.post("/generate", json={"prompt": "x", "duration": 0})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "duration"]


def test_cancel_running_job_stops_it(stack: Stack) -> None:
    with stack.client(headers={"X-API-Key": "key-one"}) as client:
        job_id = client.post("/generate", json={"prompt": "long piece", "duration": 30}).json()["job_id"]
        poll_job(client, job_id, {"processing"}, timeout=60)
        response = client.delete(f"/jobs/{job_id}")
        assert response.status_code == 200
        job = poll_job(client, job_id, {"cancelled", "completed", "failed"})
        assert job["status"] == "cancelled", job
        assert job["result_urls"] == []
        assert client.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"


def test_a_finished_job_is_removed_after_retention_hours_by_the_workers(make_stack: StackFactory) -> None:
    """RETENTION_HOURS of 4 s: the worker's own sweep (after its heartbeat) removes the job, its S3 output
    and its listing."""
    stack = make_stack(RETENTION_HOURS=str(4 / 3600))
    stack.start_api()
    stack.start_worker()
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = client.post("/generate", json={"prompt": "short-lived", "duration": 1}).json()["job_id"]
        job = poll_job(client, job_id, {"completed", "failed"})
        assert job["status"] == "completed", (job, stack.logs())
        url = job["result_urls"][0]
        assert client.get(url).status_code == 200
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").status_code == 404,
            40,
            interval=0.5,
            message=f"job {job_id} removed by retention\n{stack.logs()}",
        )
        assert client.get(url).status_code == 404
        assert client.get("/jobs").json()["total"] == 0 and client.get("/files/").json() == []
    assert "retention: removed 1 finished job(s)" in stack.logs()
