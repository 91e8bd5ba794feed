"""`POST /magenta/generate` and `/magenta/generate_style` (the MagentaRT Research API's contract): bars of
music at a tempo, continuing an input loop or from style prompts alone, and what a `loop` job row stores.

The length is bar-exact: ``bars * beats_per_bar * 60 / bpm`` seconds, rounded to whole samples at the
target rate. Its metadata counts (`bpm`, `bars`, `beats_per_bar`, `sample_rate`, `channels`,
`total_samples`, `topk`, `seed`) are JSON integers: the research API's iOS client decodes them as Int.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.magenta_model import MAX_CENTROIDS, ModelSelection
from soundstage.schemas.style import MAX_STYLE_PROMPTS, MAX_STYLE_SECONDS, StylePrompt

MIN_BPM = 20.0
MAX_BPM = 300.0
MAX_BARS = 32
MAX_BEATS_PER_BAR = 16
MAX_INTRO_BARS = 8
MAX_LOOP_SECONDS = 60.0
"""Longest input loop accepted, in seconds."""
PRIME_SECONDS = 10.0
"""The end of the loop the model is primed with (Magenta RT 2 attends to about 20 s at most)."""
TARGET_SAMPLE_RATES = (44_100, 48_000)
MAX_LOOP_OUTPUT_SECONDS = MAX_STYLE_SECONDS
"""Longest generation (intro bars included), as for the style routes."""

StyleList = Annotated[str, StringConstraints(max_length=4000)]
RequestId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[\w.:-]+$")
]


class LoudnessMode(StrEnum):
    AUTO = "auto"
    """Match the loop's integrated loudness (LUFS); -14 LUFS without a loop."""
    LUFS = "lufs"
    """Integrated loudness of -14 LUFS, whatever the loop's."""
    RMS = "rms"
    """Match the loop's RMS level; -14 LUFS without a loop."""
    NONE = "none"
    """The audio as the model wrote it (Magenta RT writes at a fixed -6 dB)."""


class TempoStyleOptions(BaseModel):
    """What every tempo-locked Magenta route takes (`/magenta/generate*`, `/magenta/jam/start`): tempo, styles,
    sampling knobs and steering, in the research API's names and defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bpm: float = Field(ge=MIN_BPM, le=MAX_BPM, description=f"Tempo, {MIN_BPM:g}-{MAX_BPM:g} beats a minute.")
    beats_per_bar: int = Field(default=4, ge=1, le=MAX_BEATS_PER_BAR, description="Beats in a bar. Default 4.")
    styles: StyleList = Field(default="", description='Comma-separated text styles ("acid house, techno").')
    style_weights: str = Field(
        default="", description="Comma-separated positive weights, one per style (default: equal)."
    )
    guidance_weight: float = Field(
        default=5.0, ge=0.0, le=10.0, description="Classifier-free guidance on the style, 0-10. Default 5.0."
    )
    temperature: float = Field(
        default=1.1, gt=0.0, le=4.0, description="Sampling temperature, above 0 and at most 4. Default 1.1."
    )
    topk: int = Field(
        default=40,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("topk", "top_k"),
        description="Top-k sampling, 1-1024. Default 40.",
    )
    target_sample_rate: int | None = Field(
        default=None,
        description="Sample rate of the answer: 44100 or 48000 (Magenta RT's own). Default: the loop's rate "
        "when it is one of them, else 48000.",
    )
    seed: int = Field(default=-1, ge=-1, le=SEED_MAX, description="Random seed; -1 (default) picks one.")
    model: str | None = Field(
        default=None, description="Magenta RT model the pool serves. Default: the selected one (`/magenta/model`)."
    )
    mean: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description="Weight of the selected finetune's mean style (`mean_style_embed.npy`) among the styles. "
        "Default 0.",
    )
    centroid_weights: str = Field(
        default="",
        max_length=2000,
        description="Comma-separated weights of the selected finetune's style centroids (`cluster_centroids.npy`), "
        "in its order; fewer than it has leave the rest at 0. Default: none.",
    )

    @field_validator("target_sample_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        if value in ("", None):
            return None
        return value

    @field_validator("target_sample_rate")
    @classmethod
    def _known_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in TARGET_SAMPLE_RATES:
            raise ValueError(f"target_sample_rate must be one of {', '.join(map(str, TARGET_SAMPLE_RATES))}")
        return value


class BarOptions(TempoStyleOptions):
    """The form fields both bar routes take (the research API's names and defaults)."""

    bars: int = Field(default=4, ge=1, le=MAX_BARS, description=f"Bars to generate, 1-{MAX_BARS}. Default 4.")
    loudness_mode: LoudnessMode = Field(
        default=LoudnessMode.AUTO,
        description="`auto` (match the loop's LUFS), `lufs` (-14 LUFS), `rms` (match the loop's RMS) or `none`.",
    )
    loudness_headroom_db: float = Field(
        default=1.0, ge=0.0, le=24.0, description="True peak at most this many dB below full scale. Default 1."
    )
    intro_bars_to_drop: int = Field(
        default=0,
        ge=0,
        le=MAX_INTRO_BARS,
        description="Bars generated first and cut off, while the model settles. Default 0.",
    )
    request_id: RequestId | None = Field(
        default=None, description="Your id for this request: `GET /magenta/progress?request_id=` follows it."
    )

    def seconds(self, bars: int | None = None) -> float:
        """Seconds of ``bars`` bars (default: ``self.bars``) at this tempo."""
        return (self.bars if bars is None else bars) * self.beats_per_bar * 60.0 / self.bpm


class LoopOptions(BarOptions):
    """`POST /magenta/generate`: the loop's own style weighs `loop_weight` against the text styles."""

    loop_weight: float = Field(
        default=1.0,
        ge=0.0,
        le=1000.0,
        description="Weight of the loop's own style among the styles (0: text styles only). Default 1.",
    )


class LoopJobParams(BaseModel):
    """What a `loop` job row stores: the loop (none for `generate_style`), the resolved options."""

    model_config = ConfigDict(extra="forbid")

    loop: str | None = Field(default=None, description="Stored name of the uploaded loop.")
    prompts: list[StylePrompt] = Field(
        default_factory=list, max_length=MAX_STYLE_PROMPTS + 1, description="Empty: no style conditioning."
    )
    bpm: float = Field(ge=MIN_BPM, le=MAX_BPM)
    bars: int = Field(ge=1, le=MAX_BARS)
    beats_per_bar: int = Field(ge=1, le=MAX_BEATS_PER_BAR)
    intro_bars: int = Field(ge=0, le=MAX_INTRO_BARS)
    duration: float = Field(
        gt=0, le=MAX_LOOP_OUTPUT_SECONDS, description="Seconds generated, intro bars included (what quotas count)."
    )
    guidance_weight: float
    temperature: float
    top_k: int
    target_sample_rate: int
    loudness_mode: LoudnessMode
    loudness_headroom_db: float
    seed: int = Field(ge=0, le=SEED_MAX)
    request_id: str | None = None
    mean: float = Field(default=0.0, ge=0.0, description="Weight of the finetune's mean style.")
    centroid_weights: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=list, max_length=MAX_CENTROIDS, description="Weights of the finetune's centroids."
    )
    checkpoint: ModelSelection | None = Field(
        default=None, description="The selected checkpoint when the job was written (None: the model's own)."
    )

    @property
    def steered(self) -> bool:
        """Whether the finetune's steering assets take part in the style."""
        return self.mean > 0 or any(weight > 0 for weight in self.centroid_weights)

    def normalised_weights(self) -> list[float]:
        total = sum(prompt.weight for prompt in self.prompts)
        return [prompt.weight / total for prompt in self.prompts]


class BarsAnswer(BaseModel):
    """`POST /magenta/generate` and `/magenta/generate_style`: the research API's answer."""

    audio_base64: str = Field(description="The audio: a 16-bit PCM WAV file, base64.")
    metadata: dict[str, Any] = Field(
        description="`bpm`, `bars`, `beats_per_bar`, `sample_rate`, `channels`, `total_samples`, `topk`, `seed` "
        "(integers); `seconds_per_bar`, `loop_duration_seconds`, `guidance_weight`, `temperature` (numbers); "
        "`styles`, `style_weights`, `loop_weight`, `model`."
    )
    request_id: str = Field(description="The request's id (yours, or the job's id when you gave none).")
    job_id: str = Field(description="The job that made it (`GET /jobs/{job_id}`).")


class BarsProgress(BaseModel):
    """`GET /magenta/progress`: how far a generation sent with a `request_id` has got."""

    request_id: str = Field(description="The id the request was sent with.")
    job_id: str = Field(description="The job that runs it (`GET /jobs/{job_id}`).")
    status: str = Field(description="`queued`, `processing`, `completed`, `failed` or `cancelled`.")
    percent: int = Field(description="0-100.")
    stage: str | None = Field(description="What the job is doing, in words.")
    done: bool = Field(description="True once it completed, failed or was cancelled.")
    error: str | None = Field(default=None, description="A failed job's error message.")


class MagentaHealth(BaseModel):
    """`GET /magenta/health`: what the research API's iOS client waits for before it starts."""

    ok: bool = Field(description="True while the API answers.")
    status: str = Field(description="`ready` when a magenta worker has its model loaded, else `initializing`.")
    warmed: bool = Field(description="Whether a worker's model is loaded and compiled (no request pays it).")
    mode: str = Field(description="`serve`: this server generates.")
    models: list[str] = Field(description="The Magenta RT models this server serves.")
    workers: int = Field(description="Live magenta workers.")
    detail: str | None = Field(default=None, description="Why it is not ready.")
