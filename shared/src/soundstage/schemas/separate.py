"""`POST /separate`: stem separation requests (musicgen-api's contract) and what a `separate` job row stores."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from soundstage.schemas.common import AudioFormat
from soundstage.schemas.generate import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

StemMode = Literal[2, 4, 6]

# The stems each mode writes, in `result_urls` order (`{job_id}_{stem}.{ext}`).
STEMS_BY_MODE: dict[int, tuple[str, ...]] = {
    4: ("drums", "bass", "other", "vocals"),
    2: ("vocals", "accompaniment"),
    6: ("drums", "bass", "other", "vocals", "guitar", "piano"),
}
MAX_SHIFTS = 20
MAX_SEGMENT_SECONDS = 60.0


class SeparateOptions(BaseModel):
    """The options of a separation, sent as form fields (with a `file` upload) or in the JSON body."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None,
        description="Demucs model: one the Demucs pool serves (DEMUCS_MODELS, else DEMUCS_MODEL; `htdemucs`, "
        "`htdemucs_ft`, `htdemucs_6s`, `hdemucs_mmi`, `mdx_extra`, a local path, `random:tiny`). Default: the "
        "first of them; an unserved model is a 422 `unknown_model` listing the choices.",
    )
    stems: StemMode = Field(
        default=4,
        description="`4` (default): drums, bass, other, vocals. `2`: vocals and accompaniment (everything "
        "else: the input minus the vocals, so the two sum back to the input). `6`: drums, bass, other, vocals, "
        "guitar, piano; needs a six-source model such as `htdemucs_6s` (422 `stems_not_supported` otherwise). "
        "A six-source model asked for 4 stems folds guitar and piano into `other`.",
    )
    shifts: int = Field(
        default=1,
        ge=0,
        le=MAX_SHIFTS,
        description=f"Random time shifts averaged (demucs `--shifts`), 0-{MAX_SHIFTS}. Default 1. Each shift is "
        "another full pass: better quality, proportionally slower. The shifts are drawn from the job id, so a "
        "retried job gives the same stems.",
    )
    overlap: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="Overlap between consecutive segments, 0 to below 1 (demucs `--overlap`). Default 0.25.",
    )
    segment: float | None = Field(
        default=None,
        ge=1.0,
        le=MAX_SEGMENT_SECONDS,
        description="Segment length in seconds (demucs `--segment`). Default null: the model's own (7.8 s for "
        "`htdemucs` models, which cannot take longer ones: 422, as the worker reports its model's limit). "
        "Shorter segments use less memory.",
    )
    format: AudioFormat = Field(
        default=AudioFormat.WAV,
        description="Format of the stem files: `wav` (16-bit PCM, default), `flac`, `mp3` or `ogg` (Vorbis).",
    )
    sample_rate: int | None = Field(
        default=None,
        ge=MIN_SAMPLE_RATE,
        le=MAX_SAMPLE_RATE,
        description=f"Sample rate of the stem files in Hz, {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}. Default null: "
        "the input's rate. The model itself runs at its own rate (44100 Hz); conversions use soxr.",
    )

    @field_validator("stems", mode="before")
    @classmethod
    def _stems_from_text(cls, value: object) -> object:
        # Form fields arrive as text ("4"); JSON clients may send either.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value


AudioUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


class SeparateUrlRequest(SeparateOptions):
    """The JSON form of `POST /separate`: the audio is fetched from `audio_url`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"audio_url": "https://example.com/song.mp3", "stems": 4}]},
    )

    audio_url: AudioUrl = Field(
        description="An http(s) URL of the audio to separate (WAV, FLAC, OGG, MP3 or M4A/AAC), fetched safely "
        "by the server: public addresses only, at most MAX_UPLOAD_MB and MAX_SEPARATE_SECONDS, within "
        "FETCH_TIMEOUT_SECONDS. A URL (or path) of this server's own `/files/<name>` is read from its storage."
    )


class SeparateJobParams(SeparateOptions):
    """What a `separate` job row stores: the options (model resolved) and the stored input."""

    input_audio: str = Field(
        description="Object name in storage of the input (`{job_id}_input.<ext>`, the original bytes, uploaded "
        "or fetched from `audio_url`)."
    )
    input_sample_rate: int = Field(description="Sample rate of the input as decoded by the API, in Hz.")
    input_channels: int = Field(description="Channels of the input as decoded by the API.")
    input_seconds: float = Field(description="Length of the input in seconds.")
    output_prefix: str | None = Field(
        default=None,
        description="Names the stem files `{output_prefix}_{stem}.{ext}` instead of `{job_id}_{stem}.{ext}`: a "
        "soundtrack's stems are named after the soundtrack's job. Set by pipelines only.",
    )

    def stem_names(self) -> tuple[str, ...]:
        return STEMS_BY_MODE[self.stems]
