"""What a selected finetune needs on this worker: its checkpoint as a safetensors file, and its steering assets.

A repository's `checkpoint_<step>.tgz` is extracted once into the model cache (links, absolute paths and
special files refused: tarfile's `data` filter) and the one `.safetensors` file in it is the checkpoint:
Magenta RT 2 loads safetensors (an archive of an MRT 1 orbax checkpoint has none, and says so). The assets
are plain `.npy` arrays, read without pickles and checked against MusicCoCa's embedding size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundstage import finetunes
from soundstage.errors import AppError, ErrorCode
from soundstage.magenta_selection import finetunes_root
from soundstage.schemas.magenta_model import (
    CENTROIDS_ASSET,
    MAX_CENTROIDS,
    MEAN_ASSET,
    STEP_LATEST,
    ModelSelection,
)
from soundstage.settings import Settings
from soundstage_magenta.system import EMBEDDING_DIM

Vectors = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True)
class Checkpoint:
    """A finetune's weights on this worker."""

    step: int
    path: Path  # the safetensors file


@dataclass(frozen=True)
class SteeringAssets:
    """`mean_style_embed.npy` (EMBEDDING_DIM,) and `cluster_centroids.npy` (count, EMBEDDING_DIM), each None
    where the repository has none."""

    repo: str | None
    mean: Vectors | None = None
    centroids: Vectors | None = None

    @property
    def centroid_count(self) -> int:
        return 0 if self.centroids is None else int(self.centroids.shape[0])


NO_ASSETS = SteeringAssets(repo=None)


class FinetuneFetcher:
    """Resolves and fetches what selections name, into MODEL_CACHE_DIR/magenta/finetunes."""

    def __init__(self, settings: Settings) -> None:
        self._root = finetunes_root(settings)
        self._cache = settings.resolved_model_cache_dir / "magenta" / "finetunes"

    def checkpoint(self, selection: ModelSelection) -> Checkpoint:
        """The selection's checkpoint (its `latest` resolved). AppError: `unknown_checkpoint_step`,
        `checkpoint_invalid`, or the repository's errors (``finetunes.list_checkpoints``)."""
        if selection.repo is None:
            raise ValueError("a selection without a repository has no finetune checkpoint")
        repo, revision = selection.repo, selection.revision
        steps = finetunes.list_checkpoints(repo, revision, root=self._root)
        if not steps:
            raise AppError(
                ErrorCode.UNKNOWN_CHECKPOINT_STEP, f"{repo!r} holds no checkpoint_<step> files.", status_code=422
            )
        step = max(steps) if selection.step in (None, STEP_LATEST) else int(selection.step)
        if step not in steps:
            raise AppError(
                ErrorCode.UNKNOWN_CHECKPOINT_STEP,
                f"{repo!r} has no checkpoint at step {step} (it has {', '.join(map(str, steps))}).",
                status_code=422,
            )
        name = steps[step]
        source = finetunes.fetch(repo, revision, name, root=self._root, cache_dir=self._cache / "hub")
        if source is None:
            raise AppError(ErrorCode.UNKNOWN_CHECKPOINT_STEP, f"{repo!r} lost {name} meanwhile.", status_code=422)
        if source.is_file() and name.endswith(".safetensors"):
            return Checkpoint(step=step, path=source)
        folder = source if source.is_dir() else self._extracted(source, repo, step)
        found = sorted(folder.rglob("*.safetensors"))
        if len(found) != 1:
            raise AppError(
                ErrorCode.CHECKPOINT_INVALID,
                f"{name} of {repo!r} holds {len(found)} .safetensors files; a Magenta RT 2 checkpoint is one "
                "(an MRT 1 orbax checkpoint cannot be loaded by Magenta RT 2).",
                status_code=422,
            )
        return Checkpoint(step=step, path=found[0])

    def assets(self, repo: str | None, revision: str | None) -> SteeringAssets:
        """The repository's steering assets (each None where it has none). AppError `checkpoint_invalid` for
        arrays of the wrong shape."""
        if repo is None:
            return NO_ASSETS
        cache = self._cache / "hub"
        mean_path = finetunes.fetch(repo, revision, MEAN_ASSET, root=self._root, cache_dir=cache)
        centroids_path = finetunes.fetch(repo, revision, CENTROIDS_ASSET, root=self._root, cache_dir=cache)
        mean = None if mean_path is None else _vectors(mean_path, repo)
        if mean is not None and mean.shape[0] != 1:
            raise _bad_asset(repo, MEAN_ASSET, f"one embedding, not {mean.shape[0]}")
        centroids = None if centroids_path is None else _vectors(centroids_path, repo)
        if centroids is not None and centroids.shape[0] > MAX_CENTROIDS:
            raise _bad_asset(repo, CENTROIDS_ASSET, f"at most {MAX_CENTROIDS} centroids, not {centroids.shape[0]}")
        return SteeringAssets(repo=repo, mean=None if mean is None else mean[0], centroids=centroids)

    def _extracted(self, archive: Path, repo: str, step: int) -> Path:
        """The archive unpacked once into the cache, in a folder named by the archive's own path (a download's
        path names the repository's commit, so an updated repository is unpacked afresh). Workers sharing
        the cache may unpack it at the same time: the first to finish wins, the others use its folder."""
        digest = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:16]
        target = self._cache / "unpacked" / f"{repo.replace('/', '__')}-{step}-{digest}"
        if not target.resolve().is_relative_to(self._cache.resolve()):  # repo ids are checked; this keeps it so
            raise AppError(ErrorCode.CHECKPOINT_INVALID, f"{repo!r} cannot be unpacked here.", status_code=422)
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
        try:
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(partial, filter="data")
            except (tarfile.TarError, OSError) as error:
                raise AppError(
                    ErrorCode.CHECKPOINT_INVALID,
                    f"{archive.name} of {repo!r} is not a readable .tgz archive ({type(error).__name__}).",
                    status_code=422,
                ) from error
            try:
                os.replace(partial, target)
            except OSError:
                if not target.is_dir():  # not another worker's finished folder: a real failure
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target


def _vectors(path: Path, repo: str) -> Vectors:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise _bad_asset(repo, path.name, f"a readable .npy array ({type(error).__name__})") from error
    if not isinstance(array, np.ndarray):  # an .npz archive under the .npy name
        raise _bad_asset(repo, path.name, "one .npy array, not an .npz archive")
    if array.dtype.kind != "f" or array.ndim not in (1, 2) or array.shape[-1] != EMBEDDING_DIM or array.size == 0:
        raise _bad_asset(repo, path.name, f"float embeddings of {EMBEDDING_DIM}, not {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise _bad_asset(repo, path.name, "finite numbers")
    vectors: Vectors = np.asarray(array, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
    return vectors


def _bad_asset(repo: str, name: str, expected: str) -> AppError:
    return AppError(ErrorCode.CHECKPOINT_INVALID, f"{name} of {repo!r} must hold {expected}.", status_code=422)
