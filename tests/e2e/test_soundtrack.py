"""Soundtracks end to end: the API, the MusicGen, Demucs and pipeline workers as processes on real Redis,
PostgreSQL and S3, with random-weight models; every soundtrack downloaded and decoded.

Most tests share one stack. Those that need to know what the scenes sound like (a click track's tempo, two
tones crossfading) write soundtracks whose generation steps are done with synthetic audio
(tests.support.soundtrack_seed) and let the real pipeline do the rest: tempo matching, cuts, crossfades,
scores, regenerations on the MusicGen worker, the final mix.
"""

from __future__ import annotations

import io
import math
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from soundstage.audio import measure_loudness, true_peak
from soundstage_pipeline.audio.beats import analyse_beats
from tests.e2e.conftest import StackFactory
from tests.support.audio import DecodedAudio, assert_not_silent
from tests.support.servers import S3Server
from tests.support.soundtrack_seed import RATE, SeededScene, handoffs, plan_of, seed_soundtrack, soundtrack_params
from tests.support.stack import Stack, child_pids, poll_job
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

KEY = "memories-key"
DEMUCS = "soundstage_demucs.app"
PIPELINE = "soundstage_pipeline.app"
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, s3_server: S3Server) -> Iterator[Stack]:
    stack = make_module_stack(API_KEYS=KEY, MAX_REGEN_ATTEMPTS="2", MUSICGEN_MODELS="random:tiny,random:tiny-melody")
    stack.start_api()
    stack.start_worker()
    stack.start_worker(module=DEMUCS)
    stack.start_worker(module=PIPELINE)
    stack.wait_for_workers(3, timeout=240)
    # The seeded soundtracks' rows and files are written from this process, with the stack's S3 account.
    old = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
    yield stack
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def client_of(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"X-API-Key": KEY}, timeout=30)


def finished(stack: Stack, client: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    job = poll_job(client, job_id, FINAL, timeout=timeout)
    assert job["status"] == "completed", (job, stack.logs())
    return job


def download(client: httpx.Client, url: str) -> tuple[np.ndarray, int]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    with sf.SoundFile(io.BytesIO(response.content)) as file:
        return file.read(dtype="float32", always_2d=True).T, file.samplerate


def stored(s3: S3Server, stack: Stack, *ids: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=stack.bucket)  # type: ignore[attr-defined]
    return sorted(item["Key"] for item in listing.get("Contents", []) if any(i in item["Key"] for i in ids))


def assert_loudness(samples: np.ndarray, rate: int, target: float) -> None:
    assert abs(measure_loudness(samples, rate) - target) < 0.5
    assert 20 * math.log10(true_peak(samples, rate)) <= -1.0 + 1e-3


# ------------------------------------------------------------ the client


def test_the_photo_memory_clients_call_works_unchanged(stack: Stack, s3_server: S3Server) -> None:
    """immich-video-memory-generator's call: scenes of {mood, duration} with integer durations, the
    beat-aligned crossfade, X-API-Key on every call, polling every 2 s, result_urls[0] from the same origin."""
    scenes = [
        {"mood": "upbeat warm groovy", "duration": 8},
        {"mood": "upbeat warm hopeful", "duration": 7},
        {"mood": "upbeat warm pulsing", "duration": 6},
    ]
    body = {
        "base_prompt": "warm acoustic guitar with soft piano, gentle and nostalgic",
        "scenes": scenes,
        "use_beat_aligned_crossfade": True,
        "crossfade_duration": 2.0,
    }
    with client_of(stack) as client:
        response = client.post("/generate/soundtrack", json=body)
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        polls: list[dict[str, Any]] = []

        def done() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
            polls.append(job)
            return job if job["status"] in FINAL else None

        job = wait_until(done, 300, interval=2.0, message=f"soundtrack {job_id}\n{stack.logs()}")
        assert job["status"] == "completed", (job, stack.logs())
        progress = [poll["progress"] for poll in polls]
        assert progress == sorted(progress) and progress[-1] == 100
        for poll in polls:
            detail = poll["progress_detail"]
            assert detail is None or {"current_scene", "total_scenes", "stage"} <= set(detail)
            if detail and poll["status"] == "processing":
                assert detail["total_scenes"] == 3 and 1 <= detail["current_scene"] <= 3
                assert detail["stage"] in {
                    "generating",
                    "separating",
                    "crossfading",
                    "scoring",
                    "regenerating",
                    "finalizing",
                }
        assert job["result_urls"] == [f"/files/{job_id}_soundtrack.wav"]
        samples, rate = download(client, job["result_urls"][0])
    assert (rate, samples.shape) == (32000, (1, 21 * 32000))  # exactly the sum of the scenes
    assert_not_silent(DecodedAudio(samples=samples, sample_rate=rate))
    assert_loudness(samples, rate, -14.0)
    result = job["result"]
    assert result["random_weights"] is True and result["seed"] == job["params"]["seed"]
    assert [scene["index"] for scene in result["scenes"]] == [1, 2, 3]
    assert result["scenes"][0]["prompt"] == "upbeat warm groovy, " + body["base_prompt"]
    for transition, boundary in zip(result["transitions"], (8.0, 15.0), strict=True):
        assert transition["boundary"] == boundary and abs(transition["cut"] - boundary) <= 0.5 + 0.006
        assert transition["end"] - transition["start"] == pytest.approx(2.0, abs=1 / 32000)
        assert transition["stem_aware"] is True and transition["attempts"]
        assert set(transition["scores"]) == {"mfcc_similarity", "spectral_flux", "chroma_continuity", "energy_ratio"}
    # The stem-aware crossfades ran their separations on the Demucs pool, as steps of the soundtrack.
    steps = job["children"]
    separated = [step for step in steps if step["kind"] == "separate"]
    # One separation per transition: both sides around its 2 s crossfade (0.5 s margins), one Demucs segment;
    # an opening the quality loop regenerated (the seed is drawn per job) gets its own, named after it.
    separations = [step for step in separated if ":opening:" not in step["step"]]
    assert [s["step"] for s in separations] == ["separate:0", "separate:1"]
    assert all(re.fullmatch(r"separate:[01]:opening:\d+", s["step"]) for s in separated if s not in separations)
    assert all(step["status"] == "completed" for step in steps)
    assert [s["step"] for s in steps if s["kind"] == "generate"][:3] == ["scene:0", "scene:1", "tail:0"]
    with client_of(stack) as client:
        assert client.get("/jobs", params={"parent_id": job_id}).json()["total"] == len(steps)
        seconds = [client.get(f"/jobs/{s['job_id']}").json()["params"]["input_seconds"] for s in separations]
        assert seconds == [pytest.approx(6.0, abs=0.01)] * 2
        assert job_id in {listed["job_id"] for listed in client.get("/jobs").json()["jobs"]}
    # The steps' intermediate audio goes (deleted once the completion is committed); the soundtrack stays.
    ids = [job_id, *(step["job_id"] for step in steps)]
    only = [f"outputs/{job_id}_soundtrack.wav"]
    wait_until(lambda: stored(s3_server, stack, *ids) == only, 30, message=f"intermediate files of {job_id} to go")


def test_fractional_scenes_other_format_rate_and_stems(stack: Stack) -> None:
    body = {
        "base_prompt": "lofi hip hop",
        "scenes": [{"mood": "rain", "duration": 5.5}, {"mood": "sunrise", "duration": 6.25, "prompt": None}],
        "crossfade_duration": 1.5,
        "use_stem_aware_crossfade": False,
        "use_quality_loop": False,
        "format": "flac",
        "sample_rate": 44100,
        "loudness_target": -18,
        "stems": 4,
    }
    with client_of(stack) as client:
        job_id = client.post("/generate/soundtrack", json=body).json()["job_id"]
        job = finished(stack, client, job_id)
        stems = ["drums", "bass", "other", "vocals"]
        assert job["result_urls"] == [f"/files/{job_id}_soundtrack.flac"] + [f"/files/{job_id}_{s}.flac" for s in stems]
        assert job["result"]["stems"] == {s: f"/files/{job_id}_{s}.flac" for s in stems}
        samples, rate = download(client, job["result_urls"][0])
        length = round(11.75 * 44100)
        assert (rate, samples.shape) == (44100, (1, length))
        assert_loudness(samples, rate, -18.0)
        for url in job["result_urls"][1:]:
            stem, stem_rate = download(client, url)
            assert (stem_rate, stem.shape) == (44100, (1, length))
        assert not [step for step in job["children"] if step["step"].startswith("separate:")]
        assert job["result"]["transitions"][0]["scores"] is None  # no quality loop, no scores
        assert [step["step"] for step in job["children"]][-1] == "stems"


def test_a_melody_soundtrack_follows_one_melody_laid_on_its_timeline(stack: Stack) -> None:
    """The melody is one of this server's own files (read from storage, never fetched over HTTP), and each
    scene is conditioned on the stretch of it under the scene's place on the timeline."""
    with client_of(stack) as client:
        tune = finished(
            stack, client, client.post("/generate", json={"prompt": "a tune", "duration": 4}).json()["job_id"]
        )
        body = {
            "base_prompt": "the same tune as a brass band",
            "scenes": [{"mood": "calm", "duration": 6}, {"mood": "bright", "duration": 6}],
            "model": "random:tiny-melody",
            "melody_audio_url": tune["result_urls"][0],
            "use_stem_aware_crossfade": False,
            "use_quality_loop": False,
        }
        response = client.post("/generate/soundtrack", json=body)
        assert response.status_code == 200, response.text
        job = finished(stack, client, response.json()["job_id"])
        assert job["params"]["melody_audio"] == f"{job['job_id']}_melody.wav"
        scenes = {step["step"]: client.get(f"/jobs/{step['job_id']}").json() for step in job["children"]}
        samples, _ = download(client, job["result_urls"][0])
    assert samples.shape == (1, 12 * RATE)
    assert scenes["scene:0"]["params"]["melody_start"] == 0.0
    handoff = scenes["scene:1"]["params"]["melody_start"]
    assert handoff == pytest.approx(6.0 - 1.0 - 0.5, abs=0.01) == scenes["tail:0"]["params"]["melody_start"]
    assert scenes["scene:1"]["model"] == "random:tiny-melody"


# ------------------------------------------------- what the pipeline does to known audio


def tone(frequency: float, start: float, end: float, amplitude: float = 0.3) -> np.ndarray:
    """A sine laid on the timeline: its phase is that of a tone started at 0, so pieces of it join."""
    t = np.arange(round(start * RATE), round(end * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[None]


def clicks(bpm: float, start: float, end: float, first: float) -> np.ndarray:
    """A click track on the timeline (beats at ``first + n * 60 / bpm``), the part from ``start`` to ``end``."""
    audio = np.zeros(round((end - start) * RATE), dtype=np.float32)
    blip = (np.sin(2 * np.pi * 1000 * np.arange(640) / RATE) * np.exp(-np.arange(640) / (0.004 * RATE))).astype(
        np.float32
    )
    for beat in np.arange(first, end, 60.0 / bpm):
        at = round((beat - start) * RATE)
        if 0 <= at < audio.size:
            audio[at : at + 640] += blip[: audio.size - at]
    return audio[None]


def run_seeded(stack: Stack, request: dict[str, Any], scenes: list[SeededScene], **choices: Any) -> dict[str, Any]:
    params = soundtrack_params(request, **choices)
    job_id = seed_soundtrack(stack.env, params, scenes, api_key=KEY)
    with client_of(stack) as client:
        return finished(stack, client, job_id)


def test_crossfade_is_exactly_its_length_equal_power_on_a_beat_and_on_zero_crossings(stack: Stack) -> None:
    """Two tones (440 Hz with clicks at 120 BPM out, 660 Hz in): the cut moves from the 8 s boundary onto
    the click at 8.2 s, and the tones' envelopes in the result trace sin/cos curves exactly 2 s long."""
    request = {"base_prompt": "x", "scenes": [{"duration": 8}, {"duration": 8}], "crossfade_duration": 2.0}
    (handoff,) = handoffs(plan_of(soundtrack_params(request)))
    h = handoff / RATE
    outgoing = lambda a, b: tone(440, a, b) + clicks(120, a, b, first=0.2) * 0.5  # noqa: E731
    scenes = [SeededScene(outgoing(0, h), tail=outgoing(h, h + 3.0)), SeededScene(tone(660, h, 16.5))]
    job = run_seeded(stack, request, scenes, use_beat_aligned_crossfade=True)
    transition = job["result"]["transitions"][0]
    assert transition["beat"] == pytest.approx(8.2, abs=0.03)
    assert abs(transition["cut"] - transition["beat"]) <= 0.005 + 1 / RATE
    start, end = transition["start"], transition["end"]
    assert end - start == pytest.approx(2.0, abs=1 / RATE)
    # The edges are zero crossings: the outgoing side leaves at one, the incoming side enters at one.
    assert abs(outgoing(end, end + 1 / RATE)[0, 0]) < 0.03
    entry = start + transition["incoming_offset"]
    assert abs(tone(660, entry, entry + 1 / RATE)[0, 0]) < 0.03
    with client_of(stack) as client:
        samples, _ = download(client, job["result_urls"][0])
    assert samples.shape == (1, 16 * RATE)
    # Envelopes of each tone in 20 ms frames: their angle atan2(in, out) goes from 0 to pi/2 linearly
    # across the crossfade (equal power: the sum of their squares stays constant).
    frame = 640
    times, out_env, in_env = [], [], []
    for first in range(round((start - 0.5) * RATE), round((end + 0.5) * RATE) - frame, frame // 2):
        chunk = samples[0, first : first + frame] * np.hanning(frame)
        spectrum = np.abs(np.fft.rfft(chunk))
        freqs = np.fft.rfftfreq(frame, 1 / RATE)
        times.append((first + frame / 2) / RATE)
        out_env.append(spectrum[np.argmin(np.abs(freqs - 440))])
        in_env.append(spectrum[np.argmin(np.abs(freqs - 660))])
    times_a, out_a, in_a = np.array(times), np.array(out_env), np.array(in_env)
    inside = (times_a > start + 0.05) & (times_a < end - 0.05)
    angle = np.arctan2(in_a[inside], out_a[inside]) * 2 / np.pi
    slope, intercept = np.polyfit(times_a[inside], angle, 1)
    measured_start, measured_end = -intercept / slope, (1 - intercept) / slope
    assert measured_end - measured_start == pytest.approx(2.0, abs=0.02)
    assert measured_start == pytest.approx(start, abs=0.02)
    power = (out_a[inside] ** 2 + in_a[inside] ** 2) / np.median(out_a[times_a < start - 0.1] ** 2)
    assert power.min() > 0.8 and power.max() < 1.25  # no dip, no swell


def test_a_scene_at_100_bpm_is_stretched_to_the_soundtracks_120(stack: Stack) -> None:
    request = {"base_prompt": "x", "scenes": [{"duration": 8}, {"duration": 10}], "crossfade_duration": 1.0}
    (handoff,) = handoffs(plan_of(soundtrack_params(request)))
    h = handoff / RATE
    scenes = [
        SeededScene(clicks(120, 0, h, first=0.25), tail=clicks(120, h, h + 2.0, first=0.25)),
        SeededScene(clicks(100, h, h + 14.0, first=h + 0.1)),  # long enough once sped up
    ]
    job = run_seeded(stack, request, scenes)
    result = job["result"]
    assert result["scenes"][0]["tempo"] == pytest.approx(120, rel=0.01)
    assert result["scenes"][1]["tempo"] == pytest.approx(100, rel=0.01)
    assert result["scenes"][1]["stretch"] == pytest.approx(1.2, rel=0.01)
    assert result["transitions"][0]["tempo_to"] == pytest.approx(120, rel=0.02)
    assert not [step for step in job["children"] if step["step"] == "extend"]
    with client_of(stack) as client:
        samples, rate = download(client, job["result_urls"][0])
    assert samples.shape == (1, 18 * RATE)
    after = samples[:, round((result["transitions"][0]["end"] + 0.5) * RATE) :]
    analysis = analyse_beats(after, rate)
    assert analysis.steady and analysis.bpm == pytest.approx(120, rel=0.02)


def test_a_middle_scene_sped_up_still_cuts_on_its_boundary(stack: Stack) -> None:
    """Scene 2 of three comes out at 100 BPM and is sped up to 120: 10 s become 8.3, so it hands off
    1.7 s early. Its tail (generated by the real MusicGen pool, like scene 3) covers the difference, and
    the cut into scene 3 still sits on the 18 s boundary (within the snap range) instead of where the
    shortened scene ends."""
    request = {
        "base_prompt": "x",
        "scenes": [{"duration": 8}, {"duration": 10}, {"duration": 8}],
        "crossfade_duration": 1.0,
    }
    plan = plan_of(soundtrack_params(request))
    first, second = (handoff / RATE for handoff in handoffs(plan))
    scenes = [
        SeededScene(clicks(120, 0, first, first=0.25), tail=clicks(120, first, plan.latest_end(0), first=0.25)),
        SeededScene(clicks(100, first, second + 0.02, first=first + 0.1)),  # its tail and scene 3: generated
    ]
    job = run_seeded(stack, request, scenes)
    result = job["result"]
    assert result["scenes"][1]["stretch"] == pytest.approx(1.2, rel=0.01)
    transition = result["transitions"][1]
    assert transition["boundary"] == pytest.approx(18.0)
    assert abs(transition["cut"] - 18.0) <= plan.snap(1) + 0.01, transition
    steps = {step["step"]: step for step in job["children"]}
    early = first + (second - first) / 1.2  # where the sped-up scene ends, and its tail starts
    with client_of(stack) as client:
        tail = client.get(f"/jobs/{steps['tail:1']['job_id']}").json()
        samples, _ = download(client, job["result_urls"][0])
    assert tail["params"]["duration"] == pytest.approx(plan.latest_end(1) - early, abs=0.05)
    assert samples.shape == (1, 26 * RATE)
    assert_not_silent(DecodedAudio(samples[:, round(early * RATE) : round(transition["start"] * RATE)], RATE))


def test_the_quality_loop_regenerates_a_transition_into_silence(stack: Stack) -> None:
    request = {"base_prompt": "x", "scenes": [{"duration": 8}, {"duration": 8}], "crossfade_duration": 2.0}
    (handoff,) = handoffs(plan_of(soundtrack_params(request)))
    h = handoff / RATE
    noise = np.random.default_rng(3).normal(0, 0.1, (1, round((h + 3.0) * RATE))).astype(np.float32)
    silence = np.zeros((1, round((16.5 - h) * RATE)), dtype=np.float32)
    scenes = [SeededScene(noise[:, :handoff], tail=noise[:, handoff:]), SeededScene(silence)]
    job = run_seeded(stack, request, scenes, use_quality_loop=True, max_regen_attempts=2)
    transition = job["result"]["transitions"][0]
    attempts = transition["attempts"]
    assert attempts[0]["attempt"] == 0 and attempts[0]["passed"] is False
    assert attempts[0]["scores"]["energy_ratio"] > 2.0  # noise into silence
    assert len(attempts) >= 2 and [a["attempt"] for a in attempts] == list(range(len(attempts)))
    assert all(a["seed"] is not None for a in attempts[1:])
    assert transition["chosen_attempt"] >= 1
    regenerations = [step for step in job["children"] if step["step"].startswith("regenerate:0:")]
    assert len(regenerations) == len(attempts) - 1 and all(step["kind"] == "generate" for step in regenerations)
    with client_of(stack) as client:
        samples, _ = download(client, job["result_urls"][0])
    # What follows the cut is the regenerated opening now, not silence.
    end = round(transition["end"] * RATE)
    opening = samples[:, end : end + RATE]
    assert float(np.sqrt(np.mean(opening**2))) > 1e-3


# --------------------------------------------------------------- cancelling


def test_cancelling_mid_pipeline_stops_every_step_and_keeps_no_files(stack: Stack, s3_server: S3Server) -> None:
    body = {"base_prompt": "a long piece", "scenes": [{"duration": 20}, {"duration": 60}, {"duration": 20}]}
    with client_of(stack) as client:
        job_id = client.post("/generate/soundtrack", json=body).json()["job_id"]

        def second_scene_running() -> bool:
            steps = {step["step"]: step for step in client.get(f"/jobs/{job_id}").json()["children"]}
            return steps.get("scene:1", {}).get("status") == "processing"

        wait_until(second_scene_running, 120, interval=0.1, message=f"scene 2 of {job_id} to run\n{stack.logs()}")
        cancelled = client.delete(f"/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
        job = poll_job(client, job_id, FINAL, timeout=60)
        assert job["status"] == "cancelled", job
        steps = job["children"]
        assert all(step["status"] in FINAL for step in steps), steps
        assert {s["step"]: s["status"] for s in steps}["scene:1"] == "cancelled"
        assert not [s for s in steps if s["step"].startswith("scene:2")], "nothing started after the cancel"
        assert client.delete(f"/jobs/{job_id}").status_code == 200  # cancelling again is a no-op
    # The steps' files are deleted once the cancellation is committed, moments after it shows.
    ids = [job_id, *(step["job_id"] for step in steps)]
    wait_until(lambda: stored(s3_server, stack, *ids) == [], 30, message=f"the files of {job_id} to go")


# ------------------------------------------------------------------ faults


def test_a_killed_worker_mid_stage_still_gives_exactly_one_soundtrack(
    make_stack: StackFactory, s3_server: S3Server
) -> None:
    """A MusicGen pool process killed while it generates scene 2, then the pipeline pool's processes killed
    while one of them runs a CPU step (preparing scene 2, or the final mix): both steps run again (their
    messages are redelivered), and the soundtrack completes once, with only its own file left."""
    stack = make_stack(USE_STEM_AWARE_CROSSFADE="false", USE_QUALITY_LOOP="false")
    stack.start_api()
    musicgen = stack.start_worker("--pool", "prefork")  # a killed pool process is replaced, its job redelivered
    pipeline = stack.start_worker(module=PIPELINE)  # prefork by default
    stack.wait_for_workers(2, timeout=240)
    body = {"base_prompt": "a piece to interrupt", "scenes": [{"duration": 6}, {"duration": 40}]}
    with stack.client() as client:
        job_id = client.post("/generate/soundtrack", json=body).json()["job_id"]

        def step_running(*names: str, started: bool = False) -> str | None:
            for step in client.get(f"/jobs/{job_id}").json()["children"]:
                if step["step"] in names and step["status"] == "processing" and (step["progress"] > 0 or not started):
                    return str(step["job_id"])
            return None

        scene = wait_until(
            lambda: step_running("scene:1", started=True), 120, interval=0.05, message=f"scene 2\n{stack.logs()}"
        )
        (pool_process,) = child_pids(musicgen.pid)
        os.kill(pool_process, signal.SIGKILL)
        mix = wait_until(
            lambda: step_running("prepare:1", "finalize"), 240, interval=0.02, message=f"a CPU step\n{stack.logs()}"
        )
        for pool_process in child_pids(pipeline.pid):
            os.kill(pool_process, signal.SIGKILL)
        job = poll_job(client, job_id, FINAL, timeout=240)
        assert job["status"] == "completed", (job, stack.logs())
        assert client.get(f"/jobs/{scene}").json()["attempts"] == 2
        assert client.get(f"/jobs/{mix}").json()["attempts"] == 2
        steps = job["children"]
        samples, _ = download(client, job["result_urls"][0])
        assert samples.shape == (1, 46 * RATE)
    ids = [job_id, *(step["job_id"] for step in steps)]
    only = [f"outputs/{job_id}_soundtrack.wav"]
    wait_until(lambda: stored(s3_server, stack, *ids) == only, 30, message=f"intermediate files of {job_id} to go")
