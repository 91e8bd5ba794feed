"""`POST /embed/text` and `/embed/audio` (the Magenta RT API's contract): MusicCoCa's 768-float style
embedding of a text or an audio file, `{embedding, shape}`.

An `embed` job on the `magenta` queue computes it (MusicCoCa lives with the model in the Magenta
workers), and the route waits for it (SYNC_WAIT_SECONDS): a job not done in time is a 202 `{job_id,
status}`, whose `/jobs/{id}` `result` holds the embedding once it is done. The audio is decoded as every
upload is (413 `upload_too_large`, 422 `audio_undecodable`, `audio_empty`, `audio_too_long` past
MAX_STYLE_AUDIO_SECONDS); a missing or empty `text` is a 422.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from soundstage.audio import AudioInfo
from soundstage.pools import TaskName
from soundstage.schemas import Embedding, EmbedJobParams, ErrorBody, JobKind, StylePrompt
from soundstage.schemas.jobs import JobCreated
from soundstage.schemas.style import MAX_STYLE_AUDIO_SECONDS, EmbedOptions, TextEmbedForm
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.compat_common import WAIT_RESPONSES, finished_or_pending
from soundstage_api.routes.generate import ERRORS, resolve_model, submit, submit_with_audio
from soundstage_api.state import AppState, State
from soundstage_api.uploads import form_error, multipart_body_schema, parse_form_parameters, receive_fields_or_form

router = APIRouter(route_class=GuardedRoute, tags=["magenta"], dependencies=[ApiKey, MayGenerate])

AUDIO_PART = "audio_file"


_ANSWERS: dict[int | str, dict[str, object]] = {
    200: {"model": Embedding, "description": "The embedding: 768 floats, `shape` `[768]`"},
    **ERRORS,
    **WAIT_RESPONSES,
    413: {"model": ErrorBody, "description": "`audio_file` larger than MAX_UPLOAD_MB (`upload_too_large`)"},
}


def _text_schema() -> dict[str, object]:
    fields = TextEmbedForm.model_json_schema(ref_template="#/components/schemas/{model}")
    form = {"schema": {"type": "object", "properties": fields["properties"], "required": fields.get("required", [])}}
    content = {"multipart/form-data": form, "application/x-www-form-urlencoded": form}
    return {"requestBody": {"required": True, "content": content}}


@router.post(
    "/embed/text",
    response_model=Embedding,
    responses=_ANSWERS,
    summary="MusicCoCa style embedding of a text",
    openapi_extra=_text_schema(),
)
async def embed_text(request: Request, state: State) -> Response:
    """The 768-float MusicCoCa embedding of `text` (what the style routes blend)."""
    async with receive_fields_or_form(
        request, file_field=AUDIO_PART, max_file_bytes=state.settings.max_upload_bytes
    ) as form:
        if form.file_received:
            raise form_error("/embed/text takes no audio; send it to /embed/audio.", ["body", AUDIO_PART])
        options = parse_form_parameters(form.fields, TextEmbedForm, file_field=None, file_received=False)
    model = resolve_model(options.model, state.settings.magenta.served_models)
    params = EmbedJobParams(prompt=StylePrompt(text=options.text)).model_dump(mode="json")
    created = await run_in_threadpool(
        submit, state, kind=JobKind.EMBED, task=TaskName.MAGENTA_EMBED, model=model, params=params
    )
    return await _answer(state, created)


@router.post(
    "/embed/audio",
    response_model=Embedding,
    responses=_ANSWERS,
    summary="MusicCoCa style embedding of an audio file",
    openapi_extra=multipart_body_schema(
        EmbedOptions,
        file_field=AUDIO_PART,
        file_description="WAV, FLAC, OGG, MP3, M4A/AAC or WebM, at most MAX_UPLOAD_MB and "
        f"{MAX_STYLE_AUDIO_SECONDS:g} s (its 10-second clips are averaged).",
    ),
)
async def embed_audio(request: Request, state: State) -> Response:
    """The 768-float MusicCoCa embedding of `audio_file`, averaged over its 10-second clips."""
    async with receive_fields_or_form(
        request, file_field=AUDIO_PART, max_file_bytes=state.settings.max_upload_bytes
    ) as form:
        options = parse_form_parameters(
            form.fields, EmbedOptions, file_field=AUDIO_PART, file_received=form.file_received
        )
        model = resolve_model(options.model, state.settings.magenta.served_models)

        def params(name: str, _: AudioInfo) -> dict[str, object]:
            return EmbedJobParams(prompt=StylePrompt(audio=name)).model_dump(mode="json")

        created = await submit_with_audio(
            state,
            kind=JobKind.EMBED,
            task=TaskName.MAGENTA_EMBED,
            model=model,
            path=form.file_path,
            size=form.file_size,
            role="style",
            max_seconds=MAX_STYLE_AUDIO_SECONDS,
            params=params,
        )
    return await _answer(state, created)


async def _answer(state: AppState, created: JobCreated) -> Response:
    outcome = await finished_or_pending(state, created.job_id, state.settings.sync_wait_seconds, needs_files=False)
    if isinstance(outcome, Response):
        return outcome
    result = outcome.result or {}
    answer = Embedding(
        embedding=result["embedding"],
        shape=result["shape"],
        model=result["model"],
        random_weights=result["random_weights"],
    )
    return JSONResponse(answer.model_dump(mode="json"), headers={"X-Job-Id": outcome.id})
