"""`POST /generate`: text-to-music requests (musicgen-api, S.Rocks and hosted-API field names)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from soundstage.schemas.common import AudioFormat

Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
SEED_MAX = 2**31 - 1


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
        "MAX_DURATION (default 300). The file is exactly this long.",
    )
    mood: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = Field(
        default=None,
        description="Optional mood, appended to the prompt as musicgen-api does (`<prompt>, <mood>`). "
        "At most 500 characters.",
    )
    model: str | None = Field(
        default=None,
        description="Model to use; one the MusicGen pool serves (MUSICGEN_MODEL). Default: that model. "
        "`facebook/musicgen-small` may be written `musicgen-small`.",
    )
    temperature: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Sampling temperature, 0-2. Default 1.0; 0 means greedy decoding."
    )
    top_k: int = Field(default=250, ge=0, le=2048, description="Top-k sampling, 0-2048. Default 250; 0 disables.")
    top_p: float = Field(default=0.0, ge=0.0, le=1.0, description="Nucleus sampling, 0-1. Default 0 (disabled).")
    guidance_scale: float = Field(
        default=3.0, ge=0.0, le=10.0, description="Classifier-free guidance (text adherence), 0-10. Default 3.0."
    )
    seed: int = Field(
        default=-1,
        ge=-1,
        le=SEED_MAX,
        description=f"Random seed, -1 to {SEED_MAX}. Default -1 picks one at random; the seed used is "
        "returned on the job. Same seed, prompt, parameters and model give the same audio.",
    )
    format: AudioFormat = Field(
        default=AudioFormat.WAV,
        description="Output format: `wav` (16-bit PCM, default), `flac`, `mp3` or `ogg` (Vorbis).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_prompt_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data and "text" in data:
            raise ValueError("give either `prompt` or `text` (they are the same field), not both")
        return data

    def folded_prompt(self) -> str:
        """The prompt the model sees, with the mood folded in as musicgen-api does."""
        return f"{self.prompt}, {self.mood}" if self.mood else self.prompt


class GenerateJobParams(GenerateRequest):
    """What a `generate` job row stores: the validated request with the seed resolved
    (never -1, so a redelivered job makes the same audio) and the prompt the model sees."""

    full_prompt: str = Field(description="Prompt with the mood folded in.")

    @classmethod
    def from_request(cls, request: GenerateRequest, seed: int) -> GenerateJobParams:
        return cls(**request.model_dump(exclude={"seed"}), seed=seed, full_prompt=request.folded_prompt())
