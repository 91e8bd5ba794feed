"""`POST /generate/soundtrack`: a multi-scene soundtrack (musicgen-api's contract).

Checked completely before any job exists: the fields (422 `validation_error` naming the field: no
scenes, a scene under 5 s, a missing `base_prompt`, a crossfade out of 0.5-5 s), then the server's limits
(SOUNDTRACK_MAX_SCENES, SOUNDTRACK_MAX_SCENE_SECONDS, SOUNDTRACK_MAX_TOTAL_SECONDS; 422 naming the
field), the MusicGen model (422 `unknown_model`), `stems` against the Demucs model (422
`stems_not_supported`), and with `melody_audio_url` a melody model and the fetch (as `/generate` checks
them). Then one `soundtrack` job is written and sent to the pipeline pool, which runs its steps on the
pools that own each model (scenes on MusicGen, separations on Demucs, mixing on its own CPUs).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from soundstage.errors import AppError, ErrorCode
from soundstage.pool_settings import SoundtrackSettings
from soundstage.pools import Queue, TaskName
from soundstage.schemas import ErrorBody, JobCreated, JobKind, SoundtrackJobParams, SoundtrackRequest
from soundstage.schemas.separate import STEMS_BY_MODE, SeparateOptions
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.generate import ERRORS, resolve_model, resolve_seed, submit_with_melody
from soundstage_api.routes.separate import validate_separation
from soundstage_api.serving import require_servable
from soundstage_api.state import AppState, State

router = APIRouter(route_class=GuardedRoute, tags=["generate"], dependencies=[ApiKey, MayGenerate])

_SOUNDTRACK_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    413: {"model": ErrorBody, "description": "`melody_audio_url` larger than MAX_UPLOAD_MB (code `url_too_large`)"},
    422: {
        "model": ErrorBody,
        "description": "Invalid field or a limit passed (`validation_error`, naming the field), `unknown_model`, "
        "`stems_not_supported`, and for `melody_audio_url` the codes of `POST /generate`",
    },
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}


@router.post(
    "/generate/soundtrack",
    response_model=JobCreated,
    responses=_SOUNDTRACK_ERRORS,
    summary="Generate a multi-scene soundtrack",
)
@router.post("/generate/soundtrack/", response_model=JobCreated, include_in_schema=False)
async def generate_soundtrack(body: SoundtrackRequest, state: State) -> JobCreated:
    """Queue a soundtrack: the scenes end to end (each continuing the one before), joined by equal-power,
    beat-aligned crossfades of exactly `crossfade_duration`, tempo-matched, stem-aware and checked by the
    quality loop, normalised to `loudness_target`. Poll `GET /jobs/{job_id}`: `progress_detail` says which
    scene and stage; the result is `{job_id}_soundtrack.{format}` (and its stems with `stems`)."""
    settings = state.settings
    _check_limits(body, settings.soundtrack)
    model = resolve_model(body.model, settings.musicgen.served_models)
    demucs_model = _demucs_model(body, state)
    # The pipeline pool loads no model: its steps need the MusicGen (and Demucs) pools to serve theirs.
    require_servable(state.capabilities, Queue.MUSICGEN, model)
    if demucs_model is not None:
        require_servable(state.capabilities, Queue.DEMUCS, demucs_model)
    return await submit_with_melody(
        state,
        kind=JobKind.SOUNDTRACK,
        task=TaskName.PIPELINE_ADVANCE,
        model=model,
        melody_audio_url=body.melody_audio_url,
        params=lambda melody: _job_params(body, state, model=model, demucs_model=demucs_model, melody=melody),
    )


def _check_limits(body: SoundtrackRequest, limits: SoundtrackSettings) -> None:
    if len(body.scenes) > limits.max_scenes:
        raise _limit(["body", "scenes"], f"at most {limits.max_scenes} scenes", "too_long")
    for index, scene in enumerate(body.scenes):
        if scene.duration < limits.min_scene_seconds:
            raise _limit(
                ["body", "scenes", index, "duration"],
                f"at least {limits.min_scene_seconds:g} seconds",
                "greater_than_equal",
            )
        if scene.duration > limits.max_scene_seconds:
            raise _limit(
                ["body", "scenes", index, "duration"],
                f"at most {limits.max_scene_seconds:g} seconds",
                "less_than_equal",
            )
    if body.total_seconds > limits.max_total_seconds:
        raise _limit(
            ["body", "scenes"],
            f"at most {limits.max_total_seconds:g} seconds in all (the sum of the durations)",
            "too_long",
        )


def _limit(loc: list[str | int], what: str, kind: str) -> AppError:
    where = ".".join(str(part) for part in loc[1:])
    return AppError(
        ErrorCode.VALIDATION_ERROR,
        f"Invalid request: {where} must be {what} on this server.",
        status_code=422,
        details=[{"loc": loc, "msg": f"Must be {what}", "type": kind}],
    )


def _demucs_model(body: SoundtrackRequest, state: AppState) -> str | None:
    """The Demucs model of the stem-aware crossfades and of `stems`: the pool's default, or for 6 stems the
    first served model a worker reported with those sources; checked like a `POST /separate` of the same
    stems."""
    if body.stems is None and not _stem_aware(body, state):
        return None
    stems = body.stems or 4
    served = state.settings.demucs.served_models
    reported = state.capabilities.reported(Queue.DEMUCS, served)
    able = [
        name
        for name, abilities in reported.items()
        if set(STEMS_BY_MODE[stems]) - {"accompaniment"} <= set(abilities.sources)
    ]
    return validate_separation(SeparateOptions(stems=stems, model=able[0] if able else None), state)


def _stem_aware(body: SoundtrackRequest, state: AppState) -> bool:
    requested = body.use_stem_aware_crossfade
    return state.settings.soundtrack.stem_aware if requested is None else requested


def _job_params(
    body: SoundtrackRequest, state: AppState, *, model: str, demucs_model: str | None, melody: str | None = None
) -> dict[str, Any]:
    """What the job row stores; the seed is resolved here, so a retried pipeline makes the same soundtrack."""
    limits = state.settings.soundtrack
    seed = resolve_seed(body.seed)
    quality_loop = limits.quality_loop if body.use_quality_loop is None else body.use_quality_loop
    params = SoundtrackJobParams.model_validate(
        {
            **body.model_dump(exclude={"melody_audio_url"}),
            "seed": seed,
            "model": model,
            "use_stem_aware_crossfade": _stem_aware(body, state),
            "use_quality_loop": quality_loop,
            "max_regen_attempts": limits.max_regen_attempts,
            "context_seconds": limits.context_seconds,
            "tempo_threshold": limits.tempo_threshold,
            "max_tempo_stretch": limits.max_tempo_stretch,
            "demucs_model": demucs_model,
            "melody_audio": melody,
        }
    )
    return params.model_dump(mode="json", exclude={"melody_audio_url"})
