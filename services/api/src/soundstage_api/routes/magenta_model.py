"""The MagentaRT Research API's model routes: which checkpoint (a size's own weights, or a finetune's step)
the magenta pool serves. `POST /magenta/model/select` checks and resolves a selection (the repository and
its step must exist), publishes it in Redis for every magenta worker (each loads it within a second or
two: the weights only, nothing is compiled again) and, with `prewarm`, answers once every live worker
serves it; a selection no worker can load is rolled back to the one before. Reads: `GET
/magenta/model/config`, `/magenta/model/checkpoints`, `/magenta/model/assets/status`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from soundstage import finetunes, magenta_selection
from soundstage.errors import AppError, ErrorCode
from soundstage.keys import Scope
from soundstage.schemas import ErrorBody
from soundstage.schemas.magenta_model import (
    DEFAULT_REVISION,
    STEP_NONE,
    AssetsStatus,
    CheckpointList,
    ModelConfig,
    ModelSelection,
    ModelSelectRequest,
    RepoId,
    Revision,
    SelectAnswer,
    ServingCheckpoint,
    WorkerServing,
    canonical_size,
)
from soundstage_api.auth import ApiKey, RequireScope
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.magenta_checkpoint import selected, serving_entries
from soundstage_api.state import AppState, State
from soundstage_api.uploads import form_error

PREWARM_POLL_SECONDS = 0.25

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/magenta/model", route_class=GuardedRoute, tags=["magenta research API"])
MayAdminister = Depends(RequireScope(Scope.ADMIN))

_REPO_ERRORS: dict[int | str, dict[str, object]] = {
    422: {
        "model": ErrorBody,
        "description": "Bad fields (`validation_error`), an unknown size (`unknown_model`), repository "
        "(`checkpoint_repo_not_found`) or step (`unknown_checkpoint_step`), or a checkpoint no worker could load "
        "(`checkpoint_invalid`, rolled back)",
    },
    502: {"model": ErrorBody, "description": "Hugging Face could not be reached (`checkpoint_repo_unavailable`)"},
}


@router.post(
    "/select",
    dependencies=[ApiKey, MayAdminister],
    response_model=SelectAnswer,
    responses=_REPO_ERRORS,
    summary="Serve another checkpoint: a size's own weights or a finetune's step (admin)",
)
async def select_model(body: ModelSelectRequest, state: State) -> SelectAnswer:
    """Select what every magenta worker serves. The size must be one the pool serves; a repository's step
    (`latest` by default) must exist. With `dry_run` nothing changes; with `prewarm` the answer waits (at
    most SYNC_WAIT_SECONDS) until every live worker serves it. Jobs written before keep their weights."""
    target = await run_in_threadpool(_resolve, state, body)
    answer = SelectAnswer(
        ok=True,
        dry_run=body.dry_run,
        target_size=target.size,
        target_repo=target.repo,
        target_revision=target.revision,
        target_step=target.step if isinstance(target.step, int) else None,
        assets_repo=target.assets_repo,
        active_jam=await state.jams.active(),
    )
    if body.dry_run:
        return answer
    if body.stop_active and answer.active_jam:
        stopped = await state.jams.stop_running("the model was switched", everyone=True)
        logger.info("model select: stopped %d running jam(s)", len(stopped))
    previous = await run_in_threadpool(selected, state)
    published = await run_in_threadpool(magenta_selection.publish, state.redis, target)
    if published is None:  # only a conditional publish can be refused
        raise RuntimeError("the selection was not published")
    answer.version = published.version
    if body.prewarm:
        answer.prewarmed = await _wait_served(state, published, previous)
    answer.workers = await run_in_threadpool(_workers, state, published.size)
    return answer


@router.get("/config", dependencies=[ApiKey], response_model=ModelConfig, summary="The selected checkpoint")
async def model_config(state: State) -> ModelConfig:
    """The selection in force and whether the live magenta workers serve it (`loaded`), with its steering
    assets as they hold them."""
    selection = await run_in_threadpool(selected, state)
    entries = await run_in_threadpool(serving_entries, state, selection.size)
    current = [entry for _, entry in entries if _serves(entry, selection)]
    workers = await run_in_threadpool(_workers, state, selection.size)
    return ModelConfig(
        size=selection.size,
        repo=selection.repo,
        revision=selection.revision,
        selected_step=None if selection.step is None else str(selection.step),
        assets_repo=selection.assets_repo,
        loaded=bool(entries) and len(current) == len(entries),
        active_jam=await state.jams.active(),
        local_checkpoint_dir=next((entry.local_checkpoint_dir for entry in current), None),
        mean_loaded=any(entry.mean_loaded for entry in current),
        centroids_loaded=any(entry.centroids_loaded for entry in current),
        centroid_count=max((entry.centroid_count for entry in current), default=0),
        warmup_done=bool(current),
        version=selection.version,
        workers=workers,
    )


@router.get(
    "/checkpoints",
    dependencies=[ApiKey],
    response_model=CheckpointList,
    responses=_REPO_ERRORS,
    summary="The checkpoint steps of a finetune repository",
)
def list_checkpoints(
    state: State,
    repo_id: Annotated[RepoId | None, Query(description="Default: the selected repository.")] = None,
    revision: Annotated[Revision | None, Query(description="Default: `main`.")] = None,
) -> CheckpointList:
    """The steps `repo_id` holds (`checkpoint_<step>.tgz`, `.safetensors` or folders), ascending."""
    current = selected(state)
    if repo_id is None and current.repo is None:
        raise form_error("give repo_id: no finetune repository is selected.", ["query", "repo_id"])
    repo = repo_id or current.repo or ""
    revision = revision or (current.revision if repo_id is None else DEFAULT_REVISION)
    steps = finetunes.list_checkpoints(repo, revision, root=magenta_selection.finetunes_root(state.settings))
    return CheckpointList(repo=repo, revision=revision, steps=list(steps), latest=max(steps, default=None))


@router.get(
    "/assets/status",
    dependencies=[ApiKey],
    response_model=AssetsStatus,
    summary="The selected finetune's steering assets",
)
def assets_status(state: State) -> AssetsStatus:
    """Whether the live magenta workers hold the selection's `mean_style_embed.npy` and
    `cluster_centroids.npy` (what `mean` and `centroid_weights` steer with)."""
    selection = selected(state)
    held = [
        entry
        for _, entry in serving_entries(state, selection.size)
        if entry.assets_repo == selection.assets_repo and selection.assets_repo is not None
    ]
    return AssetsStatus(
        repo=selection.assets_repo,
        mean_loaded=any(entry.mean_loaded for entry in held),
        centroids_loaded=any(entry.centroids_loaded for entry in held),
        centroid_count=max((entry.centroid_count for entry in held), default=0),
        workers=_workers(state, selection.size),
    )


def _resolve(state: AppState, body: ModelSelectRequest) -> ModelSelection:
    """The selection ``body`` asks for, checked: its `latest` resolved, its assets repository chosen."""
    current = selected(state)
    served = state.settings.magenta.served_models
    size = canonical_size(body.size) if body.size else current.size
    if size not in served:
        raise AppError(
            ErrorCode.UNKNOWN_MODEL,
            f"Unknown size {body.size!r}; this server serves: {', '.join(served)}.",
            status_code=422,
            details=[{"loc": ["body", "size"], "msg": "unknown size", "type": "unknown_model", "choices": served}],
        )
    revision = body.revision or DEFAULT_REVISION
    root = magenta_selection.finetunes_root(state.settings)
    step: int | None = None
    if body.repo_id is None:
        if body.step not in (None, STEP_NONE):
            raise form_error("step needs a repo_id (the finetune repository it is a step of).", ["body", "step"])
    else:
        steps = finetunes.list_checkpoints(body.repo_id, revision, root=root)  # the repository must exist
        if body.step != STEP_NONE:
            step = max(steps, default=None) if body.step in (None, "latest") else int(body.step)
            if step is None or step not in steps:
                raise AppError(
                    ErrorCode.UNKNOWN_CHECKPOINT_STEP,
                    f"{body.repo_id!r} has no checkpoint at step {body.step}; it has "
                    + (", ".join(map(str, steps)) or "none")
                    + ".",
                    status_code=422,
                    details={"steps": list(steps)},
                )
    if not body.sync_assets:
        assets, assets_revision = current.assets_repo, current.assets_revision  # the ones served now, kept
    elif body.assets_repo_id is not None and body.assets_repo_id != body.repo_id:
        assets, assets_revision = body.assets_repo_id, DEFAULT_REVISION
        finetunes.list_checkpoints(assets, assets_revision, root=root)  # it must exist
    else:
        assets, assets_revision = body.repo_id, revision
    return ModelSelection(
        size=size,
        repo=body.repo_id if step is not None else None,
        revision=revision,
        step=step,
        assets_repo=assets,
        assets_revision=assets_revision,
    )


def _serves(entry: ServingCheckpoint, selection: ModelSelection) -> bool:
    """Whether a worker's entry serves ``selection``: its version, and its weights (a worker still loading the
    boot selection reports version 0 with the model's own weights)."""
    if entry.version != selection.version or entry.switching or entry.repo != selection.repo:
        return False
    if isinstance(selection.step, int) and entry.step != selection.step:
        return False
    return entry.error is None or entry.failed_version != selection.version


async def _wait_served(state: AppState, published: ModelSelection, previous: ModelSelection) -> bool:
    """Wait until every live magenta worker serves ``published``: True when they do, False when the wait
    (SYNC_WAIT_SECONDS) ended first. A selection a worker could not load is rolled back to ``previous``
    (published again as a newer version) and answered with 422 `checkpoint_invalid`."""
    deadline = time.monotonic() + state.settings.sync_wait_seconds
    while True:
        entries = await run_in_threadpool(serving_entries, state, published.size)
        failed = [
            entry.error
            for _, entry in entries
            if entry.failed_version == published.version
            and entry.error
            and entry.error_code != ErrorCode.CHECKPOINT_REPO_UNAVAILABLE  # tried again: waited for, not undone
        ]
        if failed:
            # Back to the selection before, unless another was made meanwhile (that one stays).
            await run_in_threadpool(
                partial(magenta_selection.publish, replacing=published.version), state.redis, previous
            )
            raise AppError(
                ErrorCode.CHECKPOINT_INVALID,
                f"A magenta worker could not load the checkpoint ({failed[0]}); the selection before is served again.",
                status_code=422,
            )
        if entries and all(_serves(entry, published) for _, entry in entries):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(PREWARM_POLL_SECONDS)


def _workers(state: AppState, size: str) -> list[WorkerServing]:
    by_host: dict[str, list[ServingCheckpoint]] = {}
    for hostname, entry in serving_entries(state, size):
        by_host.setdefault(hostname, []).append(entry)
    return [WorkerServing(hostname=host, serving=entries) for host, entries in sorted(by_host.items())]
