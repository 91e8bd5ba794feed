"""The MagentaRT Research API under /magenta end to end (its iOS client's contract): loop continuation and
style-only bars through a real Magenta worker (random:tiny), bar-exact WAV as base64, integer metadata."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.support.audio import assert_not_silent, decode
from tests.support.audio_files import encode, synth

pytestmark = pytest.mark.e2e

INTEGER_FIELDS = ("bpm", "bars", "beats_per_bar", "sample_rate", "channels", "total_samples", "topk", "seed")


def loop_file(rate: int = 44_100, seconds: float = 2.0, frequency: float = 220.0, seed: int = 0) -> bytes:
    return encode("wav", synth(rate, 2, seconds, frequency=frequency, seed=seed), rate)


def wav_of(body: dict[str, Any]) -> tuple[np.ndarray, int]:
    data = base64.b64decode(body["audio_base64"])
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return frames.T, int(rate)


def jobs_total(client: httpx.Client) -> int:
    total: int = client.get("/jobs", params={"limit": 1}).json()["total"]
    return total


def test_a_loop_continues_for_exactly_its_bars_at_the_loops_rate_with_integer_metadata(client: httpx.Client) -> None:
    # 120 bpm, 4/4: 2 bars = 4 s; the loop is 44.1 kHz, so the answer is too (no target_sample_rate)
    response = client.post(
        "/magenta/generate",
        files={"loop_audio": ("loop.wav", loop_file())},
        data={"bpm": "120", "bars": "2", "beats_per_bar": "4", "styles": "acid house", "request_id": "ios-1"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == "ios-1" and set(body) >= {"audio_base64", "metadata", "request_id"}
    samples, rate = wav_of(body)
    assert rate == 44_100 and samples.shape == (2, 4 * 44_100)
    assert_not_silent(decode(base64.b64decode(body["audio_base64"])))
    metadata = body["metadata"]
    for field in INTEGER_FIELDS:
        assert type(metadata[field]) is int, (field, metadata[field])  # the iOS client decodes these as Int
    assert metadata["total_samples"] == 4 * 44_100 and metadata["sample_rate"] == 44_100
    assert metadata["bpm"] == 120 and metadata["seconds_per_bar"] == 2.0 and metadata["channels"] == 2
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert job["kind"] == "loop" and job["status"] == "completed" and job["result"]["random_weights"] is True
    prompts = job["params"]["prompts"]
    assert prompts[0]["text"] == "acid house" and prompts[1]["audio"]  # the loop's own style at loop_weight
    progress = client.get("/magenta/progress", params={"request_id": "ios-1"}).json()
    assert progress["done"] is True and progress["percent"] == 100 and progress["job_id"] == body["job_id"]


@pytest.mark.parametrize(
    ("fields", "seconds", "rate"),
    [
        ({"bpm": "90", "bars": "3", "beats_per_bar": "3", "target_sample_rate": "48000"}, 6.0, 48_000),
        ({"bpm": "100", "bars": "1", "target_sample_rate": "44100", "intro_bars_to_drop": "1"}, 2.4, 44_100),
    ],
)
def test_lengths_are_bar_exact_at_both_target_rates(
    client: httpx.Client, fields: dict[str, str], seconds: float, rate: int
) -> None:
    response = client.post(
        "/magenta/generate", files={"loop_audio": ("loop.wav", loop_file(48_000))}, data={**fields, "seed": "3"}
    )
    assert response.status_code == 200, response.text
    samples, got_rate = wav_of(response.json())
    assert got_rate == rate and samples.shape == (2, round(seconds * rate))
    assert response.json()["metadata"]["total_samples"] == round(seconds * rate)


def test_the_continuation_follows_the_loop_itself_not_only_its_style(client: httpx.Client) -> None:
    # loop_weight 0 and no styles: nothing conditions the model but the loop its codes primed it with
    def bars(loop: bytes) -> np.ndarray:
        response = client.post(
            "/magenta/generate",
            files={"loop_audio": ("loop.wav", loop)},
            data={"bpm": "120", "bars": "1", "loop_weight": "0", "seed": "11", "loudness_mode": "none"},
        )
        assert response.status_code == 200, response.text
        assert client.get(f"/jobs/{response.json()['job_id']}").json()["params"]["prompts"] == []
        return wav_of(response.json())[0]

    first = bars(loop_file(frequency=220.0, seed=1))
    np.testing.assert_array_equal(bars(loop_file(frequency=220.0, seed=1)), first)  # same loop and seed: same
    other = bars(loop_file(frequency=880.0, seed=2))
    assert not np.allclose(other, first, atol=1e-3)  # another loop, the same seed: other music


def test_style_only_bars(client: httpx.Client) -> None:
    response = client.post(
        "/magenta/generate_style",
        data={"bpm": "128", "bars": "2", "styles": "acid house, techno", "style_weights": "1.0, 0.5"},
    )
    assert response.status_code == 200, response.text
    samples, rate = wav_of(response.json())
    assert rate == 48_000 and samples.shape == (2, round(2 * 4 * 60 / 128 * 48_000))
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    assert [(p["text"], p["weight"]) for p in job["params"]["prompts"]] == [("acid house", 1.0), ("techno", 0.5)]
    assert response.json()["metadata"]["styles"] == ["acid house", "techno"]


def test_progress_follows_a_request_while_it_runs(client: httpx.Client) -> None:
    response = client.post(
        "/magenta/generate_style",
        data={"bpm": "60", "bars": "4", "styles": "drone", "request_id": "slow-1"},
        headers={"Prefer": "wait=0"},
    )
    assert response.status_code == 202, response.text  # answered at once: the job goes on
    deadline = time.monotonic() + 120
    seen: list[int] = []
    while time.monotonic() < deadline:
        progress = client.get("/magenta/progress", params={"request_id": "slow-1"})
        assert progress.status_code == 200, progress.text
        seen.append(progress.json()["percent"])
        if progress.json()["done"]:
            break
        time.sleep(0.2)
    assert seen[-1] == 100 and seen == sorted(seen) and len(set(seen)) > 2  # watched as it went
    missing = client.get("/magenta/progress", params={"request_id": "never-sent"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "request_not_found"


def test_health_answers_what_the_ios_client_waits_for(client: httpx.Client) -> None:
    body = client.get("/magenta/health").json()
    assert body["ok"] is True and body["status"] == "ready" and body["warmed"] is True
    assert body["models"] == ["random:tiny"] and body["workers"] == 1


BAD_BARS = [
    ({"bpm": "0"}, "bpm"),
    ({"bpm": "-5"}, "bpm"),
    ({"bpm": "1000"}, "bpm"),
    ({"bpm": "fast"}, "bpm"),
    ({"bpm": "120", "bars": "0"}, "bars"),
    ({"bpm": "120", "bars": "99"}, "bars"),
    ({"bpm": "20", "bars": "32"}, "bars"),  # 384 s: past 120 s per generation
    ({"bpm": "120", "styles": "a,b", "style_weights": "1"}, "style_weights"),
    ({"bpm": "120", "styles": "a", "style_weights": "x"}, "style_weights"),
    ({"bpm": "120", "target_sample_rate": "22050"}, "target_sample_rate"),
    ({"bpm": "120", "loudness_mode": "loud"}, "loudness_mode"),
    ({"bpm": "120", "request_id": "no spaces allowed"}, "request_id"),
    ({"styles": "a"}, "bpm"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_BARS)
def test_bad_fields_are_422_with_the_field_and_no_job(client: httpx.Client, fields: dict[str, str], field: str) -> None:
    before = jobs_total(client)
    for path, files in (
        ("/magenta/generate", {"loop_audio": ("loop.wav", loop_file())}),
        ("/magenta/generate_style", None),
    ):
        data = {"styles": "house", **fields} if path.endswith("style") and "styles" not in fields else fields
        response = client.post(path, data=data, files=files)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any(detail["loc"][-1] == field for detail in error["details"]), error
    assert jobs_total(client) == before


def test_bad_loops_are_refused_before_any_job(client: httpx.Client) -> None:
    before = jobs_total(client)
    for files, code in (
        ({"loop_audio": ("loop.wav", b"not audio at all" * 100)}, "audio_undecodable"),
        ({"loop_audio": ("loop.wav", b"")}, "audio_empty"),
        ({"loop_audio": ("loop.wav", loop_file(16_000, 61.0))}, "audio_too_long"),
        (None, "validation_error"),  # no loop at all
    ):
        response = client.post("/magenta/generate", data={"bpm": "120"}, files=files)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    styled = client.post(
        "/magenta/generate_style", data={"bpm": "120"}, files={"loop_audio": ("loop.wav", loop_file())}
    )
    assert styled.status_code == 422 and styled.json()["error"]["details"][0]["loc"][-1] == "loop_audio"
    nothing = client.post("/magenta/generate_style", data={"bpm": "120"})
    assert nothing.status_code == 422 and nothing.json()["error"]["details"][0]["loc"][-1] == "styles"
    assert jobs_total(client) == before
