"""The jam WebSocket protocol (`/ws/jam`, `/magenta/ws/jam`; the MagentaRT Research API's), every message
in one discriminated union per direction on `type`: the API's relay parses the client's with CLIENT and
writes its own from SERVER; a Python client (the tests, the CLI) does the reverse with the same types.

Client: `start`, `update`, `consume`, `reseed`, `stop`, `ping`. Server: `started`, `chunk` (base64 WAV and
metadata; with `binary_audio`, a binary WAV frame then `chunk_meta`), `status`, `error` (with a code),
`stopped`, `pong`. Fields not listed are refused (`bad_message`), so a typo is heard, not ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter

from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.jam import MAX_BARS_PER_CHUNK, ChunkMetadata, SessionId
from soundstage.schemas.jam_stream import (
    MAX_CHUNK_INDEX,
    MAX_RAMP_SECONDS,
    ErrorEvent,
    Pace,
    StatusEvent,
    SteeringInfo,
    StoppedEvent,
)
from soundstage.schemas.loop import MAX_BEATS_PER_BAR, MAX_BPM, MIN_BPM, StyleList

RT_CHUNK_SECONDS = 2.0
"""Chunk length of `rt` mode (no tempo): a 4/4 bar at 120 bpm."""
MIN_RT_CHUNK_SECONDS = 0.8
MAX_RT_CHUNK_SECONDS = 12.0


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StyleFields(_Message):
    """The live controls, in the research API's names (strings of comma-separated values, as its clients send)."""

    styles: StyleList | None = Field(default=None, description='Comma-separated text styles ("disco, funk").')
    style_weights: str | None = Field(default=None, max_length=2000, description="One weight per style.")
    temperature: float | None = Field(default=None, gt=0.0, le=4.0, description="Sampling temperature.")
    topk: int | None = Field(
        default=None, ge=1, le=1024, validation_alias=AliasChoices("topk", "top_k"), description="Top-k."
    )
    guidance_weight: float | None = Field(default=None, ge=0.0, le=10.0, description="Classifier-free guidance.")
    mean: float | None = Field(default=None, ge=0.0, le=1000.0, description="Weight of the finetune's mean style.")
    centroid_weights: str | None = Field(default=None, max_length=2000, description="Weights of its centroids.")
    style_ramp_seconds: float | None = Field(
        default=None, ge=0.0, le=MAX_RAMP_SECONDS, description="Glide to a new style over about this long."
    )


class StartParams(StyleFields):
    pace: Pace = Field(default=Pace.ASAP, description="`asap` or `realtime` (at most a few chunks ahead of playback).")
    seed: int = Field(default=-1, ge=-1, le=SEED_MAX, description="Random seed; -1 picks one.")
    target_sample_rate: int | None = Field(default=None, description="44100 or 48000 (default 48000).")
    chunk_seconds: float = Field(
        default=RT_CHUNK_SECONDS,
        ge=MIN_RT_CHUNK_SECONDS,
        le=MAX_RT_CHUNK_SECONDS,
        description="`rt` mode: seconds per chunk.",
    )
    model: str | None = Field(default=None, description="Magenta RT model (default: the selected one).")


class StartMessage(_Message):
    type: Literal["start"]
    mode: Literal["rt", "bar"] = Field(default="rt", description="`rt`: chunks of `chunk_seconds`; `bar`: of bars.")
    binary_audio: bool = Field(default=False, description="Chunks as binary WAV frames (then `chunk_meta`).")
    params: StartParams = Field(default_factory=StartParams, description="Style, knobs and pacing.")
    session_id: SessionId | None = Field(default=None, description="Bar mode: relay a session started over HTTP.")
    loop_audio_b64: str | None = Field(default=None, description="Bar mode: the loop, base64 (WAV, FLAC, MP3, ...).")
    bpm: float | None = Field(default=None, ge=MIN_BPM, le=MAX_BPM, description="Bar mode: the tempo.")
    bars_per_chunk: int | None = Field(default=None, ge=1, le=MAX_BARS_PER_CHUNK, description="Bar mode.")
    beats_per_bar: int | None = Field(default=None, ge=1, le=MAX_BEATS_PER_BAR, description="Bar mode.")
    loop_weight: float | None = Field(default=None, ge=0.0, le=1000.0, description="Weight of the loop's style.")


class UpdateMessage(StyleFields):
    type: Literal["update"]
    loop_weight: float | None = Field(default=None, ge=0.0, le=1000.0, description="Weight of the loop's style.")
    use_current_mix_as_style: bool = Field(default=False, description="Blend in the style of the last chunk.")


class ConsumeMessage(_Message):
    type: Literal["consume"]
    chunk_index: int = Field(
        ge=1, le=MAX_CHUNK_INDEX, validation_alias=AliasChoices("chunk_index", "index"), description="Played."
    )


class ReseedMessage(_Message):
    type: Literal["reseed"]
    loop_audio_b64: str | None = Field(default=None, description="A new loop (default: the session's own).")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX, description="Seed of the new stream.")


class StopMessage(_Message):
    type: Literal["stop"]


class PingMessage(_Message):
    type: Literal["ping"]
    t: float | str | None = Field(default=None, description="Echoed in the `pong`.")


ClientMessage = Annotated[
    StartMessage | UpdateMessage | ConsumeMessage | ReseedMessage | StopMessage | PingMessage,
    Field(discriminator="type"),
]
CLIENT = TypeAdapter[ClientMessage](ClientMessage)


class Started(_Message):
    type: Literal["started"] = "started"
    session_id: str
    mode: str
    binary_audio: bool
    pace: Pace
    model: str
    random_weights: bool
    checkpoint: str | None
    steering_assets: SteeringInfo
    bpm: float
    bars_per_chunk: int
    beats_per_bar: int
    chunk_duration_seconds: float
    sample_rate: int
    seed: int
    started_in_seconds: float = Field(description="Time the worker took to set the session up.")


class ChunkMessage(_Message):
    type: Literal["chunk"] = "chunk"
    index: int
    audio_base64: str
    metadata: ChunkMetadata
    lateness_seconds: float


class ChunkMeta(_Message):
    """Binary mode: follows the chunk's binary WAV frame."""

    type: Literal["chunk_meta"] = "chunk_meta"
    index: int
    metadata: ChunkMetadata
    lateness_seconds: float
    bytes: int = Field(description="Size of the binary frame it describes.")


class Pong(_Message):
    type: Literal["pong"] = "pong"
    t: float | str | None = None
    server_time: float


# `status`, `error` and `stopped` are the session's own events (soundstage.schemas.jam_stream), relayed as they are.
ServerMessage = Annotated[
    Started | ChunkMessage | ChunkMeta | StatusEvent | ErrorEvent | StoppedEvent | Pong, Field(discriminator="type")
]
SERVER = TypeAdapter[ServerMessage](ServerMessage)
