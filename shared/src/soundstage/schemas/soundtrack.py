"""`POST /generate/soundtrack`: multi-scene soundtracks (musicgen-api's contract), what a `soundtrack` job row
stores, and what its result says about every scene and transition."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from soundstage.schemas.common import AudioFormat
from soundstage.schemas.generate import (
    SEED_MAX,
    GuidanceScale,
    MelodyUrl,
    OutputFormat,
    OutputRate,
    Prompt,
    Seed,
    Temperature,
    TopK,
    TopP,
)

MIN_SCENE_SECONDS = 5.0
"""No scene is shorter: MusicGen needs a few seconds to settle, and a scene holds its crossfades."""
MIN_CROSSFADE = 0.5
MAX_CROSSFADE = 5.0

Mood = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class SceneRequest(BaseModel):
    """One scene of the timeline: how long it lasts and what it should feel like."""

    model_config = ConfigDict(extra="forbid")

    mood: Mood | None = Field(
        default=None, description="What this scene should feel like (`peaceful morning`); folded into its prompt."
    )
    duration: float = Field(
        ge=MIN_SCENE_SECONDS,
        description=f"Seconds, at least {MIN_SCENE_SECONDS:g} and at most the server's SOUNDTRACK_MAX_SCENE_SECONDS "
        "(default 600). Integers or fractions. The scene's share of the timeline: the soundtrack lasts the sum.",
    )
    prompt: Prompt | None = Field(
        default=None, description="This scene's own description instead of `base_prompt` (the mood still applies)."
    )


class SoundtrackRequest(BaseModel):
    """A soundtrack: scenes end to end, each continuing the one before, joined by crossfades."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_prompt": "cinematic orchestral music",
                    "scenes": [
                        {"mood": "peaceful morning", "duration": 20},
                        {"mood": "joyful celebration", "duration": 25},
                        {"mood": "gentle farewell", "duration": 15},
                    ],
                    "crossfade_duration": 2.0,
                }
            ]
        },
    )

    base_prompt: Prompt = Field(description="The musical style every scene shares. 1-2000 characters.")
    scenes: list[SceneRequest] = Field(
        min_length=1,
        description="The timeline, in order: at least one scene, at most SOUNDTRACK_MAX_SCENES (default 200), "
        "SOUNDTRACK_MAX_TOTAL_SECONDS in all (default 3600).",
    )
    crossfade_duration: float = Field(
        default=2.0,
        ge=MIN_CROSSFADE,
        le=MAX_CROSSFADE,
        description=f"Seconds of each equal-power crossfade between scenes, {MIN_CROSSFADE:g}-{MAX_CROSSFADE:g}. "
        "Default 2. Every crossfade is exactly this long.",
    )
    use_beat_aligned_crossfade: bool = Field(
        default=True,
        description="Centre every crossfade on the beat nearest to the scene boundary (within half a second, when "
        "the music has a steady pulse). Default true.",
    )
    use_stem_aware_crossfade: bool | None = Field(
        default=None,
        description="Separate both sides of every transition into stems and crossfade each with its own curve "
        "(the bass swapped on the beat). Default null: the server's USE_STEM_AWARE_CROSSFADE (default true).",
    )
    use_quality_loop: bool | None = Field(
        default=None,
        description="Score every transition and regenerate the opening of the later scene when it fails. "
        "Default null: the server's USE_QUALITY_LOOP (default true).",
    )
    melody_audio_url: MelodyUrl = Field(
        default=None,
        description="With a melody model: an audio file whose melody (chroma) the whole soundtrack follows, laid "
        "on its timeline from 0 s and looped if shorter; fetched as for `/generate` (http(s), at most "
        "MAX_UPLOAD_MB and MAX_DURATION seconds, public addresses only, or this server's own `/files/<name>`). "
        "Needs a melody model (422 `model_not_melody` otherwise).",
    )
    model: str | None = Field(
        default=None, description="A MusicGen model the server serves (as for `/generate`). Default: the first."
    )
    seed: Seed = -1
    format: OutputFormat = AudioFormat.WAV
    sample_rate: OutputRate = None
    loudness_target: float = Field(
        default=-14.0,
        ge=-40.0,
        le=-5.0,
        description="Integrated loudness of the finished soundtrack, LUFS (-40 to -5, default -14); its true "
        "peak stays at or below -1 dBFS.",
    )
    stems: Literal[2, 4, 6] | None = Field(
        default=None,
        description="Also separate the finished soundtrack into stems (on the Demucs pool): 4 (drums, bass, other, "
        "vocals), 2 (vocals, accompaniment) or 6 (plus guitar, piano; needs a six-source Demucs model). They are "
        "in `result.stems` and `result_urls`, named `{job_id}_{stem}.{format}`. Default null: none.",
    )
    temperature: Temperature = 1.0
    top_k: TopK = 250
    top_p: TopP = 0.0
    guidance_scale: GuidanceScale = 3.0

    @property
    def total_seconds(self) -> float:
        return sum(scene.duration for scene in self.scenes)


class SoundtrackJobParams(SoundtrackRequest):
    """What a `soundtrack` job row stores: the request with every choice made (seed, model, stages), and the
    settings that shape its pipeline, so that it runs as it was accepted even if the settings change."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(ge=0, le=SEED_MAX, description="The seed used.")
    model: str = Field(description="The MusicGen model that generates the scenes.")
    use_stem_aware_crossfade: bool = Field(description="Whether transitions are crossfaded stem by stem.")
    use_quality_loop: bool = Field(description="Whether failing transitions are regenerated.")
    max_regen_attempts: int = Field(ge=0, description="Regenerations of one transition at most.")
    context_seconds: float = Field(gt=0, description="Seconds of the previous scene each scene continues.")
    tempo_threshold: float = Field(ge=0, description="Tempo difference (fraction) that triggers tempo matching.")
    max_tempo_stretch: float = Field(ge=0, description="Largest tempo change tempo matching applies (fraction).")
    demucs_model: str | None = Field(description="The Demucs model for stem-aware crossfades and `stems`.")
    melody_audio: str | None = Field(
        default=None, description="Object name of the fetched melody (`{job_id}_melody.<ext>`), if any."
    )
    melody_audio_url: None = Field(default=None, description="Never stored (it may hold credentials).")


class TransitionAttempt(BaseModel):
    """One version of a transition's incoming side: the original (attempt 0) or a regeneration."""

    attempt: int = Field(description="0 for the scene as first generated, then 1, 2, ... per regeneration.")
    seed: int | None = Field(default=None, description="Seed of the regenerated opening (null for attempt 0).")
    scores: dict[str, float] = Field(
        description="`mfcc_similarity`, `spectral_flux`, `chroma_continuity`, `energy_ratio`."
    )
    passed: bool = Field(description="Whether every score met its threshold.")


class TransitionResult(BaseModel):
    """Where and how one scene gave way to the next."""

    index: int = Field(description="0 for the transition from scene 1 to scene 2, and so on.")
    from_scene: int = Field(description="The outgoing scene (from 1).")
    to_scene: int = Field(description="The incoming scene (from 1).")
    boundary: float = Field(description="Seconds: where the request's durations put the boundary.")
    cut: float = Field(description="Seconds: the centre of the crossfade, where the cut landed.")
    start: float = Field(description="Seconds: where the crossfade starts (a zero crossing of the incoming side).")
    end: float = Field(description="Seconds: where it ends (a zero crossing of the outgoing side).")
    incoming_offset: float = Field(
        description="Seconds (at most 0.005) the incoming scene was moved by so that it crosses zero at `start`."
    )
    beat: float | None = Field(description="Seconds: the beat the cut snapped to; null when there was no steady pulse.")
    tempo_from: float | None = Field(description="BPM of the outgoing scene (after tempo matching); null if unsteady.")
    tempo_to: float | None = Field(description="BPM of the incoming scene (after tempo matching); null if unsteady.")
    stem_aware: bool = Field(description="Whether each stem was crossfaded on its own.")
    scores: dict[str, float] | None = Field(description="The kept attempt's scores (null without the quality loop).")
    passed: bool | None = Field(description="Whether the kept attempt met every threshold.")
    attempts: list[TransitionAttempt] = Field(description="Every attempt scored, in order.")
    chosen_attempt: int = Field(description="The attempt kept: the best scoring.")


class SceneResult(BaseModel):
    index: int = Field(description="The scene, from 1.")
    prompt: str = Field(description="What the model was asked for.")
    seed: int = Field(description="The seed of its generation.")
    start: float = Field(description="Seconds: where it starts on the soundtrack (its incoming crossfade's middle).")
    end: float = Field(description="Seconds: where it ends.")
    tempo: float | None = Field(description="BPM as generated; null without a steady pulse.")
    stretch: float = Field(description="Speed factor applied to match the soundtrack's tempo (1 = none).")
