"""A soundtrack as one advance sees it: its params, its plan and its steps' rows, read by step name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soundstage.db import Family, Job, JobFile
from soundstage.schemas import JobStatus, SoundtrackJobParams
from soundstage_pipeline.soundtrack.models import Continuation, Prepared, Stems, Transition, Window, WindowsResult
from soundstage_pipeline.soundtrack.plan import Scene, SoundtrackPlan, derive_seed, scene_prompt


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
        if not self.params.use_stem_aware_crossfade:
            return None
        return Stems(outgoing=self.stems_of(f"separate:{i}:out"), incoming=self.stems_of(f"separate:{i}:in"))

    def windows_of(self, key: str) -> list[Window]:
        return WindowsResult.model_validate(self.result(key)).windows
