"""What the soundtrack's steps are given and what they hand back (their job rows' `params` and `result`).

All positions are samples at the scene model's rate (`rate`) on the soundtrack's timeline, which starts at
0 and ends at `total` (the sum of the scene durations). These models are the pipeline pool's own: the
advance (soundtrack.machine) writes them into the steps' rows, the steps (soundtrack.steps) read them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Track(_Strict):
    """Audio laid on the timeline: sample ``i`` of ``file`` plays at timeline sample ``start + i``."""

    file: str
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


class Continuation(_Strict):
    """The output of a generate step that continued earlier audio: the file starts with ``prompt`` samples of
    the prompt as the codec re-synthesised it, and its new audio starts at timeline sample ``join`` (where
    the prompt ended)."""

    file: str
    join: int
    prompt: int
    length: int

    @property
    def track(self) -> Track:
        return Track(file=self.file, start=self.join - self.prompt, length=self.length)

    @property
    def end(self) -> int:
        return self.join - self.prompt + self.length


class Pair(_Strict):
    """Both sides of a transition around its crossfade, one after the other in one file, so that ONE Demucs
    call separates them (htdemucs pads every call to its 7.8 s segment: two sides of a 2 s crossfade fill one
    segment instead of two): samples ``[0, split)`` are the outgoing side, played from timeline sample
    ``outgoing_start``, ``[split, length)`` the incoming side, played from ``incoming_start``."""

    file: str
    length: int
    split: int
    outgoing_start: int
    incoming_start: int


class Transition(_Strict):
    """Where transition ``index`` (scene index -> index + 1) crossfades, and the audio of both sides around it."""

    index: int
    boundary: int = Field(description="Where the durations put it.")
    centre: int = Field(description="Where the cut landed: the middle of the crossfade.")
    beat: int | None = Field(description="The beat it snapped to, if it did.")
    start: int = Field(description="First sample of the crossfade (the incoming side crosses zero there).")
    end: int = Field(description="One past its last sample (the outgoing side crosses zero there).")
    incoming_shift: int = Field(description="Samples the incoming scene was moved by to cross zero at `start`.")
    outgoing: Track = Field(description="The outgoing side around the crossfade (context before, padding after).")
    incoming: Track = Field(description="The incoming side around it (padding before, context after).")
    tempo_from: float | None
    tempo_to: float | None
    pair: Pair | None = Field(
        default=None,
        description="Both sides around the crossfade, for one separation (stem-aware crossfades only). None: "
        "not stem-aware, or prepared before pairs existed (then each side is separated on its own).",
    )


class Prepared(_Strict):
    """A scene made ready for the timeline (the `prepare_scene` step's result)."""

    index: int
    rate: int
    channels: int
    track: Track = Field(description="The tempo-matched scene on the timeline (moved by its transition's shift).")
    handoff: int | None = Field(description="Where the next scene and this one's tail continue it; None if last.")
    tempo: float | None = Field(description="BPM as generated (None: no steady pulse).")
    pulse_clarity: float
    stretch: float = Field(description="Speed factor applied (1: none).")
    reference_tempo: float | None = Field(description="The soundtrack's tempo (its first scene's), if steady.")
    shortfall: int = Field(description="Last scene: samples it falls short of the end (after a speed-up).")
    transition: Transition | None = Field(description="The transition into this scene (None for the first).")
    warnings: list[str] = Field(default_factory=list)


class PrepareParams(_Strict):
    operation: Literal["prepare_scene"] = "prepare_scene"
    index: int
    last: bool
    rate: int
    scene: Continuation = Field(description="The scene as generated (for the first: prompt 0, join 0).")
    previous: Prepared | None
    tail: Continuation | None = Field(description="The previous scene's tail.")
    boundary: int | None = Field(description="Nominal centre of the transition into this scene.")
    snap: int = Field(description="How far that transition may move to land on a beat.")
    crossfade: int
    handoff: int | None = Field(description="Nominal handoff of this scene (None for the last).")
    total: int
    beat_aligned: bool
    stem_aware: bool = Field(default=False, description="Store the transition's Pair for its separation.")
    tempo_threshold: float
    max_tempo_stretch: float


class LaidStems(_Strict):
    """Stems laid on the timeline: samples ``[offset, offset + length)`` of every stem's file (file names by
    stem) play from timeline sample ``start``."""

    files: dict[str, str]
    start: int
    offset: int = 0
    length: int


class Stems(_Strict):
    """The stems of a transition's two sides, separated on the Demucs pool."""

    outgoing: LaidStems
    incoming: LaidStems


class CrossfadeParams(_Strict):
    operation: Literal["crossfade"] = "crossfade"
    rate: int
    transitions: list[Transition]
    stems: list[Stems | None] = Field(description="Per transition: its sides' stems, or None for a plain crossfade.")
    score: bool


class Window(_Strict):
    """A finished transition: the crossfaded audio over ``[start, end)``, and how it scored."""

    index: int
    attempt: int
    seed: int | None
    file: str
    start: int
    end: int
    scores: dict[str, float] | None
    passed: bool | None
    badness: float | None
    override: Track | None = Field(
        default=None, description="A regenerated opening of the incoming scene: plays instead of it over its span."
    )


class WindowsResult(_Strict):
    windows: list[Window]


class Candidate(_Strict):
    """A regenerated opening of the scene after transition ``transition.index``, to crossfade and score."""

    transition: Transition
    attempt: int
    seed: int
    opening: Continuation = Field(description="The regeneration: continues the outgoing scene at its handoff.")
    incoming: Track = Field(description="The incoming scene as it was, which the opening gives way to.")
    splice: int = Field(description="Where the opening starts giving way to the scene as it was.")
    splice_length: int
    stems: Stems | None = Field(description="Outgoing side's material stems and the opening's stems, if stem-aware.")


class RescoreParams(_Strict):
    operation: Literal["rescore"] = "rescore"
    round: int
    rate: int
    candidates: list[Candidate]


class FinalizeParams(_Strict):
    operation: Literal["finalize"] = "finalize"
    rate: int
    total: int
    scenes: list[Track]
    tails: list[Continuation]
    extension: Continuation | None
    windows: list[Window]
    output: str = Field(description="Object name of the soundtrack (`{job_id}_soundtrack.{format}`).")
    format: str
    sample_rate: int | None
    loudness_target: float
    total_seconds: float = Field(description="The exact length asked for (the file is this long to the sample).")
