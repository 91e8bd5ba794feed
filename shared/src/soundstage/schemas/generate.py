"""`POST /generate`, `POST /generate/continue` and `POST /generate/melody`: text-to-music requests
(musicgen-api, S.Rocks and hosted-API field names) and what a `generate` job row stores."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from soundstage.schemas.common import AudioFormat

Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
SEED_MAX = 2**31 - 1
MAX_OUTPUTS = 4
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


# Fields that `POST /generate` and `POST /generate/soundtrack` share, defined once (each model gives the default).
Temperature = Annotated[
    float, Field(ge=0.0, le=2.0, description="Sampling temperature, 0-2. Default 1.0; 0 means greedy decoding.")
]
TopK = Annotated[int, Field(ge=0, le=2048, description="Top-k sampling, 0-2048. Default 250; 0 disables.")]
TopP = Annotated[float, Field(ge=0.0, le=1.0, description="Nucleus sampling, 0-1. Default 0 (disabled).")]
GuidanceScale = Annotated[
    float, Field(ge=0.0, le=10.0, description="Classifier-free guidance (text adherence), 0-10. Default 3.0.")
]
Seed = Annotated[
    int,
    Field(
        ge=-1,
        le=SEED_MAX,
        description=f"Random seed, -1 to {SEED_MAX}. Default -1 picks one at random; the seed used is returned on "
        "the job. The same seed, request and model give the same audio.",
    ),
]
OutputFormat = Annotated[
    AudioFormat, Field(description="Output format: `wav` (16-bit PCM, default), `flac`, `mp3` or `ogg` (Vorbis).")
]
OutputRate = Annotated[
    int | None,
    Field(
        ge=MIN_SAMPLE_RATE,
        le=MAX_SAMPLE_RATE,
        description=f"Sample rate of the output files in Hz, {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}. Default null: the "
        "model's native rate (32000 for MusicGen). Other rates are resampled with soxr (high quality).",
    ),
]
MelodyUrl = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)] | None,
    Field(
        description="With a melody model: an audio file whose melody (chroma) the music follows; fetched safely "
        "by the server. An http(s) URL to WAV, FLAC, OGG, MP3 or M4A/AAC, at most MAX_UPLOAD_MB and MAX_DURATION "
        "seconds; private and loopback addresses are refused, and a URL of this server's own `/files/<name>` is "
        "read from its storage. Needs a melody model (422 `model_not_melody` otherwise)."
    ),
]


class GenerateRequest(BaseModel):
    """A text-to-music request. Unknown fields are refused so that typos do not pass silently."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"prompt": "gentle acoustic guitar music for family memories", "duration": 30, "mood": "nostalgic"}
            ]
        },
    )

    prompt: Prompt = Field(
        validation_alias=AliasChoices("prompt", "text"),
        description="What the music should sound like. 1-2000 characters. Also accepted as `text` (S.Rocks).",
    )
    duration: float = Field(
        default=10.0,
        ge=1.0,
        description="Length of the result in seconds. Default 10, minimum 1, maximum the server's "
        "MAX_DURATION (default 300). The file is exactly this long. For `/generate/continue`, the length "
        "of the new audio generated after the prompt audio.",
    )
    mood: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = Field(
        default=None,
        description="Optional mood, appended to the prompt as musicgen-api does (`<prompt>, <mood>`). "
        "At most 500 characters.",
    )
    model: str | None = Field(
        default=None,
        description="Model to use: one of the models the MusicGen pool serves (MUSICGEN_MODELS, else "
        "MUSICGEN_MODEL). Default: the first of them. `facebook/musicgen-small` may be written "
        "`musicgen-small`; an unserved model is a 422 `unknown_model` listing the choices.",
    )
    temperature: Temperature = 1.0
    top_k: TopK = 250
    top_p: TopP = 0.0
    guidance_scale: GuidanceScale = 3.0
    seed: Seed = -1
    format: OutputFormat = AudioFormat.WAV
    num_outputs: int = Field(
        default=1,
        ge=1,
        le=MAX_OUTPUTS,
        description=f"Takes of the same request, 1-{MAX_OUTPUTS}. Default 1. Each take is its own file "
        "(`result_urls` in take order); takes differ from one another and the same seed gives the same takes.",
    )
    sample_rate: OutputRate = None
    normalize: bool = Field(
        default=False,
        description="Normalise each output's integrated loudness (ITU-R BS.1770) to `loudness_target`. "
        "Default false. The true peak is kept at or below -1 dBFS, so a loud target on very dynamic audio "
        "may come out quieter than asked.",
    )
    loudness_target: float = Field(
        default=-14.0,
        ge=-40.0,
        le=-5.0,
        description="Target integrated loudness in LUFS when `normalize` is true, -40 to -5. Default -14 "
        "(what streaming services play at).",
    )
    melody_audio_url: MelodyUrl = None

    @model_validator(mode="before")
    @classmethod
    def _one_prompt_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data and "text" in data:
            raise ValueError("give either `prompt` or `text` (they are the same field), not both")
        return data

    def folded_prompt(self) -> str:
        """The prompt the model sees, with the mood folded in as musicgen-api does."""
        return f"{self.prompt}, {self.mood}" if self.mood else self.prompt


class ContinueRequest(GenerateRequest):
    """A continuation request (`POST /generate/continue`): the fields of `POST /generate`
    plus `include_prompt`. The prompt audio itself is the upload, not a field."""

    duration: float = Field(
        default=10.0,
        ge=1.0,
        description="Seconds of NEW audio to generate after the prompt audio. Default 10, minimum 1, "
        "maximum the server's MAX_DURATION (default 300). With `include_prompt` the file is the prompt's "
        "length plus this; without, exactly this.",
    )
    include_prompt: bool = Field(
        default=True,
        description="Whether each output file starts with the prompt audio (then continues it) or holds "
        "only the new audio. Default true.",
    )


class GenerateJobParams(ContinueRequest):
    """What a `generate` job row stores, for `/generate` and `/generate/continue` alike: the
    validated request with the seed resolved (never -1, so a redelivered job makes the same
    audio), the prompt the model sees, and the stored prompt audio of a continuation.

    `audio_prompt` and `include_prompt` are not fields of `POST /generate` (its body is a
    :class:`GenerateRequest`, which forbids unknown fields); only the continuation route sets them.
    """

    full_prompt: str = Field(description="Prompt with the mood folded in.")
    audio_prompt: str | None = Field(
        default=None,
        description="Object name in storage of the uploaded prompt audio (`{job_id}_prompt.<ext>`, the "
        "original bytes); null for text-only jobs. The worker continues it.",
    )
    melody_audio: str | None = Field(
        default=None,
        description="Object name in storage of the melody audio (`{job_id}_melody.<ext>`, the original bytes, "
        "uploaded or fetched from `melody_audio_url`); null without melody conditioning. The worker "
        "conditions on its chroma.",
    )
    # Set by pipelines only (a soundtrack's scenes continue a stretch of an earlier step's output).
    audio_prompt_start: float | None = Field(
        default=None, ge=0, description="Seconds into `audio_prompt` where the prompt starts (null: its start)."
    )
    audio_prompt_end: float | None = Field(
        default=None, ge=0, description="Seconds into `audio_prompt` where the prompt ends (null: its end)."
    )
    melody_start: float = Field(
        default=0.0, ge=0, description="Seconds into the melody where this job's music starts (a soundtrack scene)."
    )

    @classmethod
    def from_request(
        cls,
        request: GenerateRequest,
        seed: int,
        *,
        audio_prompt: str | None = None,
        melody_audio: str | None = None,
    ) -> GenerateJobParams:
        """Job parameters from either request model; a plain `GenerateRequest` keeps `include_prompt`'s default.
        `melody_audio_url` is not kept: the job holds the fetched file instead, and a URL may carry
        credentials (a presigned query) that job listings should not show."""
        return cls(
            **request.model_dump(exclude={"seed", "melody_audio_url"}),
            seed=seed,
            full_prompt=request.folded_prompt(),
            audio_prompt=audio_prompt,
            melody_audio=melody_audio,
        )
