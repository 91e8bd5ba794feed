"""Which checkpoint the Magenta pool serves: the MagentaRT Research API's model routes (`/magenta/model/*`),
the selection the API publishes for every magenta worker, and what each worker reports it serves.

A finetune repository (a Hugging Face model repository, or its mirror under MAGENTA_FINETUNES_DIR) holds
`checkpoint_<step>.tgz` archives (or `checkpoint_<step>.safetensors` files, or `checkpoint_<step>/` folders)
of a base size's weights, and the steering assets `mean_style_embed.npy` (one style embedding) and
`cluster_centroids.npy` (one per row) at its root. A selection names a size the pool serves, optionally a
repository, revision and step (none: the size's own weights), and where the steering assets come from.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"
REVISION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"


def check_repo_id(value: str) -> str:
    """`owner/name` as Hugging Face allows it (no `--` or `..`): also the path of its mirror. ValueError else."""
    if not re.match(REPO_ID_PATTERN, value) or "--" in value or ".." in value:
        raise ValueError("must be a repository id: owner/name (letters, digits, '.', '_', '-'; no '--' or '..')")
    return value


def _check_revision(value: str) -> str:
    """A branch, tag or commit: `/`-separated segments, none of them `..`."""
    if ".." in value:
        raise ValueError("a revision has no '..'")
    return value


RepoId = Annotated[str, StringConstraints(strip_whitespace=True, max_length=193), AfterValidator(check_repo_id)]
Revision = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=REVISION_PATTERN),
    AfterValidator(_check_revision),
]
DEFAULT_REVISION = "main"
MEAN_ASSET = "mean_style_embed.npy"
CENTROIDS_ASSET = "cluster_centroids.npy"
MAX_CENTROIDS = 64
"""Most centroids a `cluster_centroids.npy` may hold (and `centroid_weights` may weigh)."""
STEP_NONE: Literal["none"] = "none"
STEP_LATEST: Literal["latest"] = "latest"
SIZE_ALIASES = {"small": "mrt2_small", "base": "mrt2_base"}
"""Short names of the published sizes, as the research API's clients send them."""


def canonical_size(size: str) -> str:
    """A size as the pool names it (`small` -> `mrt2_small`)."""
    return SIZE_ALIASES.get(size.strip(), size.strip())


def parse_step(value: object) -> int | Literal["none", "latest"] | None:
    """A checkpoint step as clients send it: `none`, `latest`, digits or an integer (None: not given).
    ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("step must be 'none', 'latest' or a whole number")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("step must not be negative")
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == STEP_NONE:
            return STEP_NONE
        if text == STEP_LATEST:
            return STEP_LATEST
        if text.isdigit() and len(text) <= 18:
            return int(text)
    raise ValueError("step must be 'none', 'latest' or a whole number")


class ModelSelectRequest(BaseModel):
    """`POST /magenta/model/select` (the research API's body; `ckpt_repo` and `ckpt_step` are its older
    names)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size: str | None = Field(
        default=None,
        max_length=64,
        description="The base size: a model the pool serves (`mrt2_small`, `mrt2_base`, `small`, `base`, "
        "`random:tiny`). Default: the size selected now.",
    )
    repo_id: RepoId | None = Field(
        default=None,
        validation_alias=AliasChoices("repo_id", "ckpt_repo"),
        description="Finetune repository (`owner/name` on Hugging Face, or its mirror under "
        "MAGENTA_FINETUNES_DIR). None: the size's own weights.",
    )
    revision: Revision | None = Field(default=None, description="Branch, tag or commit of the repository (`main`).")
    step: int | Literal["none", "latest"] | None = Field(
        default=None,
        validation_alias=AliasChoices("step", "ckpt_step"),
        description="`none` (the size's own weights), `latest` (the highest step; the default with a repository) "
        "or a step the repository has.",
    )
    assets_repo_id: RepoId | None = Field(
        default=None,
        description="Where `mean_style_embed.npy` and `cluster_centroids.npy` come from. Default: `repo_id`.",
    )
    sync_assets: bool = Field(default=True, description="Load the steering assets with the checkpoint.")
    prewarm: bool = Field(
        default=False, description="Answer once every magenta worker serves the new checkpoint (or the wait ends)."
    )
    stop_active: bool = Field(
        default=True,
        description="Stop every running jam (false: they go on, on the checkpoint they started with).",
    )
    dry_run: bool = Field(default=False, description="Check and resolve the selection; change nothing.")

    @field_validator("step", mode="before")
    @classmethod
    def _step(cls, value: object) -> object:
        return parse_step(value)


class ModelSelection(BaseModel):
    """The checkpoint the magenta pool serves, as the API publishes it (every worker follows it) and as each
    job records it (a redelivered job runs on the same weights)."""

    model_config = ConfigDict(extra="forbid")

    size: str = Field(description="The served model the checkpoint is a finetune of (its architecture).")
    repo: str | None = Field(default=None, description="Finetune repository; None: the size's own weights.")
    revision: str = Field(default=DEFAULT_REVISION, description="The repository's revision.")
    step: int | Literal["latest"] | None = Field(
        default=None, description="The checkpoint's step (`latest` only as MRT_CKPT_STEP set it at boot)."
    )
    assets_repo: str | None = Field(default=None, description="Where the steering assets come from.")
    assets_revision: str = Field(default=DEFAULT_REVISION, description="The assets repository's revision.")
    version: int = Field(default=0, ge=0, description="Increases with every selection; 0: the boot default.")
    selected_at: datetime | None = Field(default=None, description="When it was selected (UTC).")

    def same_weights(self, other: ModelSelection | None) -> bool:
        return other is not None and (self.size, self.repo, self.revision, self.step) == (
            other.size,
            other.repo,
            other.revision,
            other.step,
        )


class ServingCheckpoint(BaseModel):
    """What one magenta worker serves for one model, as its heartbeat reports it (`/health`)."""

    size: str = Field(description="The model (base size).")
    repo: str | None = Field(default=None, description="Finetune repository; None: the size's own weights.")
    revision: str | None = Field(default=None, description="The repository's revision.")
    step: int | None = Field(default=None, description="The checkpoint's step; None: the size's own weights.")
    version: int = Field(default=0, description="The selection it serves (ModelSelection.version).")
    local_checkpoint_dir: str | None = Field(default=None, description="Where the checkpoint lies on the worker.")
    assets_repo: str | None = Field(default=None, description="Where its steering assets came from.")
    mean_loaded: bool = Field(default=False, description="`mean_style_embed.npy` is loaded.")
    centroids_loaded: bool = Field(default=False, description="`cluster_centroids.npy` is loaded.")
    centroid_count: int = Field(default=0, description="Centroids loaded.")
    switching: bool = Field(default=False, description="A newer selection is loading.")
    error: str | None = Field(default=None, description="Why the newest selection could not be served, if not.")
    failed_version: int | None = Field(default=None, description="The selection `error` is about.")
    error_code: str | None = Field(
        default=None, description="`error`'s code (`checkpoint_repo_unavailable` may pass: it is tried again)."
    )


class WorkerServing(BaseModel):
    """What one live magenta worker serves."""

    hostname: str = Field(description="The worker (host and process id).")
    serving: list[ServingCheckpoint] = Field(description="Per model it loaded: the checkpoint and assets.")


class SelectAnswer(BaseModel):
    """`POST /magenta/model/select`'s answer (the research API's fields, then ours)."""

    ok: bool = Field(description="True: selected (or, with dry_run, it would be).")
    dry_run: bool = Field(description="Whether this was only a check.")
    target_size: str = Field(description="The size selected.")
    target_repo: str | None = Field(description="The finetune repository; null: the size's own weights.")
    target_revision: str = Field(description="The repository's revision.")
    target_step: int | None = Field(description="The resolved step; null: the size's own weights.")
    assets_repo: str | None = Field(description="Where the steering assets come from; null: none.")
    active_jam: bool = Field(description="Whether a jam was running (`stop_active` stopped them).")
    version: int | None = Field(default=None, description="The selection's version (null with dry_run).")
    prewarmed: bool | None = Field(
        default=None, description="With prewarm: whether every live magenta worker served it before the answer."
    )
    workers: list[WorkerServing] = Field(default_factory=list, description="What each magenta worker serves.")


class ModelConfig(BaseModel):
    """`GET /magenta/model/config`: the selected checkpoint and whether the workers serve it."""

    size: str = Field(description="The selected size.")
    repo: str | None = Field(description="The selected finetune repository; null: the size's own weights.")
    revision: str = Field(description="The repository's revision.")
    selected_step: str | None = Field(description="The selected step as text (`latest` at boot); null: none.")
    assets_repo: str | None = Field(description="Where the steering assets come from; null: none.")
    loaded: bool = Field(description="Every live magenta worker serves the selection (and there is one).")
    active_jam: bool = Field(description="Whether a jam is running.")
    local_checkpoint_dir: str | None = Field(description="Where the checkpoint lies on a worker serving it.")
    mean_loaded: bool = Field(description="A worker serving it holds `mean_style_embed.npy`.")
    centroids_loaded: bool = Field(description="A worker serving it holds `cluster_centroids.npy`.")
    centroid_count: int = Field(description="Centroids held.")
    warmup_done: bool = Field(description="A magenta worker serves the selection, loaded and compiled.")
    version: int = Field(description="The selection's version (0: the boot default).")
    workers: list[WorkerServing] = Field(default_factory=list, description="What each magenta worker serves.")


class CheckpointList(BaseModel):
    """`GET /magenta/model/checkpoints`: the steps a finetune repository holds."""

    repo: str = Field(description="The repository.")
    revision: str = Field(description="Its revision.")
    steps: list[int] = Field(description="The checkpoint steps it holds, ascending.")
    latest: int | None = Field(description="The highest step; null: none.")


class AssetsStatus(BaseModel):
    """`GET /magenta/model/assets/status`: the steering assets of the selection, as the workers hold them."""

    repo: str | None = Field(description="Where the selection's assets come from; null: none selected.")
    mean_loaded: bool = Field(description="A worker holds `mean_style_embed.npy` (what `mean` weighs).")
    centroids_loaded: bool = Field(description="A worker holds `cluster_centroids.npy` (`centroid_weights`).")
    centroid_count: int = Field(description="Centroids held (`centroid_weights` weighs at most this many).")
    workers: list[WorkerServing] = Field(default_factory=list, description="What each magenta worker serves.")
