"""Jam sessions (the MagentaRT Research API's `/magenta/jam/*` and `/ws/jam`): what a session is started with,
and the metadata of each chunk it streams.

A jam is one continuous stream cut into chunks of `bars_per_chunk` bars: chunk k ends exactly at
``round(k * bars_per_chunk * beats_per_bar * 60 / bpm * rate)`` samples of the stream, so every chunk is
bar-exact, the chunks never drift from the tempo, and consecutive chunks join without a gap or a click.
Metadata counts are JSON integers (the research API's iOS client decodes them as Int).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.loop import (
    MAX_BEATS_PER_BAR,
    MAX_BPM,
    MIN_BPM,
    TARGET_SAMPLE_RATES,
    StyleList,
    TempoStyleOptions,
)
from soundstage.schemas.magenta_model import MAX_CENTROIDS, ModelSelection
from soundstage.schemas.style import MAX_STYLE_PROMPTS, StylePrompt

MAX_BARS_PER_CHUNK = 16
DEFAULT_BARS_PER_CHUNK = 4


class JamParams(BaseModel):
    """A jam session's settings, resolved (what the worker holding the session is given)."""

    model_config = ConfigDict(extra="forbid")

    bpm: float = Field(ge=MIN_BPM, le=MAX_BPM, description="Tempo.")
    bars_per_chunk: int = Field(
        default=DEFAULT_BARS_PER_CHUNK, ge=1, le=MAX_BARS_PER_CHUNK, description="Bars in each chunk."
    )
    beats_per_bar: int = Field(default=4, ge=1, le=MAX_BEATS_PER_BAR, description="Beats in a bar.")
    prompts: list[StylePrompt] = Field(
        default_factory=list, max_length=MAX_STYLE_PROMPTS + 1, description="The styles (texts, the loop's own)."
    )
    guidance_weight: float = Field(default=5.0, ge=0.0, le=10.0, description="Classifier-free guidance.")
    temperature: float = Field(default=1.1, gt=0.0, le=4.0, description="Sampling temperature.")
    top_k: int = Field(default=40, ge=1, le=1024, description="Top-k sampling.")
    target_sample_rate: int = Field(default=48_000, description="Sample rate of the chunks: 44100 or 48000.")
    seed: int = Field(ge=0, le=SEED_MAX, description="The stream's sampling seed.")
    mean: float = Field(default=0.0, ge=0.0, description="Weight of the finetune's mean style.")
    centroid_weights: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=list, max_length=MAX_CENTROIDS, description="Weights of the finetune's centroids."
    )
    loop: str | None = Field(default=None, description="Stored name of the loop the jam starts from (bar mode).")
    checkpoint: ModelSelection | None = Field(default=None, description="The selected checkpoint at the start.")

    @field_validator("target_sample_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in TARGET_SAMPLE_RATES:
            raise ValueError(f"target_sample_rate must be one of {', '.join(map(str, TARGET_SAMPLE_RATES))}")
        return value

    @property
    def seconds_per_bar(self) -> float:
        return self.beats_per_bar * 60.0 / self.bpm

    @property
    def chunk_seconds(self) -> float:
        return self.bars_per_chunk * self.seconds_per_bar

    def chunk_end(self, index: int, sample_rate: int) -> int:
        """Where chunk ``index`` (the first is 1) ends in the stream, in samples at ``sample_rate``: rounded
        from the exact bar time of the whole stream, never summed from rounded chunks (no drift)."""
        return round(index * self.bars_per_chunk * self.beats_per_bar * 60.0 * sample_rate / self.bpm)


class ChunkMetadata(BaseModel):
    """A chunk's metadata, as the research API gives it."""

    bpm: int = Field(description="Tempo, rounded (`bpm_exact` keeps a fractional one).")
    bpm_exact: float = Field(description="Tempo as given.")
    bars: int = Field(description="Bars in the chunk.")
    beats_per_bar: int = Field(description="Beats in a bar.")
    sample_rate: int = Field(description="Sample rate of the chunk.")
    channels: int = Field(description="2: stereo.")
    total_samples: int = Field(description="Samples per channel in the chunk.")
    seconds_per_bar: float = Field(description="Seconds a bar lasts.")
    loop_duration_seconds: float = Field(description="Seconds the chunk's bars last.")
    guidance_weight: float = Field(description="Guidance the chunk was generated with.")
    temperature: float = Field(description="Temperature the chunk was generated with.")
    topk: int = Field(description="Top-k the chunk was generated with.")


SessionId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w-]+$")]


class JamOptions(TempoStyleOptions):
    """`POST /magenta/jam/start`'s form fields (the research API's names and defaults): the bar routes' tempo,
    styles and knobs, the chunk length in bars and the loop's own weight."""

    bars_per_chunk: int = Field(
        default=DEFAULT_BARS_PER_CHUNK, ge=1, le=MAX_BARS_PER_CHUNK, description="Bars in each chunk. Default 4."
    )
    loop_weight: float = Field(
        default=1.0, ge=0.0, le=1000.0, description="Weight of the loop's own style among the styles. Default 1."
    )

    @property
    def chunk_seconds(self) -> float:
        return self.bars_per_chunk * self.beats_per_bar * 60.0 / self.bpm


class JamUpdateOptions(BaseModel):
    """`POST /magenta/jam/update`: what changes, from the next chunk (a field not sent stays as it is)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    session_id: SessionId = Field(description="The session.")
    styles: StyleList | None = Field(default=None, description="Comma-separated text styles (replace the old ones).")
    style_weights: str | None = Field(default=None, description="Comma-separated weights, one per style.")
    loop_weight: float | None = Field(default=None, ge=0.0, le=1000.0, description="Weight of the loop's style.")
    guidance_weight: float | None = Field(default=None, ge=0.0, le=10.0, description="Classifier-free guidance.")
    temperature: float | None = Field(default=None, gt=0.0, le=4.0, description="Sampling temperature.")
    topk: int | None = Field(
        default=None, ge=1, le=1024, validation_alias=AliasChoices("topk", "top_k"), description="Top-k."
    )
    mean: float | None = Field(default=None, ge=0.0, le=1000.0, description="Weight of the finetune's mean style.")
    centroid_weights: str | None = Field(default=None, max_length=2000, description="Weights of the centroids.")
    use_current_mix_as_style: bool = Field(
        default=False, description="Blend in the style of the jam's last chunk (what is playing)."
    )
    style_ramp_seconds: float | None = Field(
        default=None, ge=0.0, le=300.0, description="Glide to the new style over about this many seconds."
    )


class JamStarted(BaseModel):
    """`POST /magenta/jam/start`'s answer."""

    session_id: str = Field(description="The session: pass it to every other jam route.")
    status: str = Field(description="`started`.")
    model: str = Field(description="The model the jam runs on.")
    random_weights: bool = Field(description="True for `random:` test models (the audio is noise-like).")
    checkpoint: str | None = Field(description="The finetune checkpoint served (repo@step), or null.")
    steering_assets: dict[str, object] = Field(description="`mean` (bool) and `centroids` (count) the jam can steer.")
    bpm: float = Field(description="Tempo.")
    bars_per_chunk: int = Field(description="Bars per chunk.")
    beats_per_bar: int = Field(description="Beats in a bar.")
    chunk_duration_seconds: float = Field(description="Seconds each chunk lasts.")
    target_sample_rate: int = Field(description="Sample rate of the chunks.")
    seed: int = Field(description="The stream's seed.")


class JamChunk(BaseModel):
    index: int = Field(description="The chunk's number; the first is 1.")
    audio_base64: str = Field(description="The chunk: a 16-bit PCM WAV file, base64.")
    metadata: ChunkMetadata = Field(description="Its tempo, length and the knobs it was made with.")
    lateness_seconds: float = Field(description="How late it was ready for its playback deadline (0: in time).")


class JamNext(BaseModel):
    """`GET /magenta/jam/next`'s answer."""

    chunk: JamChunk = Field(description="The next chunk.")


class JamStatus(BaseModel):
    """`GET /magenta/jam/status`."""

    session_id: str = Field(description="The session.")
    running: bool = Field(description="Whether it still streams.")
    state: str = Field(description="`starting`, `running` or `ended`.")
    last_generated_index: int = Field(description="The newest chunk made.")
    last_delivered_index: int = Field(description="The newest chunk handed to the client.")
    last_consumed_index: int = Field(description="The newest chunk the client consumed.")
    buffer_ahead: int = Field(description="Chunks made past the last consumed one.")
    queued_chunks: int = Field(description="Chunks made and not handed to the client yet.")
    max_ahead_chunks: int = Field(description="How far past the last consumed chunk the jam goes.")
    bpm: float = Field(description="Tempo.")
    beats_per_bar: int = Field(description="Beats in a bar.")
    bars_per_chunk: int = Field(description="Bars per chunk.")
    chunk_duration_seconds: float = Field(description="Seconds each chunk lasts.")
    target_sample_rate: int = Field(description="Sample rate of the chunks.")
    worker: str | None = Field(description="The worker holding it.")
    end_reason: str | None = Field(description="Why it ended, once it has.")
    end_code: str | None = Field(description="The code of an end it was not asked for (`worker_lost`, ...).")


class JamStopped(BaseModel):
    """`POST /magenta/jam/stop` and `/magenta/jam/stop_all`."""

    stopped: list[str] = Field(description="The sessions told to stop.")
    ok: bool = Field(description="True.")
