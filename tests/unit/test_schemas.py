"""`POST /generate` request validation, the stored job parameters and the job status enum."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from soundstage.db import new_job_id
from soundstage.schemas import (
    TERMINAL_STATUSES,
    AudioFormat,
    ContinueRequest,
    GenerateJobParams,
    GenerateRequest,
    JobStatus,
)
from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.tasks import JobTaskPayload


def _request(**fields: Any) -> GenerateRequest:
    """Validate a request body the way the API does (from a JSON-like dict)."""
    return GenerateRequest.model_validate({"prompt": "lofi beats", **fields})


def _error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {str(error["loc"][0]) for error in exc.value.errors()}


# --------------------------------------------------------------------- prompt


def test_prompt_and_its_text_alias_are_both_accepted() -> None:
    assert GenerateRequest.model_validate({"prompt": "calm piano"}).prompt == "calm piano"
    assert GenerateRequest.model_validate({"text": "calm piano"}).prompt == "calm piano"


def test_prompt_and_text_together_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest.model_validate({"prompt": "calm piano", "text": "loud drums"})
    assert [error["type"] for error in info.value.errors()] == ["value_error"]
    assert "either `prompt` or `text`" in str(info.value)


def test_prompt_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest.model_validate({"duration": 5})
    assert _error_fields(info) == {"prompt"}


def test_prompt_surrounding_whitespace_is_stripped() -> None:
    assert _request(prompt="  calm piano \n").prompt == "calm piano"


@pytest.mark.parametrize("prompt", ["", " ", "   \t\n  "])
def test_empty_or_whitespace_only_prompt_is_refused(prompt: str) -> None:
    with pytest.raises(ValidationError) as info:
        _request(prompt=prompt)
    assert _error_fields(info) == {"prompt"}


def test_prompt_of_2000_characters_is_accepted() -> None:
    assert len(_request(prompt="a" * 2000).prompt) == 2000


def test_prompt_of_2001_characters_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        _request(prompt="a" * 2001)
    assert _error_fields(info) == {"prompt"}


def test_prompt_length_is_counted_after_stripping() -> None:
    assert len(_request(prompt=f"  {'a' * 2000}  ").prompt) == 2000


# ------------------------------------------------------------------- duration


def test_duration_defaults_to_ten_seconds() -> None:
    assert _request().duration == 10.0


def test_duration_of_one_second_is_accepted() -> None:
    assert _request(duration=1).duration == 1.0


def test_duration_below_one_second_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        _request(duration=0.99)
    assert _error_fields(info) == {"duration"}


# ----------------------------------------------------------------------- seed


@pytest.mark.parametrize("seed", [-1, 0, SEED_MAX])
def test_seed_within_bounds_is_accepted(seed: int) -> None:
    assert _request(seed=seed).seed == seed


@pytest.mark.parametrize("seed", [-2, SEED_MAX + 1])
def test_seed_outside_bounds_is_refused(seed: int) -> None:
    with pytest.raises(ValidationError) as info:
        _request(seed=seed)
    assert _error_fields(info) == {"seed"}


def test_seed_bounds_are_those_of_a_signed_32_bit_int() -> None:
    assert SEED_MAX == 2**31 - 1
    assert _request().seed == -1


# --------------------------------------------------------- sampling parameters

SAMPLING_BOUNDS = [
    ("temperature", 0.0, 2.0, -0.01, 2.01),
    ("top_k", 0, 2048, -1, 2049),
    ("top_p", 0.0, 1.0, -0.01, 1.01),
    ("guidance_scale", 0.0, 10.0, -0.01, 10.01),
]


@pytest.mark.parametrize(("name", "low", "high", "below", "above"), SAMPLING_BOUNDS)
def test_sampling_parameter_bounds_are_inclusive(
    name: str, low: float, high: float, below: float, above: float
) -> None:
    assert getattr(_request(**{name: low}), name) == low
    assert getattr(_request(**{name: high}), name) == high


@pytest.mark.parametrize(("name", "low", "high", "below", "above"), SAMPLING_BOUNDS)
def test_sampling_parameter_outside_bounds_is_refused(
    name: str, low: float, high: float, below: float, above: float
) -> None:
    for value in (below, above):
        with pytest.raises(ValidationError) as info:
            _request(**{name: value})
        assert _error_fields(info) == {name}


def test_sampling_defaults() -> None:
    request = _request()
    assert (request.temperature, request.top_k, request.top_p, request.guidance_scale) == (1.0, 250, 0.0, 3.0)


# --------------------------------------------------------- unknown fields, format


@pytest.mark.parametrize("field", ["promt", "durration", "steps"])
def test_unknown_field_is_refused(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        _request(**{field: 1})
    errors = info.value.errors()
    assert [(error["type"], error["loc"]) for error in errors] == [("extra_forbidden", (field,))]


@pytest.mark.parametrize("value", ["wav", "flac", "mp3", "ogg"])
def test_every_format_value_is_accepted(value: str) -> None:
    assert _request(format=value).format is AudioFormat(value)


def test_format_defaults_to_wav_and_the_enum_has_exactly_four_values() -> None:
    assert _request().format is AudioFormat.WAV
    assert {member.value for member in AudioFormat} == {"wav", "flac", "mp3", "ogg"}


@pytest.mark.parametrize("value", ["aac", "WAVE", ""])
def test_unsupported_format_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        _request(format=value)
    assert _error_fields(info) == {"format"}


# ------------------------------------------------------------- mood and prompt


def test_folded_prompt_appends_the_mood() -> None:
    assert _request(prompt="acoustic guitar", mood="nostalgic").folded_prompt() == "acoustic guitar, nostalgic"


def test_folded_prompt_without_mood_is_the_prompt() -> None:
    assert _request(prompt="acoustic guitar").folded_prompt() == "acoustic guitar"


@pytest.mark.parametrize("mood", ["", "   "])
def test_folded_prompt_ignores_an_empty_mood(mood: str) -> None:
    assert _request(prompt="acoustic guitar", mood=mood).folded_prompt() == "acoustic guitar"


def test_mood_longer_than_500_characters_is_refused() -> None:
    assert _request(mood="m" * 500).mood == "m" * 500
    with pytest.raises(ValidationError) as info:
        _request(mood="m" * 501)
    assert _error_fields(info) == {"mood"}


# ------------------------------------------------------------ stored job params


def test_job_params_resolve_the_seed_and_fold_the_mood() -> None:
    request = GenerateRequest.model_validate(
        {"text": "acoustic guitar", "mood": "nostalgic", "duration": 30, "top_k": 50, "format": "flac"}
    )
    params = GenerateJobParams.from_request(request, seed=1234)

    assert params.seed == 1234
    assert params.full_prompt == "acoustic guitar, nostalgic"
    assert params.prompt == "acoustic guitar"
    assert params.mood == "nostalgic"
    # Every other request field is carried over unchanged; a text-only job has no prompt audio.
    job_only = {"seed", "full_prompt", "audio_prompt", "include_prompt", "melody_audio"}
    job_only |= {"audio_prompt_start", "audio_prompt_end", "melody_start"}  # set by pipelines only
    assert params.model_dump(exclude=job_only) == request.model_dump(exclude={"seed"})
    assert params.audio_prompt is None and params.include_prompt is True


def test_job_params_keep_an_explicit_seed_given_to_them() -> None:
    request = _request(seed=77)
    assert GenerateJobParams.from_request(request, seed=77).seed == 77


def test_job_params_survive_a_json_round_trip() -> None:
    """What the job row stores must validate again when a worker reads it."""
    params = GenerateJobParams.from_request(_request(mood="dark", format="ogg"), seed=SEED_MAX)
    assert GenerateJobParams.model_validate_json(params.model_dump_json()) == params


def test_job_params_without_full_prompt_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        GenerateJobParams.model_validate({"prompt": "x", "seed": 1})
    assert _error_fields(info) == {"full_prompt"}


# ------------------------------------------------- takes, rate and loudness


def test_output_options_default_to_one_native_unnormalised_take() -> None:
    request = _request()
    assert request.num_outputs == 1
    assert request.sample_rate is None
    assert request.normalize is False
    assert request.loudness_target == -14.0


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("num_outputs", [1, 4], [0, 5, 2.5, "two"]),
        ("sample_rate", [8000, 16000, 44100, 48000, None], [7999, 48001, "x", 0]),
        ("loudness_target", [-40, -23.5, -5], [-40.1, -4.9, "loud"]),
        ("normalize", [True, False], ["maybe", 2]),
    ],
)
def test_output_option_limits(field: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert getattr(_request(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValidationError) as info:
            _request(**{field: value})
        assert _error_fields(info) == {field}, value


@pytest.mark.parametrize("field", ["audio_prompt", "include_prompt", "full_prompt", "melody_audio"])
def test_generate_requests_cannot_set_job_only_fields(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        _request(**{field: "x.wav" if field != "include_prompt" else False})
    assert _error_fields(info) == {field}


def test_continue_requests_add_include_prompt_only() -> None:
    assert ContinueRequest.model_validate({"prompt": "x"}).include_prompt is True
    assert ContinueRequest.model_validate({"prompt": "x", "include_prompt": False}).include_prompt is False
    with pytest.raises(ValidationError) as info:
        ContinueRequest.model_validate({"prompt": "x", "audio_prompt": "y.wav"})
    assert _error_fields(info) == {"audio_prompt"}
    description = ContinueRequest.model_fields["duration"].description or ""
    assert "NEW audio" in description


def test_job_params_from_a_continuation_carry_the_prompt_audio() -> None:
    request = ContinueRequest.model_validate(
        {"prompt": "jazz", "include_prompt": False, "num_outputs": 3, "sample_rate": 44100, "normalize": True}
    )
    params = GenerateJobParams.from_request(request, seed=5, audio_prompt="abc_prompt.m4a")
    assert params.audio_prompt == "abc_prompt.m4a" and params.include_prompt is False
    assert (params.num_outputs, params.sample_rate, params.normalize) == (3, 44100, True)
    assert GenerateJobParams.model_validate_json(params.model_dump_json()) == params


def test_job_params_stored_before_these_fields_existed_still_validate() -> None:
    old_row = {"prompt": "x", "duration": 10.0, "seed": 3, "full_prompt": "x", "format": "wav"}
    params = GenerateJobParams.model_validate(old_row)
    assert params.num_outputs == 1 and params.audio_prompt is None and params.include_prompt is True
    assert params.melody_audio is None


def test_melody_audio_url_is_a_bounded_string() -> None:
    assert _request().melody_audio_url is None
    assert _request(melody_audio_url="  https://example.com/a.wav ").melody_audio_url == "https://example.com/a.wav"
    for bad in ("", "   ", "https://example.com/" + "a" * 2048, 42):
        with pytest.raises(ValidationError) as info:
            _request(melody_audio_url=bad)
        assert _error_fields(info) == {"melody_audio_url"}, bad


def test_job_params_keep_the_melody_object_and_drop_its_url() -> None:
    """The job names the stored melody; the URL (which may be presigned) is not kept."""
    request = _request(melody_audio_url="https://example.com/a.wav?X-Amz-Signature=secret")
    params = GenerateJobParams.from_request(request, seed=1, melody_audio="abc_melody.wav")
    assert params.melody_audio == "abc_melody.wav" and params.melody_audio_url is None
    assert "secret" not in params.model_dump_json()
    assert GenerateJobParams.model_validate_json(params.model_dump_json()) == params


# ---------------------------------------------------------------- task payloads


def test_task_payload_is_versioned_and_strict() -> None:
    payload = JobTaskPayload(job_id="3f2c6a1e-0000-4000-8000-000000000000")
    assert payload.model_dump() == {"version": 1, "job_id": "3f2c6a1e-0000-4000-8000-000000000000"}
    assert JobTaskPayload.from_task_arguments((), {"payload": payload.model_dump()}) == payload
    # A message from before payloads existed: the bare job id.
    assert JobTaskPayload.from_task_arguments(("abc",), {}).job_id == "abc"
    for bad in ({"version": 2, "job_id": "abc"}, {"job_id": "abc", "extra": 1}, {"job_id": ""}, {}):
        with pytest.raises(ValidationError):
            JobTaskPayload.from_task_arguments((), {"payload": bad})


def test_job_ids_are_canonical_uuid_strings() -> None:
    job_id = new_job_id()
    assert len(job_id) == 36 and str(uuid.UUID(job_id)) == job_id


# ------------------------------------------------------------------- job status


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (JobStatus.QUEUED, False),
        (JobStatus.PROCESSING, False),
        (JobStatus.COMPLETED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_job_status_is_terminal(status: JobStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal


def test_terminal_statuses_cover_exactly_the_terminal_members() -> None:
    assert {status for status in JobStatus if status.is_terminal} == TERMINAL_STATUSES
    assert len(JobStatus) == 5


def test_job_status_strings_are_musicgen_apis() -> None:
    assert [status.value for status in JobStatus] == ["queued", "processing", "completed", "failed", "cancelled"]
