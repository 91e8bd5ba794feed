"""A soundtrack as one advance sees it: its params, its plan and its steps' rows, read by step name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soundstage.db import Family, Job, JobFile
from soundstage.schemas import JobStatus, SoundtrackJobParams
from soundstage_pipeline.soundtrack.models import (
    Continuation,
    LaidStems,
    Prepared,
    Stems,
    Track,
    Transition,
    Window,
    WindowsResult,
)
from soundstage_pipeline.soundtrack.plan import Scene, SoundtrackPlan, derive_seed, scene_prompt


def separation_keys(i: int, transition: Transition) -> list[tuple[str, Track]]:
    """The separation steps of transition i's stem-aware crossfade and what each separates: both sides in one
    (``separate:i``, its Pair), or, for a transition prepared before pairs, one per side."""
    pair = transition.pair
    if pair is not None:
        return [(f"separate:{i}", Track(file=pair.file, start=0, length=pair.length))]
    return [(f"separate:{i}:out", transition.outgoing), (f"separate:{i}:in", transition.incoming)]


def plan_of(params: SoundtrackJobParams) -> SoundtrackPlan:
    scenes = tuple(
        Scene(
            index=index,
            prompt=scene_prompt(params.base_prompt, scene.mood, scene.prompt),
            duration=scene.duration,
            seed=derive_seed(params.seed, "scene", index),
        )
        for index, scene in enumerate(params.scenes)
    )
    return SoundtrackPlan(scenes=scenes, crossfade=params.crossfade_duration)


@dataclass
class SoundtrackRows:
    family: Family
    params: SoundtrackJobParams
    plan: SoundtrackPlan

    @property
    def parent(self) -> Job:
        parent = self.family.parent
        if parent is None:
            raise RuntimeError("the soundtrack's row is gone")
        return parent

    def step(self, key: str) -> Job | None:
        return self.family.children.get(key)

    def done(self, key: str) -> bool:
        step = self.step(key)
        return step is not None and step.status == JobStatus.COMPLETED.value

    def result(self, key: str) -> dict[str, Any]:
        step = self.step(key)
        return dict(step.result or {}) if step is not None else {}

    def step_params(self, key: str) -> dict[str, Any]:
        step = self.step(key)
        return dict(step.params) if step is not None else {}

    def files(self, key: str) -> list[JobFile]:
        step = self.step(key)
        return list(step.files) if step is not None else []

    def prepared(self, k: int) -> Prepared:
        return Prepared.model_validate(self.result(f"prepare:{k}"))

    def transition(self, i: int) -> Transition:
        transition = self.prepared(i + 1).transition
        if transition is None:
            raise RuntimeError(f"scene {i + 2} was prepared without its transition")
        return transition

    def rate(self) -> int:
        """The scene model's sample rate: the timeline's (from the first scene's file)."""
        rate = self.files("scene:0")[0].sample_rate
        if not rate:
            raise RuntimeError("the first scene's file has no sample rate")
        return int(rate)

    def continuation(self, key: str, join: int) -> Continuation:
        """The output of generate step ``key`` as a continuation whose new audio starts at ``join``."""
        row = self.files(key)[0]
        rate = int(row.sample_rate or self.rate())
        return Continuation(
            file=row.name,
            join=join,
            prompt=round(float(self.result(key).get("prompt_seconds") or 0.0) * rate),
            length=round((row.duration_s or 0.0) * rate),
        )

    def stems_of(self, key: str) -> dict[str, str]:
        """The stem files a separation step wrote, by stem."""
        return {str(stem): str(name) for stem, name in dict(self.result(key).get("stems") or {}).items()}

    def transition_stems(self, i: int) -> Stems | None:
        """Transition i's stems, laid like its sides (None when the crossfade is not stem-aware)."""
        if not self.params.use_stem_aware_crossfade:
            return None
        transition = self.transition(i)
        pair = transition.pair
        if pair is not None:
            both = self.stems_of(separation_keys(i, transition)[0][0])
            incoming_length = pair.length - pair.split
            return Stems(
                outgoing=LaidStems(files=both, start=pair.outgoing_start, length=pair.split),
                incoming=LaidStems(files=both, start=pair.incoming_start, offset=pair.split, length=incoming_length),
            )
        (out_key, outgoing), (in_key, incoming) = separation_keys(i, transition)
        return Stems(
            outgoing=LaidStems(files=self.stems_of(out_key), start=outgoing.start, length=outgoing.length),
            incoming=LaidStems(files=self.stems_of(in_key), start=incoming.start, length=incoming.length),
        )

    def windows_of(self, key: str) -> list[Window]:
        return WindowsResult.model_validate(self.result(key)).windows
