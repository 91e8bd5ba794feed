"""Finetune repositories (mirrors under MAGENTA_FINETUNES_DIR), the boot selection from MRT_* and the
worker's fetching of checkpoints and steering assets: names, steps, archives and arrays, good and bad."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from soundstage_magenta.finetune import FinetuneFetcher

from soundstage import finetunes, magenta_selection
from soundstage.errors import AppError
from soundstage.schemas.magenta_model import ModelSelection, ModelSelectRequest, parse_step
from soundstage.settings import Settings


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings(model_cache_dir=tmp_path / "cache", magenta={"finetunes_dir": tmp_path / "ft", **env})


def _tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "ft" / "me" / "tuned"
    folder.mkdir(parents=True)
    _tgz(folder / "checkpoint_20.tgz", {"checkpoint_20/params.safetensors": b"weights-20"})
    (folder / "checkpoint_3.safetensors").write_bytes(b"weights-3")
    (folder / "checkpoint_100").mkdir()
    (folder / "checkpoint_100" / "w.safetensors").write_bytes(b"weights-100")
    for ignored in ("README.md", "checkpoint_x.tgz", "checkpoint_7.zip"):
        (folder / ignored).write_bytes(b"")
    return folder


def test_steps_are_read_from_the_names_a_repository_holds(tmp_path: Path, repo: Path) -> None:
    steps = finetunes.list_checkpoints("me/tuned", None, root=tmp_path / "ft")
    assert steps == {3: "checkpoint_3.safetensors", 20: "checkpoint_20.tgz", 100: "checkpoint_100"}
    assert finetunes.fetch("me/tuned", None, "nothing.npy", root=tmp_path / "ft", cache_dir=tmp_path) is None


def test_a_repository_id_cannot_leave_the_mirror_folder(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    assert finetunes.local_mirror("../elsewhere", tmp_path / "ft") is None
    with pytest.raises(ValidationError):
        ModelSelectRequest.model_validate({"repo_id": "../../etc"})


def test_the_fetcher_finds_the_safetensors_of_every_packaging(tmp_path: Path, repo: Path) -> None:
    fetcher = FinetuneFetcher(_settings(tmp_path))
    for step, content in ((20, b"weights-20"), (3, b"weights-3"), (100, b"weights-100")):
        checkpoint = fetcher.checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step=step))
        assert checkpoint.step == step and checkpoint.path.read_bytes() == content
    latest = fetcher.checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step="latest"))
    assert latest.step == 100
    with pytest.raises(AppError) as missing:
        fetcher.checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step=4))
    assert missing.value.code == "unknown_checkpoint_step" and "3, 20, 100" in missing.value.message


@pytest.mark.parametrize(
    "members",
    [
        {"checkpoint_9/a.zarray": b"{}"},  # an MRT 1 orbax checkpoint: no safetensors
        {"checkpoint_9/a.safetensors": b"1", "checkpoint_9/b.safetensors": b"2"},
    ],
)
def test_archives_that_are_not_one_checkpoint_are_refused(
    tmp_path: Path, repo: Path, members: dict[str, bytes]
) -> None:
    _tgz(repo / "checkpoint_9.tgz", members)
    with pytest.raises(AppError) as refused:
        FinetuneFetcher(_settings(tmp_path)).checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step=9))
    assert refused.value.code == "checkpoint_invalid"


def test_an_archive_member_outside_its_folder_is_never_written(tmp_path: Path, repo: Path) -> None:
    _tgz(repo / "checkpoint_9.tgz", {"checkpoint_9/ok.safetensors": b"1", "../../escape.safetensors": b"x"})
    with pytest.raises(AppError) as refused:
        FinetuneFetcher(_settings(tmp_path)).checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step=9))
    assert refused.value.code == "checkpoint_invalid"
    assert isinstance(refused.value.__cause__, tarfile.OutsideDestinationError)
    assert not list(tmp_path.rglob("escape.safetensors"))
    assert not list((tmp_path / "cache").rglob("ok.safetensors"))  # nothing of the archive is kept


def test_workers_unpacking_the_same_archive_at_once_share_the_first_folder(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soundstage_magenta import finetune

    real_replace = os.replace

    def another_worker_won(source: str, target: str) -> None:
        real_replace(source, target)  # the other worker's folder lands first ...
        raise OSError(39, "Directory not empty")  # ... and ours then finds it there

    monkeypatch.setattr(finetune.os, "replace", another_worker_won)
    checkpoint = FinetuneFetcher(_settings(tmp_path)).checkpoint(
        ModelSelection(size="random:tiny", repo="me/tuned", step=20)
    )
    assert checkpoint.path.read_bytes() == b"weights-20"


def test_a_mirror_holds_main_only_and_revisions_cannot_climb(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(AppError) as other:
        finetunes.list_checkpoints("me/tuned", "dev", root=tmp_path / "ft")
    assert other.value.code == "checkpoint_repo_not_found"
    for revision in ("main/../../../tmp", "a//b", "/abs", "../x"):
        with pytest.raises(ValidationError):
            ModelSelectRequest.model_validate({"repo_id": "me/tuned", "revision": revision})
    for repo_id in ("me--x/tuned", "me/tu..ned", "a/b/c"):
        with pytest.raises(ValidationError):
            ModelSelectRequest.model_validate({"repo_id": repo_id})


def test_hugging_face_offline_is_unavailable_not_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub import errors

    def offline(**_: object) -> str:
        raise errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(AppError) as refused:
        finetunes.fetch("someone/remote", None, "mean_style_embed.npy", root=tmp_path / "ft", cache_dir=tmp_path)
    assert refused.value.code == "checkpoint_repo_unavailable" and refused.value.status_code == 502


def test_a_corrupt_archive_is_refused(tmp_path: Path, repo: Path) -> None:
    (repo / "checkpoint_9.tgz").write_bytes(b"not gzip at all")
    with pytest.raises(AppError) as refused:
        FinetuneFetcher(_settings(tmp_path)).checkpoint(ModelSelection(size="random:tiny", repo="me/tuned", step=9))
    assert refused.value.code == "checkpoint_invalid"


def test_steering_assets_are_loaded_and_checked(tmp_path: Path, repo: Path) -> None:
    fetcher = FinetuneFetcher(_settings(tmp_path))
    assert fetcher.assets("me/tuned", None).mean is None  # a repository without assets: none, not an error
    np.save(repo / "mean_style_embed.npy", np.ones((1, 768), np.float32))
    np.save(repo / "cluster_centroids.npy", np.zeros((5, 768), np.float64))
    assets = fetcher.assets("me/tuned", None)
    assert assets.mean is not None and assets.mean.shape == (768,) and assets.centroid_count == 5
    assert assets.centroids is not None and assets.centroids.dtype == np.float32
    for bad in (np.ones((4, 767), np.float32), np.array([np.nan] * 768), np.arange(768), np.ones((65, 768))):
        np.save(repo / "cluster_centroids.npy", bad)
        with pytest.raises(AppError) as refused:
            fetcher.assets("me/tuned", None)
        assert refused.value.code == "checkpoint_invalid"
    np.save(repo / "cluster_centroids.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(AppError):
        fetcher.assets("me/tuned", None)  # pickles are never loaded
    with open(repo / "cluster_centroids.npy", "wb") as npz:
        np.savez(npz, centroids=np.ones((2, 768), np.float32))
    with pytest.raises(AppError) as archive:
        fetcher.assets("me/tuned", None)
    assert archive.value.code == "checkpoint_invalid"


def test_the_boot_selection_follows_the_research_apis_variables(tmp_path: Path) -> None:
    plain = magenta_selection.boot_selection(_settings(tmp_path, model="random:tiny"))
    assert plain.size == "random:tiny" and plain.repo is None and plain.step is None and plain.version == 0
    booted = magenta_selection.boot_selection(
        _settings(tmp_path, model="mrt2_base", mrt_size="base", mrt_ckpt_repo="me/tuned", mrt_assets_repo="me/assets")
    )
    assert (booted.size, booted.repo, booted.step) == ("mrt2_base", "me/tuned", "latest")
    assert booted.assets_repo == "me/assets"
    stepped = magenta_selection.boot_selection(_settings(tmp_path, mrt_ckpt_repo="me/tuned", mrt_ckpt_step="1863001"))
    assert stepped.step == 1863001 and stepped.assets_repo == "me/tuned"
    with pytest.raises(ValidationError):
        _settings(tmp_path, mrt_ckpt_repo="me/tuned", mrt_ckpt_step="soon")
    with pytest.raises(ValidationError):
        _settings(tmp_path, mrt_ckpt_repo="not a repo")
    with pytest.raises(ValidationError):
        _settings(tmp_path, model="mrt2_small", mrt_size="large")  # the seed's MRT 1 size: not served here


@pytest.mark.parametrize(
    ("given", "expected"), [("none", "none"), ("LATEST", "latest"), ("12", 12), (7, 7), ("", None), (None, None)]
)
def test_steps_parse_as_the_research_api_sends_them(given: object, expected: object) -> None:
    assert parse_step(given) == expected


@pytest.mark.parametrize("given", ["-1", -1, "1.5", True, "soon", 2.0])
def test_bad_steps_are_refused(given: object) -> None:
    with pytest.raises(ValueError):
        parse_step(given)
