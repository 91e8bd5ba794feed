"""The selected Magenta checkpoint as the API's generating routes use it: the model a request gets when it
names none, the selection its job records (so that it runs on the weights selected when it was written),
and the check of the steering fields (`mean`, `centroid_weights`) against the finetune's assets."""

from __future__ import annotations

from soundstage import magenta_selection
from soundstage.errors import AppError, ErrorCode
from soundstage.pools import Queue
from soundstage.schemas.magenta_model import MAX_CENTROIDS, ModelSelection, ServingCheckpoint
from soundstage.workers import list_workers
from soundstage_api.routes.generate import resolve_model
from soundstage_api.state import AppState
from soundstage_api.uploads import form_error


def selected(state: AppState) -> ModelSelection:
    """The selection in force (Redis away: the boot default, as the workers would fall back to)."""
    try:
        return magenta_selection.current(state.redis, state.settings)
    except Exception:
        return magenta_selection.boot_selection(state.settings)


def model_and_checkpoint(state: AppState, requested: str | None) -> tuple[str, ModelSelection | None]:
    """The served model a request runs on (the selected size when it names none) and the selection its job
    records (None where the model is not the selected one: its own weights)."""
    served = state.settings.magenta.served_models
    selection = selected(state)
    if requested is None and selection.size in served:
        return selection.size, selection
    model = resolve_model(requested, served)
    return model, selection if selection.size == model else None


def serving_entries(state: AppState, size: str) -> list[tuple[str, ServingCheckpoint]]:
    """(hostname, what it serves for ``size``) of each live magenta worker that loaded ``size``."""
    try:
        workers = [w for w in list_workers(state.redis) if w.queue == Queue.MAGENTA.value]
    except Exception:
        return []
    return [(w.hostname, entry) for w in workers for entry in w.serving if entry.size == size]


def centroid_weights(text: str) -> list[float]:
    """`centroid_weights` as sent: comma-separated numbers of at least 0 (empty: none)."""
    if not text.strip():
        return []
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as error:
        raise form_error(
            "centroid_weights must be comma-separated numbers.", ["body", "centroid_weights"], "float_parsing"
        ) from error
    if len(values) > MAX_CENTROIDS or any(not (0.0 <= value <= 1000.0) for value in values):
        raise form_error(
            f"centroid_weights takes at most {MAX_CENTROIDS} numbers, each 0-1000.", ["body", "centroid_weights"]
        )
    return values


def check_steering(state: AppState, checkpoint: ModelSelection | None, mean: float, weights: list[float]) -> None:
    """422 `steering_unavailable` when `mean` or `centroid_weights` weigh assets the selected finetune lacks
    (as its workers report them; a worker still loading them is given the benefit of the doubt)."""
    weighed = [index for index, weight in enumerate(weights) if weight > 0]
    if mean <= 0 and not weighed:
        return
    if checkpoint is None or checkpoint.assets_repo is None:
        raise AppError(
            ErrorCode.STEERING_UNAVAILABLE,
            "mean and centroid_weights steer with a finetune's assets; none is selected "
            "(POST /magenta/model/select with a repo_id that has mean_style_embed.npy and cluster_centroids.npy).",
            status_code=422,
        )
    reported = [
        entry
        for _, entry in serving_entries(state, checkpoint.size)
        if entry.assets_repo == checkpoint.assets_repo and entry.version == checkpoint.version
    ]
    if not reported:
        return
    if mean > 0 and not any(entry.mean_loaded for entry in reported):
        raise AppError(
            ErrorCode.STEERING_UNAVAILABLE,
            f"{checkpoint.assets_repo!r} has no mean_style_embed.npy: mean cannot be used.",
            status_code=422,
        )
    count = max(entry.centroid_count for entry in reported)
    if weighed and weighed[-1] >= count:
        raise AppError(
            ErrorCode.STEERING_UNAVAILABLE,
            f"centroid_weights weighs centroid {weighed[-1] + 1}; {checkpoint.assets_repo!r} has {count}.",
            status_code=422,
        )
