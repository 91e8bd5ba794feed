"""Stem separation end to end: HTTP in, the real Demucs worker (random:tiny), stems out of S3, decoded."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from soundstage.audio import decode_audio
from tests.e2e.conftest import StackFactory
from tests.support.audio import assert_not_silent, decode
from tests.support.audio_files import ALL_FORMATS, encode, synth
from tests.support.http_server import HttpServer
from tests.support.servers import S3Server
from tests.support.stack import Stack, child_pids, poll_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

DEMUCS = "soundstage_demucs.app"
FOUR = ["drums", "bass", "other", "vocals"]
LSB = 1 / 32768


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(DEMUCS_MODELS="random:tiny,random:tiny-6s", ALLOW_PRIVATE_URLS="true")
    stack.start_api()
    stack.start_worker(module=DEMUCS)
    stack.wait_for_workers(1)
    return stack


def wav16(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.T, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def submit(client: httpx.Client, data: bytes, filename: str = "song.wav", **fields: object) -> str:
    response = client.post("/separate", files={"file": (filename, data)}, data={k: str(v) for k, v in fields.items()})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["job_id"])


def completed(stack: Stack, client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    job = poll_job(client, job_id, {"completed", "failed", "cancelled"}, timeout=timeout)
    assert job["status"] == "completed", (job, stack.logs())
    return job


def download(client: httpx.Client, url: str) -> tuple[np.ndarray, int]:
    response = client.get(url)
    assert response.status_code == 200
    with sf.SoundFile(io.BytesIO(response.content)) as file:
        return file.read(dtype="float32", always_2d=True).T, file.samplerate


def test_four_stems_are_the_engines_separation_in_order(stack: Stack, model_cache_dir: Path) -> None:
    rate, seconds = 44100, 4.0
    mix = synth(rate, 2, seconds, frequency=220.0, seed=1) * 0.7
    data = wav16(mix, rate)
    with stack.client() as client:
        job_id = submit(client, data)
        job = completed(stack, client, job_id)
        assert job["kind"] == "separate" and job["model"] == "random:tiny" and job["progress"] == 100
        assert job["result_urls"] == [f"/files/{job_id}_{stem}.wav" for stem in FOUR]
        assert job["result"]["random_weights"] is True and "random weights" in job["result"]["warning"]
        stems = []
        for url in job["result_urls"]:
            samples, file_rate = download(client, url)
            assert (file_rate, samples.shape) == (rate, (2, int(rate * seconds)))
            stems.append(samples)
    # The same separation computed in this process with the engine: the stems are exactly it, to
    # 16-bit precision (the random model's "error" is whatever it computes; nothing is lost on the way).
    from soundstage_demucs.engine import DemucsEngine, SeparationSettings
    from soundstage_demucs.job import job_seed

    engine = DemucsEngine("random:tiny", model_dir=None, cache_dir=model_cache_dir, device="cpu", batch_segments=1)
    blocks: list[np.ndarray] = []
    source = decode_audio(data).samples
    engine.separate(source, SeparationSettings(shifts=1, seed=job_seed(job_id)), blocks.append, lambda d, t: None)
    expected = np.concatenate(blocks, axis=-1)
    for stem, samples in zip(expected, stems, strict=True):
        assert np.abs(stem).max() > 1e-3
        np.testing.assert_allclose(samples, np.clip(stem, -1, 1), atol=LSB)
    np.testing.assert_allclose(sum(stems), expected.sum(axis=0), atol=4 * LSB)


def test_two_stems_sum_back_to_the_input_exactly(stack: Stack) -> None:
    rate = 44100
    mix = synth(rate, 2, 3.0, seed=2) * 0.8
    data = wav16(mix, rate)
    with stack.client() as client:
        job = completed(stack, client, submit(client, data, stems=2))
        assert [url.rsplit("_", 1)[-1] for url in job["result_urls"]] == ["vocals.wav", "accompaniment.wav"]
        vocals, accompaniment = (client.get(url).content for url in job["result_urls"])
    pcm = [sf.read(io.BytesIO(raw), dtype="int16", always_2d=True)[0].astype(np.int32) for raw in (vocals, data)]
    residual = sf.read(io.BytesIO(accompaniment), dtype="int16", always_2d=True)[0].astype(np.int32)
    assert np.abs(pcm[0]).max() > 0 and np.abs(residual).max() > 0
    np.testing.assert_array_equal(pcm[0] + residual, pcm[1])  # bit-exact


def test_mono_48k_input_gives_mono_48k_stems_that_sum_back(stack: Stack) -> None:
    rate = 48000
    mix = synth(rate, 1, 2.5, seed=3) * 0.8
    with stack.client() as client:
        job = completed(stack, client, submit(client, wav16(mix, rate), stems=2, format="flac"))
        (vocals, vocals_rate), (rest, _) = (download(client, url) for url in job["result_urls"])
    assert vocals_rate == rate and vocals.shape == rest.shape == (1, mix.shape[-1])
    original = np.round(np.clip(mix, -1, 1) * 32767) / 32768  # what the 16-bit upload holds
    np.testing.assert_allclose(vocals + rest, original, atol=1.5 * LSB)


def test_six_stems_with_a_six_source_model(stack: Stack) -> None:
    with stack.client() as client:
        data = wav16(synth(44100, 2, 2.0, seed=4), 44100)
        job = completed(stack, client, submit(client, data, stems=6, model="random:tiny-6s"))
        names = [url.removeprefix(f"/files/{job['job_id']}_") for url in job["result_urls"]]
        assert names == [f"{stem}.wav" for stem in (*FOUR, "guitar", "piano")]


@pytest.mark.parametrize(("fmt", "rate"), [("flac", None), ("mp3", 32000), ("ogg", 22050)])
def test_output_formats_and_rates(stack: Stack, fmt: str, rate: int | None) -> None:
    seconds = 2.0
    with stack.client() as client:
        fields: dict[str, object] = {"format": fmt}
        if rate:
            fields["sample_rate"] = rate
        job = completed(stack, client, submit(client, wav16(synth(44100, 2, seconds, seed=5), 44100), **fields))
        assert all(url.endswith(f".{fmt}") for url in job["result_urls"]) and len(job["result_urls"]) == 4
        for url in job["result_urls"]:
            decoded = decode(client.get(url).content)
            assert decoded.sample_rate == (rate or 44100) and decoded.channels == 2
            tolerance = 0.002 if fmt == "flac" else 0.08  # lossy encoders add priming/padding frames
            assert abs(decoded.duration - seconds) <= tolerance
            assert_not_silent(decoded, minimum_rms=1e-4)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_each_input_format_is_separated(stack: Stack, fmt: str) -> None:
    rate = 44100 if fmt != "ogg" else 32000
    samples = synth(rate, 2, 1.5, seed=6)
    with stack.client() as client:
        job = completed(stack, client, submit(client, encode(fmt, samples, rate), filename=f"in.{fmt}"))
        duration = decode_audio(encode(fmt, samples, rate)).duration
        stem, stem_rate = download(client, job["result_urls"][0])
        assert stem_rate == rate and abs(stem.shape[-1] / rate - duration) < 1e-3


def test_audio_url_input_is_fetched_and_separated(stack: Stack) -> None:
    data = wav16(synth(44100, 2, 2.0, seed=7), 44100)
    with HttpServer() as server, stack.client() as client:
        server.routes["/song.wav"] = lambda handler: handler.send_body(data, content_type="audio/wav")
        response = client.post("/separate", json={"audio_url": server.url("/song.wav"), "stems": 2})
        assert response.status_code == 200, response.text
        job = completed(stack, client, response.json()["job_id"])
        assert len(job["result_urls"]) == 2 and server.hits["/song.wav"] == 1


def test_progress_moves_segment_by_segment_and_cancel_stops_it(stack: Stack) -> None:
    data = wav16(synth(44100, 2, 40.0, seed=8), 44100)
    with stack.client() as client:
        job_id = submit(client, data, segment=2, overlap=0.5)
        seen: list[float] = []

        def moving() -> bool:
            job = client.get(f"/jobs/{job_id}").json()
            if job["status"] == "processing" and 0 < job["progress"] < 99:
                seen.append(job["progress"])
                assert "segment" in job["progress_detail"]["message"]
            return len(set(seen)) >= 3

        wait_until(moving, 120, interval=0.05, message=f"progress to move\n{stack.logs()}")
        assert seen == sorted(seen)
        assert client.delete(f"/jobs/{job_id}").status_code == 200
        job = poll_job(client, job_id, {"cancelled", "completed", "failed"}, timeout=60)
        assert job["status"] == "cancelled" and job["result_urls"] == []


def test_killed_worker_leaves_a_job_that_is_retried_not_stuck(make_stack: StackFactory, s3_server: S3Server) -> None:
    # A short visibility timeout stands in for the production one (longer than any job).
    # The heartbeat timeout stays above the longest gap between progress writes on a busy machine.
    stack = make_stack(DEMUCS_MODEL="random:tiny", BROKER_VISIBILITY_TIMEOUT="4", JOB_HEARTBEAT_TIMEOUT="10")
    stack.start_api()
    first = stack.start_worker(module=DEMUCS)
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = submit(client, wav16(synth(44100, 2, 16.0, seed=9), 44100), segment=2)
        wait_until(lambda: client.get(f"/jobs/{job_id}").json()["progress"] > 0, 90, interval=0.05)
        first.kill_group()
        assert client.get(f"/jobs/{job_id}").json()["status"] == "processing"
        stack.start_worker(module=DEMUCS)
        job = completed(stack, client, job_id, timeout=240)
        assert job["attempts"] == 2 and len(job["result_urls"]) == 4
        listing = s3_server.client().list_objects_v2(Bucket=stack.bucket)  # type: ignore[attr-defined]
        stored = sorted(item["Key"] for item in listing.get("Contents", []) if job_id in item["Key"])
        assert stored == sorted([f"outputs/{job_id}_input.wav", *(f"outputs/{job_id}_{s}.wav" for s in FOUR)])


def test_killed_pool_process_is_retried_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(DEMUCS_MODEL="random:tiny")
    stack.start_api()
    worker = stack.start_worker("--pool", "prefork", module=DEMUCS)
    stack.wait_for_workers(1)
    with stack.client() as client:
        job_id = submit(client, wav16(synth(44100, 2, 16.0, seed=10), 44100), segment=2)
        wait_until(lambda: client.get(f"/jobs/{job_id}").json()["progress"] > 0, 90, interval=0.05)
        (pool_process,) = child_pids(worker.pid)
        os.kill(pool_process, signal.SIGKILL)
        job = completed(stack, client, job_id, timeout=240)
        assert job["attempts"] == 2


def test_unavailable_model_fails_fast_with_model_unavailable(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = make_stack(DEMUCS_MODELS=f"random:tiny,{tmp_path / 'missing.th'}")
    stack.start_api()
    missing = str(tmp_path / "missing.th")
    with stack.client() as client:
        data = wav16(synth(44100, 2, 1.0), 44100)
        job_id = submit(client, data, model=missing)  # no worker yet: queued for one
        stack.start_worker(module=DEMUCS)
        job = poll_job(client, job_id, {"completed", "failed"}, timeout=120)
        assert job["status"] == "failed" and job["error_code"] == "model_unavailable", job
        assert "not a `.th` or `.yaml` model file" in job["error"]
        # Its live worker has said it cannot load the model: the next submission is refused at once.
        wait_until(
            lambda: any(missing in w["load_errors"] for w in client.get("/health").json()["workers"]),
            30,
            message=stack.logs(),
        )
        refused = client.post("/separate", files={"file": ("song.wav", data)}, data={"model": missing})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        assert "not a `.th` or `.yaml` model file" in refused.json()["error"]["message"]
