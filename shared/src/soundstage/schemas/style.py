"""`POST /generate/text`, `/generate/audio` and `/generate/blend` (the Magenta RT API's contract): music in
the style of text and audio prompts, and what a `style` job row stores.

The three routes make the same job: a weighted list of style prompts (texts, stored audio files), whose
MusicCoCa embeddings the worker averages with the weights normalised to sum to 1, then generates
``duration`` seconds from. The field names, defaults and limits are the Magenta RT API's; the options
it does not have (`temperature`, `top_k`, `guidance_weight`, `seed`, `loudness_target`, `model`) are
optional and default to Magenta RealTime's own sampling settings.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from soundstage.schemas.common import AudioFormat
from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.magenta_model import ModelSelection

MIN_STYLE_SECONDS = 2.0
MAX_STYLE_SECONDS = 120.0
"""The Magenta RT API's limits (MAX_DURATION): 2 to 120 seconds per generation."""
DEFAULT_STYLE_SECONDS = 10.0
MAX_STYLE_PROMPTS = 16
"""Most prompts (texts and audio files together) one blend averages."""
MAX_PROMPT_WEIGHT = 1000.0
MAX_STYLE_AUDIO_SECONDS = 600.0
"""Longest audio prompt accepted, in seconds: MusicCoCa averages its 10-second clips, all of them."""
DEFAULT_LOUDNESS_LUFS = -14.0

StyleText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class StyleOptions(BaseModel):
    """The options every style generation takes (form fields of the three routes)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    duration: float = Field(
        default=DEFAULT_STYLE_SECONDS,
        ge=MIN_STYLE_SECONDS,
        le=MAX_STYLE_SECONDS,
        description=f"Seconds of music, {MIN_STYLE_SECONDS:g}-{MAX_STYLE_SECONDS:g}. Default "
        f"{DEFAULT_STYLE_SECONDS:g}. The audio is exactly this long (48 kHz: Magenta RT's rate).",
    )
    temperature: float = Field(
        default=1.3,
        gt=0.0,
        le=4.0,
        description="Sampling temperature, above 0 and at most 4. Default 1.3 (Magenta RT's).",
    )
    top_k: int = Field(
        default=40,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("top_k", "topk"),
        description="Top-k sampling, 1-1024. Default 40 (Magenta RT's).",
    )
    guidance_weight: float = Field(
        default=3.0,
        ge=0.0,
        le=10.0,
        validation_alias=AliasChoices("guidance_weight", "cfg_musiccoca"),
        description="Classifier-free guidance on the style (`cfg_musiccoca`), 0-10. Default 3.0 (Magenta RT's); "
        "higher follows the prompts more closely.",
    )
    seed: int = Field(
        default=-1,
        ge=-1,
        le=SEED_MAX,
        description=f"Random seed, -1 to {SEED_MAX}. Default -1 picks one at random; the seed used is on the job. "
        "The same seed, prompts and model give the same audio.",
    )
    format: AudioFormat = Field(
        default=AudioFormat.MP3,
        description="Output format: `mp3` (default, as the Magenta RT API answers), `wav` (16-bit PCM), `flac` "
        "or `ogg` (Vorbis).",
    )
    loudness_target: float | None = Field(
        default=DEFAULT_LOUDNESS_LUFS,
        ge=-40.0,
        le=-5.0,
        description="Integrated loudness of the output in LUFS (ITU-R BS.1770), -40 to -5, true peak at most "
        "-1 dBFS. Default -14. Magenta RT writes its audio at a fixed -6 dB, so this is on unless turned off "
        "with `none` (the audio as the model wrote it).",
    )
    model: str | None = Field(
        default=None,
        description="Magenta RT model: one the Magenta pool serves (MAGENTA_MODELS, else MAGENTA_MODEL: "
        "`mrt2_small`, `mrt2_base`, `random:tiny`). Default: the first of them.",
    )

    @field_validator("loudness_target", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("none", "off", "null"):
            return None
        return value


class StylePrompt(BaseModel):
    """One prompt of a style: a text or a stored audio file, and its weight in the blend."""

    model_config = ConfigDict(extra="forbid")

    text: StyleText | None = None
    audio: str | None = Field(default=None, description="Stored name of an uploaded audio prompt.")
    weight: float = Field(default=1.0, gt=0.0, le=MAX_PROMPT_WEIGHT)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.text is None) == (self.audio is None):
            raise ValueError("a style prompt is either a text or an audio file")
        return self


class StyleJobParams(BaseModel):
    """What a `style` job row stores (its model is the row's own): the prompts, and the options with the seed
    resolved (never -1, so that a redelivered job makes the same audio)."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[StylePrompt] = Field(min_length=1, max_length=MAX_STYLE_PROMPTS)
    duration: float = Field(ge=MIN_STYLE_SECONDS, le=MAX_STYLE_SECONDS)
    temperature: float
    top_k: int
    guidance_weight: float
    seed: int = Field(ge=0, le=SEED_MAX)
    format: AudioFormat
    loudness_target: float | None
    checkpoint: ModelSelection | None = Field(
        default=None, description="The selected checkpoint when the job was written (None: the model's own)."
    )

    def normalised_weights(self) -> list[float]:
        total = sum(prompt.weight for prompt in self.prompts)
        return [prompt.weight / total for prompt in self.prompts]


class EmbedOptions(BaseModel):
    """`POST /embed/audio`'s form fields (beside `audio_file`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Magenta RT model whose MusicCoCa embeds. Default: the first.")


class TextEmbedForm(EmbedOptions):
    """`POST /embed/text`'s form fields."""

    text: StyleText = Field(description="The text to embed.")


class EmbedJobParams(BaseModel):
    """What an `embed` job row stores: one prompt (a text or a stored audio file) to embed."""

    model_config = ConfigDict(extra="forbid")

    prompt: StylePrompt


class Embedding(BaseModel):
    """`POST /embed/text` and `/embed/audio` (the Magenta RT API's answer): MusicCoCa's style embedding."""

    embedding: list[float] = Field(description="768 floats: MusicCoCa's style embedding (pooled over 10 s clips).")
    shape: list[int] = Field(description="`[768]`.")
    model: str = Field(description="The Magenta RT model whose MusicCoCa made it.")
    random_weights: bool = Field(description="True for `random:*` models: a mock embedder, for tests only.")
