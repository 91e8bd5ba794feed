"""Magenta RT style generation end to end: form fields in (the Magenta RT API's clients, unchanged), a real
Magenta worker process (random:tiny on JAX's CPU backend) on the magenta queue, the audio itself out."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.support.audio import assert_not_silent, decode
from tests.support.audio_files import encode, synth
from tests.support.stack import poll_job

pytestmark = pytest.mark.e2e

RATE = 48_000


def audio_of(response: httpx.Response) -> tuple[np.ndarray, int]:
    frames, rate = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
    return frames.T, int(rate)


def test_text_prompt_as_the_seed_clients_send_it_answers_the_mp3_itself(client: httpx.Client) -> None:
    # curl -F prompt=... -F duration=3 --output generated.mp3 (multipart, the default format: mp3)
    response = client.post("/generate/text", files={"prompt": (None, "funky jazz groove"), "duration": (None, "3")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"
    samples, rate = audio_of(response)
    assert rate == RATE and samples.shape[0] == 2
    assert abs(samples.shape[1] / RATE - 3.0) < 0.1  # mp3 pads a little at both ends
    job = client.get(f"/jobs/{response.headers['x-job-id']}").json()
    assert job["status"] == "completed" and job["result"]["random_weights"] is True
    assert job["model"] == "random:tiny" and "random weights" in job["result"]["warning"]
    assert job["kind"] == "style" and job["params"]["format"] == "mp3"


def test_urlencoded_fields_give_exactly_the_duration_loudness_normalised_and_seeded(client: httpx.Client) -> None:
    # requests.post(url, data={...}) sends application/x-www-form-urlencoded
    fields = {"prompt": "ambient pads", "duration": "2.5", "format": "wav", "seed": "7", "loudness_target": "-20"}
    first = client.post("/generate/text", data=fields)
    assert first.status_code == 200, first.text
    samples, rate = audio_of(first)
    assert rate == RATE and samples.shape == (2, round(2.5 * RATE))  # exactly the duration at 48 kHz
    assert np.isfinite(samples).all()
    assert_not_silent(decode(first.content))
    from soundstage.audio import measure_loudness

    assert abs(measure_loudness(samples, RATE) - -20.0) < 0.5
    again, _ = audio_of(client.post("/generate/text", data=fields))
    np.testing.assert_allclose(again, samples, atol=1 / 32768)  # the same seed makes the same audio
    other, _ = audio_of(client.post("/generate/text", data={**fields, "seed": "8"}))
    assert not np.allclose(other, samples, atol=1e-3)


def test_audio_reference_with_a_text_prompt(client: httpx.Client) -> None:
    reference = encode("flac", synth(44_100, 2, 4.0), 44_100)
    response = client.post(
        "/generate/audio",
        files={"audio_file": ("reference.flac", reference)},
        data={"prompt": "add electronic elements", "duration": "2", "format": "flac"},
    )
    assert response.status_code == 200, response.text
    samples, rate = audio_of(response)
    assert rate == RATE and samples.shape == (2, 2 * RATE)
    job = client.get(f"/jobs/{response.headers['x-job-id']}").json()
    prompts = job["params"]["prompts"]
    assert [bool(p["audio"]) for p in prompts] == [True, False] and prompts[1]["text"] == "add electronic elements"


def test_blend_of_weighted_text_prompts(client: httpx.Client) -> None:
    response = client.post(
        "/generate/blend",
        data={"text_prompts": "funk,ambient,jazz", "text_weights": "2.0,1.5,1.0", "duration": "2", "format": "ogg"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/ogg"
    samples, rate = audio_of(response)
    assert rate == RATE and abs(samples.shape[1] - 2 * RATE) < RATE // 10
    job = client.get(f"/jobs/{response.headers['x-job-id']}").json()
    assert [(p["text"], p["weight"]) for p in job["params"]["prompts"]] == [
        ("funk", 2.0),
        ("ambient", 1.5),
        ("jazz", 1.0),
    ]


@pytest.mark.parametrize("how", ["query", "prefer"])
def test_async_answers_the_job_at_once_and_the_job_completes(client: httpx.Client, how: str) -> None:
    fields = {"prompt": "lo-fi beats", "duration": "2"}
    if how == "query":
        response = client.post("/generate/text", params={"async": "true"}, data=fields)
    else:
        response = client.post("/generate/text", data=fields, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"job_id", "status"} and body["status"] == "queued"
    assert response.headers["location"] == f"/jobs/{body['job_id']}"
    job = poll_job(client, body["job_id"], {"completed", "failed"}, timeout=120)
    assert job["status"] == "completed", job
    assert job["result_urls"][0].endswith(".mp3")


def test_a_request_that_outlives_its_wait_is_a_202_with_the_job(client: httpx.Client) -> None:
    response = client.post("/generate/text", data={"prompt": "epic", "duration": "20"}, headers={"Prefer": "wait=1"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert poll_job(client, job_id, {"completed", "failed"}, timeout=180)["status"] == "completed"


BAD_FORMS = [
    ("/generate/text", {"duration": "5"}, "prompt"),
    ("/generate/text", {"prompt": "x", "duration": "1"}, "duration"),
    ("/generate/text", {"prompt": "x", "duration": "121"}, "duration"),
    ("/generate/text", {"prompt": "x", "format": "aiff"}, "format"),
    ("/generate/text", {"prompt": "x", "top_k": "0"}, "top_k"),
    ("/generate/text", {"prompt": "x", "loudness_target": "loud"}, "loudness_target"),
    ("/generate/text", {"prompt": "x", "model": "mrt9_huge"}, "model"),
    ("/generate/blend", {"text_prompts": "a,b", "text_weights": "1"}, "text_weights"),
    ("/generate/blend", {"text_prompts": "a,b", "text_weights": "1,x"}, "text_weights"),
    ("/generate/blend", {"text_prompts": "a,b", "text_weights": "1,0"}, "text_weights"),
    ("/generate/blend", {"text_prompts": " , "}, "text_prompts"),
    ("/generate/blend", {"text_prompts": "a", "audio_weights": "1"}, "audio_weights"),
    ("/generate/blend", {"text_prompts": "a", "audio_files[]": "not a file"}, "audio_files[]"),
    ("/generate/audio", {"prompt": "x"}, "audio_file"),
]


@pytest.mark.parametrize(("path", "fields", "field"), BAD_FORMS)
def test_bad_fields_are_422_with_the_field_and_no_job(
    client: httpx.Client, path: str, fields: dict[str, str], field: str
) -> None:
    before = client.get("/jobs", params={"limit": 100}).json()["total"]
    response = client.post(path, data=fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("validation_error", "unknown_model")
    assert any(detail["loc"][-1] == field for detail in error["details"]), error
    assert client.get("/jobs", params={"limit": 100}).json()["total"] == before


def test_non_audio_and_empty_style_references_are_refused_before_any_job(client: httpx.Client) -> None:
    before = client.get("/jobs", params={"limit": 100}).json()["total"]
    for data, code in ((b"not audio at all" * 100, "audio_undecodable"), (b"", "audio_empty")):
        response = client.post("/generate/audio", files={"audio_file": ("ref.mp3", data)}, data={"duration": "2"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    assert client.get("/jobs", params={"limit": 100}).json()["total"] == before


def test_blend_of_text_prompts_and_audio_files_with_their_weights(client: httpx.Client) -> None:
    # The Magenta RT API's blend: audio_files[] parts (one per file) with audio_weights, beside text prompts
    files = [
        ("audio_files[]", ("a.wav", encode("wav", synth(44_100, 2, 3.0, frequency=220.0), 44_100))),
        ("audio_files[]", ("b.flac", encode("flac", synth(32_000, 1, 2.0, frequency=660.0), 32_000))),
    ]
    fields = {"text_prompts": "funk,jazz", "text_weights": "2,1", "audio_weights": "0.5,1.5", "duration": "2"}
    response = client.post("/generate/blend", files=files, data={**fields, "format": "wav", "seed": "4"})
    assert response.status_code == 200, response.text
    samples, rate = audio_of(response)
    assert rate == RATE and samples.shape == (2, 2 * RATE)
    job = client.get(f"/jobs/{response.headers['x-job-id']}").json()
    prompts = job["params"]["prompts"]
    assert [(p["text"], p["weight"]) for p in prompts[:2]] == [("funk", 2.0), ("jazz", 1.0)]
    job_id = job["job_id"]
    assert [(p["audio"], p["weight"]) for p in prompts[2:]] == [
        (f"{job_id}_style1.wav", 0.5),
        (f"{job_id}_style2.flac", 1.5),
    ]
    # audio alone blends too, and the audio prompts change the music
    only_audio = client.post("/generate/blend", files=files, data={"duration": "2", "format": "wav", "seed": "4"})
    assert only_audio.status_code == 200, only_audio.text
    texts_only = client.post(
        "/generate/blend",
        data={"text_prompts": "funk,jazz", "text_weights": "2,1", "duration": "2", "format": "wav", "seed": "4"},
    )
    assert not np.allclose(audio_of(texts_only)[0], samples, atol=1e-3)


def test_bad_audio_in_a_blend_is_refused_before_any_job(client: httpx.Client) -> None:
    before = client.get("/jobs", params={"limit": 100}).json()["total"]
    good = ("audio_files[]", ("a.wav", encode("wav", synth(44_100, 2, 2.0), 44_100)))
    bad = ("audio_files[]", ("b.mp3", b"not audio at all" * 100))
    response = client.post("/generate/blend", files=[good, bad], data={"text_prompts": "funk"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_undecodable" and error["details"][0]["loc"] == ["body", "audio_files[]", 1]
    mismatch = client.post("/generate/blend", files=[good, good], data={"audio_weights": "1"})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["details"][0]["type"] == "weights_mismatch"
    single = client.post("/generate/blend", files={"audio_file": ("a.wav", good[1][1])}, data={"text_prompts": "x"})
    assert single.status_code == 422 and single.json()["error"]["details"][0]["loc"] == ["body", "audio_file"]
    assert client.get("/jobs", params={"limit": 100}).json()["total"] == before
