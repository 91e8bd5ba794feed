"""What travels between the API and the magenta worker holding a jam session, through Redis
(soundstage.jam_bus): the start request a worker's inbox receives, the controls the API sends the session,
and the events the session streams back. Each family is one pydantic discriminated union on `type`, used
by both sides: the worker never sees a form, the API never sees a model.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.jam import ChunkMetadata, JamParams
from soundstage.schemas.magenta_model import MAX_CENTROIDS
from soundstage.schemas.style import MAX_STYLE_PROMPTS, StylePrompt

MAX_RAMP_SECONDS = 300.0
MAX_CHUNK_INDEX = 10_000_000
"""More chunks than any jam makes (a year of 4 s chunks): bounds every index a client sends."""


class Pace(StrEnum):
    ASAP = "asap"
    """As fast as the model goes, at most MAGENTA_MAX_AHEAD_CHUNKS ahead of what the client consumed."""
    REALTIME = "realtime"
    """At most MAGENTA_MAX_AHEAD_CHUNKS ahead of wall-clock playback (from the first chunk on)."""


class Consumption(StrEnum):
    EXPLICIT = "explicit"
    """Only `consume` moves the window (the HTTP jam: `POST /magenta/jam/consume`)."""
    DELIVERED = "delivered"
    """A chunk counts as consumed once sent to the client, until the client sends its first `consume`
    (a WebSocket client need not send any)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JamStart(_Message):
    """A start request, in the inbox of the worker whose slot the API claimed."""

    session_id: str
    owner: str | None = Field(description="Hash of the starting key (None: auth off).")
    model: str
    params: JamParams
    pace: Pace = Pace.ASAP
    consumption: Consumption = Consumption.EXPLICIT
    style_ramp_seconds: float = Field(default=0.0, ge=0.0, le=MAX_RAMP_SECONDS)


class UpdateControl(_Message):
    """New style or knobs, heard from the next chunk (None: unchanged)."""

    type: Literal["update"] = "update"
    prompts: list[StylePrompt] | None = Field(default=None, max_length=MAX_STYLE_PROMPTS + 1)
    mean: float | None = Field(default=None, ge=0.0)
    centroid_weights: list[Annotated[float, Field(ge=0.0)]] | None = Field(default=None, max_length=MAX_CENTROIDS)
    use_current_mix_as_style: bool = Field(
        default=False, description="Add the style of the session's last chunk to the blend."
    )
    mix_weight: float = Field(default=1.0, gt=0.0, description="Its weight in the blend.")
    loop_weight: float | None = Field(default=None, ge=0.0, description="New weight of the loop's own style.")
    temperature: float | None = Field(default=None, gt=0.0, le=4.0)
    top_k: int | None = Field(default=None, ge=1, le=1024)
    guidance_weight: float | None = Field(default=None, ge=0.0, le=10.0)
    style_ramp_seconds: float | None = Field(default=None, ge=0.0, le=MAX_RAMP_SECONDS)


class ConsumeControl(_Message):
    type: Literal["consume"] = "consume"
    index: int = Field(ge=1, le=MAX_CHUNK_INDEX)
    at: float = Field(default=0.0, description="Unix time the client consumed it (the API's clock).")


class ReseedControl(_Message):
    """Start the stream again from a loop (the session's own, or ``audio``), from the next chunk."""

    type: Literal["reseed"] = "reseed"
    audio: str | None = Field(default=None, description="Stored name of a new loop (None: the session's own).")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)


class SpliceControl(_Message):
    """Start the stream again from what the client hears (``audio``, its mix), anchored on the session's loop."""

    type: Literal["reseed_splice"] = "reseed_splice"
    audio: str = Field(description="Stored name of the combined audio.")
    anchor_bars: float = Field(ge=0.0, le=16.0)


class StopControl(_Message):
    type: Literal["stop"] = "stop"
    reason: str = "stopped by the client"


JamControl = Annotated[
    UpdateControl | ConsumeControl | ReseedControl | SpliceControl | StopControl, Field(discriminator="type")
]
CONTROL = TypeAdapter[JamControl](JamControl)


class SteeringInfo(BaseModel):
    """The selected finetune's steering assets, as a session can use them."""

    repo: str | None = Field(default=None, description="Where the assets come from.")
    mean: bool = Field(description="`mean` can steer (mean_style_embed.npy is loaded).")
    centroids: int = Field(description="How many centroids `centroid_weights` can weigh.")


class StartedEvent(_Message):
    type: Literal["started"] = "started"
    session_id: str
    worker: str = Field(description="The worker holding the session.")
    model: str
    random_weights: bool
    checkpoint: str | None = Field(description="The finetune checkpoint served (repo@step), or None.")
    steering_assets: SteeringInfo
    chunk_seconds: float
    sample_rate: int
    started_in_seconds: float = Field(description="Time the worker took to set the session up.")


class ChunkEvent(_Message):
    """A chunk; its WAV bytes travel beside the event in the stream entry."""

    type: Literal["chunk"] = "chunk"
    index: int
    metadata: ChunkMetadata
    generated_at: float = Field(description="Unix time the chunk was ready.")
    compute_seconds: float = Field(description="Time spent generating it.")
    lateness_seconds: float = Field(
        description="How long after its playback deadline it was ready (0: in time); the deadline of chunk k is "
        "the first chunk's time plus k-1 chunk durations."
    )


class StatusEvent(_Message):
    type: Literal["status"] = "status"
    message: str
    applied_from_chunk: int | None = Field(default=None, description="The first chunk an update is heard in.")


class ErrorEvent(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = Field(description="The session ended with it.")


class StoppedEvent(_Message):
    type: Literal["stopped"] = "stopped"
    reason: str
    code: str | None = Field(default=None, description="Why, as a code, when it did not end as asked.")
    last_index: int


JamEvent = Annotated[StartedEvent | ChunkEvent | StatusEvent | ErrorEvent | StoppedEvent, Field(discriminator="type")]
EVENT = TypeAdapter[JamEvent](JamEvent)
