"""The MagentaRT Research API's model routes end to end: a finetune repository mirrored under
MAGENTA_FINETUNES_DIR (checkpoint_<step>.tgz archives of random:tiny's weights, perturbed, and the steering
assets), selected through the API and followed by the package's real magenta worker; jobs run on the
selected weights, steer with the assets, and the bad selections change nothing."""

from __future__ import annotations

import base64
import hashlib
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.magenta.conftest import MAGENTA
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

REPO = "tester/tiny-ft"
BROKEN = "tester/broken-ft"
STEPS = (1000, 2000)
CENTROIDS = 3
SIZE = "random:tiny"


def _archive(repo_dir: Path, step: int, tensors: dict[str, np.ndarray], work: Path) -> None:
    from safetensors import numpy as safetensors_numpy

    folder = work / f"checkpoint_{step}"
    folder.mkdir(parents=True)
    safetensors_numpy.save_file(tensors, str(folder / "params.safetensors"))
    with tarfile.open(repo_dir / f"checkpoint_{step}.tgz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


@pytest.fixture(scope="module")
def finetune_repo(stack: Stack, model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REPO with two steps of perturbed random:tiny weights and both steering assets; BROKEN with one step
    whose weights are not random:tiny's. Afterwards the model's own weights are selected again."""
    from safetensors import numpy as safetensors_numpy
    from soundstage_magenta import random_models

    root = Path(stack.env["MAGENTA_FINETUNES_DIR"])
    base = safetensors_numpy.load_file(str(random_models.checkpoint_path("tiny", model_cache_dir)))
    work = tmp_path_factory.mktemp("finetune-build")
    repo_dir = root / REPO
    repo_dir.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for step in STEPS:
        tuned = {
            name: (value + rng.standard_normal(value.shape) * 0.05 * (float(np.std(value)) or 1.0)).astype(value.dtype)
            for name, value in base.items()
        }
        _archive(repo_dir, step, tuned, work / str(step))
    np.save(repo_dir / "mean_style_embed.npy", rng.standard_normal(768).astype(np.float32))
    np.save(repo_dir / "cluster_centroids.npy", rng.standard_normal((CENTROIDS, 768)).astype(np.float32))
    broken_dir = root / BROKEN
    broken_dir.mkdir(parents=True)
    _archive(broken_dir, 5, {"params/nothing/kernel": np.zeros((2, 2), np.float32)}, work / "broken")
    yield REPO
    with httpx.Client(base_url=stack.url, timeout=180) as client:
        back = client.post("/magenta/model/select", json={"size": SIZE, "step": "none", "prewarm": True})
        assert back.status_code == 200 and back.json()["prewarmed"] is True, back.text


def _config(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/magenta/model/config")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bars(client: httpx.Client, **fields: str) -> tuple[bytes, dict[str, Any]]:
    response = client.post(
        "/magenta/generate_style", data={"bpm": "120", "bars": "1", "seed": "11", "styles": "ambient", **fields}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    job = client.get(f"/jobs/{body['job_id']}").json()
    return base64.b64decode(body["audio_base64"]), job


def _digest(audio: bytes) -> str:
    return hashlib.sha256(audio).hexdigest()


def test_checkpoints_lists_a_mirrored_repositorys_steps(client: httpx.Client, finetune_repo: str) -> None:
    response = client.get("/magenta/model/checkpoints", params={"repo_id": finetune_repo})
    assert response.status_code == 200, response.text
    assert response.json() == {"repo": finetune_repo, "revision": "main", "steps": list(STEPS), "latest": STEPS[-1]}
    offline = client.get("/magenta/model/checkpoints", params={"repo_id": "someone/not-mirrored"})
    assert offline.status_code == 502 and offline.json()["error"]["code"] == "checkpoint_repo_unavailable"
    assert client.get("/magenta/model/checkpoints").status_code == 422  # nothing selected, no repo_id


def test_the_models_own_weights_are_served_before_any_selection(client: httpx.Client) -> None:
    config = _config(client)
    assert config["size"] == SIZE and config["repo"] is None and config["selected_step"] is None
    assert config["loaded"] is True and config["warmup_done"] is True and config["active_jam"] is False
    assert config["mean_loaded"] is False and config["centroid_count"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"size": "large", "repo_id": REPO}, "unknown_model"),
        ({"size": SIZE, "repo_id": REPO, "step": 1500}, "unknown_checkpoint_step"),
        ({"size": SIZE, "ckpt_repo": REPO, "ckpt_step": "soon"}, "validation_error"),
        ({"size": SIZE, "step": 1000}, "validation_error"),  # a step needs a repository
        ({"size": SIZE, "repo_id": "../../etc"}, "validation_error"),
        ({"size": SIZE, "repo_id": REPO, "surprise": True}, "validation_error"),
    ],
)
def test_bad_selections_are_refused_and_change_nothing(
    client: httpx.Client, finetune_repo: str, body: dict[str, Any], code: str
) -> None:
    before = _config(client)
    response = client.post("/magenta/model/select", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert _config(client)["version"] == before["version"]


def test_a_dry_run_resolves_latest_and_changes_nothing(client: httpx.Client, finetune_repo: str) -> None:
    before = _config(client)
    response = client.post("/magenta/model/select", json={"ckpt_repo": finetune_repo, "size": SIZE, "dry_run": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["dry_run"] is True and body["target_step"] == STEPS[-1]
    assert body["target_repo"] == finetune_repo and body["assets_repo"] == finetune_repo
    assert body["active_jam"] is False and body["version"] is None
    assert _config(client)["version"] == before["version"]


def test_a_selected_finetune_is_served_by_the_worker_and_steers_with_its_assets(
    client: httpx.Client, finetune_repo: str
) -> None:
    own_audio, own_job = _bars(client)
    assert own_job["result"]["checkpoint"] is None

    response = client.post(
        "/magenta/model/select", json={"repo_id": finetune_repo, "step": "1000", "size": SIZE, "prewarm": True}
    )
    assert response.status_code == 200, response.text
    selected = response.json()
    assert selected["prewarmed"] is True and selected["target_step"] == 1000
    [worker] = selected["workers"]
    [serving] = worker["serving"]
    assert serving["step"] == 1000 and serving["repo"] == finetune_repo and serving["version"] == selected["version"]
    assert serving["mean_loaded"] and serving["centroids_loaded"] and serving["centroid_count"] == CENTROIDS

    config = _config(client)
    assert config["loaded"] is True and config["selected_step"] == "1000" and config["repo"] == finetune_repo
    assert config["centroid_count"] == CENTROIDS and config["local_checkpoint_dir"]
    assets = client.get("/magenta/model/assets/status").json()
    assert assets["repo"] == finetune_repo and assets["mean_loaded"] and assets["centroid_count"] == CENTROIDS
    health = client.get("/health").json()
    magenta = [w for w in health["workers"] if w["queue"] == "magenta"]
    assert magenta and magenta[0]["serving"][0]["step"] == 1000

    tuned_audio, tuned_job = _bars(client)
    assert tuned_job["result"]["checkpoint"] == {"repo": finetune_repo, "revision": "main", "step": 1000}
    assert _digest(tuned_audio) != _digest(own_audio)  # same seed and style, other weights

    steered_audio, steered_job = _bars(client, centroid_weights="0, 2", mean="0.5")
    assert steered_job["params"]["centroid_weights"] == [0.0, 2.0] and steered_job["params"]["mean"] == 0.5
    assert _digest(steered_audio) != _digest(tuned_audio)
    only_assets, _ = _bars(client, styles="", mean="1")  # the finetune's mean style alone
    assert len(only_assets) > 1000

    too_many = client.post(
        "/magenta/generate_style", data={"bpm": "120", "styles": "ambient", "centroid_weights": "0,0,0,1"}
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "steering_unavailable"
    garbled = client.post("/magenta/generate_style", data={"bpm": "120", "styles": "x", "centroid_weights": "a,b"})
    assert garbled.status_code == 422 and garbled.json()["error"]["code"] == "validation_error"

    latest = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "prewarm": True}).json()
    assert latest["target_step"] == STEPS[-1] and latest["workers"][0]["serving"][0]["step"] == STEPS[-1]


def test_assets_are_kept_or_taken_apart_from_the_weights(client: httpx.Client, finetune_repo: str) -> None:
    plain = client.post("/magenta/model/select", json={"size": SIZE, "step": "none", "prewarm": True}).json()
    assert plain["assets_repo"] is None
    kept = client.post(
        "/magenta/model/select",
        json={"repo_id": finetune_repo, "step": 1000, "sync_assets": False, "prewarm": True},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["target_step"] == 1000 and kept.json()["assets_repo"] is None  # none were loaded: none kept
    refused = client.post("/magenta/generate_style", data={"bpm": "120", "styles": "x", "mean": "1"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "steering_unavailable"

    # The model's own weights, steered by the repository's assets.
    own = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "step": "none", "prewarm": True})
    assert own.status_code == 200, own.text
    assert own.json()["target_repo"] is None and own.json()["assets_repo"] == finetune_repo
    [serving] = own.json()["workers"][0]["serving"]
    assert serving["repo"] is None and serving["mean_loaded"] and serving["centroid_count"] == CENTROIDS
    _, job = _bars(client, mean="1")
    assert job["result"]["checkpoint"] is None and job["params"]["mean"] == 1.0

    before = _config(client)["version"]
    unreachable = client.post(
        "/magenta/model/select", json={"repo_id": finetune_repo, "assets_repo_id": "someone/not-mirrored"}
    )
    assert unreachable.status_code == 502 and unreachable.json()["error"]["code"] == "checkpoint_repo_unavailable"
    other_revision = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "revision": "dev"})
    assert other_revision.json()["error"]["code"] == "checkpoint_repo_not_found"
    assert _config(client)["version"] == before


def test_a_checkpoint_no_worker_can_load_is_rolled_back(client: httpx.Client, finetune_repo: str) -> None:
    served = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "prewarm": True}).json()
    response = client.post("/magenta/model/select", json={"repo_id": BROKEN, "size": SIZE, "prewarm": True})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "checkpoint_invalid"
    config = _config(client)
    assert config["repo"] == finetune_repo and config["selected_step"] == str(served["target_step"])
    assert config["version"] > served["version"]  # the selection before, published again
    audio, job = _bars(client)
    assert job["result"]["checkpoint"]["repo"] == finetune_repo and audio


def test_every_worker_follows_the_selection_one_started_later_too(
    stack: Stack, client: httpx.Client, finetune_repo: str
) -> None:
    first = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "step": 1000, "prewarm": True})
    assert first.status_code == 200 and first.json()["prewarmed"] is True, first.text
    second = stack.start_worker(module=MAGENTA)
    try:
        stack.wait_for_workers(2, timeout=300)  # ready only once it serves the selection in force
        config = _config(client)
        assert config["loaded"] is True and len(config["workers"]) == 2
        assert [w["serving"][0]["step"] for w in config["workers"]] == [1000, 1000]

        switched = client.post("/magenta/model/select", json={"repo_id": finetune_repo, "prewarm": True})
        assert switched.status_code == 200 and switched.json()["prewarmed"] is True, switched.text
        workers = switched.json()["workers"]
        assert len(workers) == 2 and all(w["serving"][0]["step"] == STEPS[-1] for w in workers)
    finally:
        second.stop()
        stack.workers.remove(second)
    wait_until(lambda: len(_config(client)["workers"]) == 1, 60, message="the stopped worker to leave the registry")


def test_back_to_the_models_own_weights_steering_is_refused(client: httpx.Client, finetune_repo: str) -> None:
    response = client.post(
        "/magenta/model/select", json={"size": SIZE, "step": "none", "sync_assets": True, "prewarm": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["target_repo"] is None and response.json()["assets_repo"] is None
    refused = client.post("/magenta/generate_style", data={"bpm": "120", "styles": "x", "mean": "1"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "steering_unavailable"
    _, job = _bars(client)
    assert job["result"]["checkpoint"] is None
