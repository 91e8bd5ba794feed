"""Finetune repositories of the Magenta pool: list the checkpoint steps one holds, fetch a file from it.

A repository is a Hugging Face model repository (`owner/name`), or its mirror: a folder of the same name
under MAGENTA_FINETUNES_DIR (for air-gapped deployments, and the tests), which is used whenever it exists.
Read by the API (`/magenta/model/checkpoints`, resolving `latest` before a selection is published) and by
the workers (fetching what they load). Only files named as a checkpoint or a steering asset are ever read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.magenta_model import DEFAULT_REVISION

T = TypeVar("T")
CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d{1,18})(\.tgz|\.tar\.gz|\.safetensors)?$")
"""`checkpoint_<step>.tgz` (the research API's packaging), `.safetensors`, or a `checkpoint_<step>/` folder."""


def local_mirror(repo: str, root: Path) -> Path | None:
    """The repository's folder under MAGENTA_FINETUNES_DIR, when there is one."""
    folder = (root / repo).resolve()
    if not folder.is_relative_to(root.resolve()):  # repo ids are checked, this keeps it so
        return None
    return folder if folder.is_dir() else None


def _mirror_at(repo: str, revision: str | None, root: Path) -> Path | None:
    """The repository's mirror, when there is one; a mirror holds one revision, `main`."""
    mirror = local_mirror(repo, root)
    if mirror is not None and (revision or DEFAULT_REVISION) != DEFAULT_REVISION:
        raise AppError(
            ErrorCode.CHECKPOINT_REPO_NOT_FOUND,
            f"{repo!r} is mirrored under MAGENTA_FINETUNES_DIR, which holds its {DEFAULT_REVISION!r} revision "
            f"only, not {revision!r}.",
            status_code=422,
        )
    return mirror


def list_checkpoints(repo: str, revision: str | None, *, root: Path) -> dict[int, str]:
    """Each step the repository holds and the file (or folder, in a mirror) holding it. AppError: 422
    `checkpoint_repo_not_found` for a repository or revision that does not exist, 502
    `checkpoint_repo_unavailable` when Hugging Face cannot be reached."""
    mirror = _mirror_at(repo, revision, root)
    if mirror is not None:
        names = [entry.name for entry in mirror.iterdir()]
    else:
        names = _hub_files(repo, revision or DEFAULT_REVISION)
    steps: dict[int, str] = {}
    for name in sorted(names):
        match = CHECKPOINT_NAME.match(name)
        if match:
            steps.setdefault(int(match.group(1)), name)
    return dict(sorted(steps.items()))


def fetch(repo: str, revision: str | None, filename: str, *, root: Path, cache_dir: Path) -> Path | None:
    """The local path of ``filename`` at the repository's root (downloaded into ``cache_dir`` from Hugging
    Face), or None when the repository has no such file. AppError as for ``list_checkpoints``."""
    mirror = _mirror_at(repo, revision, root)
    if mirror is not None:
        path = mirror / filename
        return path if path.exists() else None

    def download(hub: Any) -> Path | None:
        try:
            return Path(
                hub.hf_hub_download(
                    repo_id=repo, filename=filename, revision=revision or DEFAULT_REVISION, cache_dir=str(cache_dir)
                )
            )
        except hub.errors.RemoteEntryNotFoundError:  # the repository has no such file (offline is another error)
            return None

    return _ask_hub(repo, revision, download)


def _hub_files(repo: str, revision: str) -> list[str]:
    files: list[str] = _ask_hub(repo, revision, lambda hub: hub.list_repo_files(repo, revision=revision))
    return [name for name in files if "/" not in name]  # the root's files, as the research API packages them


def _ask_hub(repo: str, revision: str | None, call: Callable[[Any], T]) -> T:
    """``call(huggingface_hub)``, its errors as ours: a repository or revision that does not exist is
    `checkpoint_repo_not_found`; offline, refused, gated without a token, or no huggingface_hub installed
    is `checkpoint_repo_unavailable`."""
    try:
        import huggingface_hub
        import huggingface_hub.errors
    except ImportError as error:
        raise _unavailable(repo, error) from error
    errors = huggingface_hub.errors
    try:
        return call(huggingface_hub)
    except errors.GatedRepoError as gated:  # a RepositoryNotFoundError too, but a token would open it
        raise _unavailable(repo, gated) from gated
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as missing:
        raise _not_found(repo, revision) from missing
    except Exception as error:
        raise _unavailable(repo, error) from error


def _not_found(repo: str, revision: str | None) -> AppError:
    return AppError(
        ErrorCode.CHECKPOINT_REPO_NOT_FOUND,
        f"No finetune repository {repo!r} at revision {revision or DEFAULT_REVISION!r} (on Hugging Face, or "
        "mirrored under MAGENTA_FINETUNES_DIR).",
        status_code=422,
    )


def _unavailable(repo: str, error: Exception) -> AppError:
    return AppError(
        ErrorCode.CHECKPOINT_REPO_UNAVAILABLE,
        f"Hugging Face could not be asked about {repo!r} ({type(error).__name__}). Mirror the repository under "
        "MAGENTA_FINETUNES_DIR where the server is offline, or set HF_TOKEN for a private or gated one.",
        status_code=502,
    )
