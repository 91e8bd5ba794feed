"""Issue-3 features through the real API and worker: models, takes, formats, rates, loudness,
long-form and continuation uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from soundstage.audio import measure_loudness
from tests.e2e.conftest import StackFactory
from tests.support.audio import assert_not_silent, assert_seamless_at, decode
from tests.support.stack import Stack, poll_job

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(MUSICGEN_MODELS="random:tiny,random:tiny-stereo")
    stack.start_api()
    stack.start_worker()
    stack.wait_for_workers(1)
    return stack


def run_job(stack: Stack, body: dict[str, object], timeout: float = 180) -> dict[str, object]:
    with stack.client() as client:
        response = client.post("/generate", json=body)
        assert response.status_code == 200, response.text
        job = poll_job(client, response.json()["job_id"], {"completed", "failed"}, timeout=timeout)
        assert job["status"] == "completed", (job, stack.logs())
        return job


def download(stack: Stack, url: str) -> bytes:
    with stack.client() as client:
        response = client.get(url)
        assert response.status_code == 200
        return response.content


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("wav", "audio/wav"), ("flac", "audio/flac"), ("mp3", "audio/mpeg"), ("ogg", "audio/ogg")]
)
def test_each_format_decodes_with_the_right_rate_channels_and_duration(
    stack: Stack, fmt: str, content_type: str
) -> None:
    job = run_job(stack, {"prompt": "x", "duration": 2, "format": fmt, "seed": 1})
    (url,) = job["result_urls"]  # type: ignore[misc]
    assert str(url).endswith(f"_generated.{fmt}")
    audio = decode(download(stack, str(url)))
    assert (audio.sample_rate, audio.channels) == (32000, 1)
    assert abs(audio.duration - 2) <= 0.02
    assert_not_silent(audio)
    assert job["result"]["files"][0]["content_type"] == content_type  # type: ignore[index]


def test_stereo_model_takes_resampling_and_loudness(stack: Stack) -> None:
    job = run_job(
        stack,
        {
            "prompt": "x",
            "duration": 3,
            "model": "random:tiny-stereo",
            "num_outputs": 2,
            "sample_rate": 44100,
            "normalize": True,
            "loudness_target": -16,
            "seed": 2,
        },
    )
    urls = [str(url) for url in job["result_urls"]]  # type: ignore[union-attr]
    assert [url.rsplit("_", 1)[-1] for url in urls] == ["1.wav", "2.wav"]
    takes = [decode(download(stack, url)) for url in urls]
    for take in takes:
        assert (take.sample_rate, take.channels) == (44100, 2)
        assert abs(take.duration - 3) <= 0.02
        assert abs(measure_loudness(take.samples, take.sample_rate) - (-16)) <= 0.5
    assert not np.array_equal(takes[0].samples, takes[1].samples)
    assert job["model"] == "random:tiny-stereo"
    with stack.client() as client:
        health = client.get("/health").json()
    assert set(health["loaded_models"]) == {"random:tiny", "random:tiny-stereo"}
    assert health["models_loaded"]["musicgen"] is True
    unknown = client_post(stack, {"prompt": "x", "model": "random:small"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["choices"] == ["random:tiny", "random:tiny-stereo"]


def client_post(stack: Stack, body: dict[str, object]) -> object:
    with stack.client() as client:
        return client.post("/generate", json=body)


def test_seventy_seconds_come_back_seventy_seconds_long(stack: Stack) -> None:
    job = run_job(stack, {"prompt": "a long walk", "duration": 70, "seed": 5}, timeout=300)
    audio = decode(download(stack, str(job["result_urls"][0])))  # type: ignore[index]
    assert abs(audio.duration - 70) <= 0.02
    assert_not_silent(audio)
    # Windows join at 30 s, 48 s and 66 s (30 s window, 18 s stride): no click, no spectral jump.
    assert_seamless_at(audio.samples[0], [30 * 32000, 48 * 32000, 66 * 32000])
    assert job["result"]["files"][0]["duration"] == pytest.approx(70, abs=0.02)  # type: ignore[index]


def test_continuation_upload_keeps_or_drops_the_prompt(stack: Stack) -> None:
    rate = 22050
    t = np.arange(4 * rate) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate, format="FLAC")
    for include, expected in ((True, 4 + 2), (False, 2)):
        with stack.client() as client:
            response = client.post(
                "/generate/continue",
                files={"audio_file": ("prompt.flac", buffer.getvalue(), "audio/flac")},
                data={"prompt": "keep going", "duration": "2", "include_prompt": str(include).lower(), "seed": "3"},
            )
            assert response.status_code == 200, response.text
            job = poll_job(client, response.json()["job_id"], {"completed", "failed"})
        assert job["status"] == "completed", (job, stack.logs())
        audio = decode(download(stack, str(job["result_urls"][0])))
        assert abs(audio.duration - expected) <= 0.03, (include, audio.duration)
        assert_not_silent(audio)


def test_melody_model_follows_an_uploaded_melody(make_stack: StackFactory) -> None:
    stack = make_stack(MUSICGEN_MODELS="random:tiny-melody")
    stack.start_api()
    stack.start_worker()
    stack.wait_for_workers(1)
    rate = 44100
    t = np.arange(3 * rate) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.4 * np.sin(2 * np.pi * 392 * t)).astype(np.float32), rate, format="WAV")
    with stack.client() as client:
        response = client.post(
            "/generate/melody",
            files={"melody_file": ("melody.wav", buffer.getvalue(), "audio/wav")},
            data={"prompt": "folk tune", "duration": "2.5", "seed": "3"},
        )
        assert response.status_code == 200, response.text
        job = poll_job(client, response.json()["job_id"], {"completed", "failed"})
    assert job["status"] == "completed", (job, stack.logs())
    audio = decode(download(stack, str(job["result_urls"][0])))
    assert abs(audio.duration - 2.5) <= 0.02
    assert_not_silent(audio)
