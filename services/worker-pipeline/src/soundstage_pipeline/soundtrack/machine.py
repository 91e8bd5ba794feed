"""How a soundtrack advances: from its rows alone, which steps come next (see soundstage_pipeline.advance).

The stages, each a set of steps (child jobs) on the pool that owns the work:

- **generating** (per scene, in order): ``scene:k`` generates scene k on the MusicGen pool, continuing
  the previous scene from its handoff; with it ``tail:k-1`` continues the same audio under the previous
  scene's prompt (its sound through the crossfade: the two are decoded side by side in one batch).
  Then ``prepare:k`` (CPU) tempo-matches scene k and places the cut into it. The next scene continues
  the prepared (tempo-matched) scene. ``extend`` tops the last scene up if a speed-up left it short.
- **separating** (stem-aware crossfades): ``separate:i`` splits both sides of every transition around its
  crossfade (its Pair: one file, one Demucs segment for a crossfade of up to about 3 s) into stems on the
  Demucs pool.
- **crossfading** and **scoring**: ``crossfade`` (CPU) crossfades and scores every transition.
- **regenerating** (the quality loop, rounds r = 1..MAX_REGEN_ATTEMPTS): every failing transition gets
  ``regenerate:i:r``, the later scene's opening generated again with a new seed (MusicGen), separated
  (``separate:i:opening:r``) if stem-aware, and ``rescore:r`` (CPU) crossfades and scores them; the best
  attempt of each transition is kept.
- **finalizing**: ``finalize`` (CPU) puts the soundtrack together, normalises and encodes it; with
  ``stems``, ``stems`` separates it on the Demucs pool (files named after the soundtrack's job).

Every step is created once (its name is unique under the soundtrack) with everything it needs in its
params, from the plan (soundtrack.plan) and the results of the steps before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soundstage.db import Family, NewChild
from soundstage.pools import pool_of_kind
from soundstage.schemas import JobKind, SoundtrackJobParams
from soundstage.settings import Settings
from soundstage_pipeline.decisions import Decision
from soundstage_pipeline.soundtrack import step_params
from soundstage_pipeline.soundtrack.models import CrossfadeParams, FinalizeParams, Prepared, RescoreParams, Window
from soundstage_pipeline.soundtrack.results import best, completion
from soundstage_pipeline.soundtrack.rows import SoundtrackRows, plan_of, separation_keys

__all__ = ["advance_soundtrack", "plan_of"]

# Shares of the soundtrack's progress (percent) each stage covers.
GENERATING = (0.0, 80.0)
SEPARATING = (80.0, 86.0)
CROSSFADING = (86.0, 89.0)
REGENERATING = (89.0, 95.0)
FINALIZING = (95.0, 97.0)
STEMS = (97.0, 100.0)


def advance_soundtrack(family: Family, settings: Settings) -> Decision:
    parent = family.parent
    if parent is None:
        raise RuntimeError("no soundtrack to advance")
    params = SoundtrackJobParams.model_validate(parent.params)
    return _Soundtrack(SoundtrackRows(family, params, plan_of(params))).advance()


@dataclass
class _Soundtrack:
    rows: SoundtrackRows

    @property
    def params(self) -> SoundtrackJobParams:
        return self.rows.params

    # ------------------------------------------------------------------ stages
    def advance(self) -> Decision:  # noqa: PLR0911 - one return per stage, in order
        rows, count = self.rows, self.rows.plan.count
        for k in range(count):
            if not rows.done(f"prepare:{k}"):
                return self._generating(k)
        last = rows.prepared(count - 1)
        if last.shortfall > 0 and not rows.done("extend"):
            return self._extend(last)
        if count > 1 and self.params.use_stem_aware_crossfade and not self._separated():
            return self._wait("separating", SEPARATING)
        if count > 1 and not rows.done("crossfade"):
            return self._crossfade()
        windows = self._windows()
        if windows is None:
            return Decision()  # the quality loop runs (it showed where it is)
        if not rows.done("finalize"):
            return self._finalize(windows)
        if self.params.stems is not None and not rows.done("stems"):
            return self._stems()
        return Decision(completion=completion(rows, windows))

    def _generating(self, k: int) -> Decision:
        rows = self.rows
        low, high = self._scene_span(k)
        middle = low + 0.9 * (high - low)  # generating the scene, then preparing it
        current = k + 1
        if rows.step(f"scene:{k}") is None:
            previous = rows.prepared(k - 1) if k else None
            scene = step_params.generate_params(rows, k, previous)
            self._add(f"scene:{k}", JobKind.GENERATE, scene, "generating", (low, middle), current)
            if previous is not None:
                tail = step_params.generate_params(rows, k - 1, previous, tail=True)
                self._add(f"tail:{k - 1}", JobKind.GENERATE, tail, "generating", (low, middle), current)
        elif rows.done(f"scene:{k}") and (k == 0 or rows.done(f"tail:{k - 1}")):
            prepare = step_params.prepare_params(rows, k)
            self._add(f"prepare:{k}", JobKind.MIX, prepare, "generating", (middle, high), current)
        return self._wait("generating", (low, high), current)

    def _extend(self, last: Prepared) -> Decision:
        seconds = last.shortfall / last.rate + 0.1
        params = step_params.continuation_params(self.rows, last.index, last, join=last.track.end, seconds=seconds)
        self._add("extend", JobKind.GENERATE, params, "generating", GENERATING, self.rows.plan.count)
        return self._wait("generating", GENERATING, self.rows.plan.count)

    def _separated(self) -> bool:
        """Whether both sides of every transition are separated (in one Demucs job per transition: its Pair);
        creates the separations still missing."""
        rows, done = self.rows, True
        for i in range(rows.plan.transitions):
            for key, track in separation_keys(i, rows.transition(i)):
                if rows.step(key) is None:
                    params = step_params.separate_params(rows, track.file, track.length)
                    self._add(key, JobKind.SEPARATE, params, "separating", SEPARATING, rows.plan.count)
                done = done and rows.done(key)
        return done

    def _crossfade(self) -> Decision:
        rows = self.rows
        indexes = range(rows.plan.transitions)
        params = CrossfadeParams(
            rate=rows.rate(),
            transitions=[rows.transition(i) for i in indexes],
            stems=[rows.transition_stems(i) for i in indexes],
            score=self.params.use_quality_loop,
        )
        self._add("crossfade", JobKind.MIX, params.model_dump(mode="json"), "crossfading", CROSSFADING, rows.plan.count)
        return self._wait("crossfading", CROSSFADING)

    def _windows(self) -> list[list[Window]] | None:
        """Every attempt of every transition once the quality loop is over (None while it runs: the next
        steps it needs are created)."""
        rows = self.rows
        if rows.plan.transitions == 0:
            return []
        attempts = [[window] for window in rows.windows_of("crossfade")]
        if not self.params.use_quality_loop:
            return attempts
        for round_ in range(1, self.params.max_regen_attempts + 1):
            failing = [
                i
                for i, tried in enumerate(attempts)
                if not best(tried).passed and step_params.room(rows, i) is not None
            ]
            if not failing:
                break
            if not rows.done(f"rescore:{round_}"):
                self._regenerate(round_, failing)
                return None
            for window in rows.windows_of(f"rescore:{round_}"):
                attempts[window.index].append(window)
        return attempts

    def _regenerate(self, round_: int, failing: list[int]) -> None:
        rows = self.rows
        span = _round_span(round_, self.params.max_regen_attempts)
        ready = True
        for i in failing:
            key = f"regenerate:{i}:{round_}"
            if rows.step(key) is None:
                params = step_params.regenerate_params(rows, i, round_)
                self._add(key, JobKind.GENERATE, params, "regenerating", span, i + 2)
            ready = ready and rows.done(key)
            if self.params.use_stem_aware_crossfade and rows.done(key):
                opening = rows.continuation(key, rows.prepared(i).handoff or 0)
                stems_key = f"separate:{i}:opening:{round_}"
                if rows.step(stems_key) is None:
                    params = step_params.separate_params(rows, opening.file, opening.length)
                    self._add(stems_key, JobKind.SEPARATE, params, "regenerating", span, i + 2)
                ready = ready and rows.done(stems_key)
        if ready:
            candidates = [step_params.candidate(rows, i, round_) for i in failing]
            params = RescoreParams(round=round_, rate=rows.rate(), candidates=candidates).model_dump(mode="json")
            self._add(f"rescore:{round_}", JobKind.MIX, params, "scoring", span, failing[0] + 2)
        self._show("regenerating", span, failing[0] + 2)

    def _finalize(self, attempts: list[list[Window]]) -> Decision:
        rows = self.rows
        rate, count = rows.rate(), rows.plan.count
        params = FinalizeParams(
            rate=rate,
            total=round(rows.plan.total * rate),
            scenes=[rows.prepared(k).track for k in range(count)],
            tails=[rows.continuation(f"tail:{k}", rows.prepared(k).handoff or 0) for k in range(count - 1)],
            extension=rows.continuation("extend", rows.prepared(count - 1).track.end) if rows.step("extend") else None,
            windows=[best(tried) for tried in attempts],
            output=f"{rows.parent.id}_soundtrack.{self.params.format.value}",
            format=self.params.format.value,
            sample_rate=self.params.sample_rate,
            loudness_target=self.params.loudness_target,
            total_seconds=rows.plan.total,
        )
        span = FINALIZING if self.params.stems is not None else (FINALIZING[0], STEMS[1] - 1)
        self._add("finalize", JobKind.MIX, params.model_dump(mode="json"), "finalizing", span, count)
        return self._wait("finalizing", span)

    def _stems(self) -> Decision:
        rows = self.rows
        soundtrack = rows.files("finalize")[0]
        params = step_params.separate_params(
            rows,
            soundtrack.name,
            round((soundtrack.duration_s or 0.0) * (soundtrack.sample_rate or 1)),
            rate=soundtrack.sample_rate,
            channels=soundtrack.channels,
            stems=self.params.stems or step_params.TRANSITION_STEMS,
            prefix=rows.parent.id,
        )
        self._add("stems", JobKind.SEPARATE, params, "separating", STEMS, rows.plan.count)
        return self._wait("separating", STEMS)

    # ---------------------------------------------------------------- plumbing
    def _scene_span(self, k: int) -> tuple[float, float]:
        plan = self.rows.plan
        low, high = GENERATING
        share = (high - low) / plan.total
        return low + share * plan.boundary(k - 1), low + share * plan.boundary(k)

    def _add(  # noqa: PLR0917 - a step is all of these
        self, key: str, kind: JobKind, params: dict[str, Any], stage: str, span: tuple[float, float], scene: int
    ) -> None:
        """Create step ``key`` (found, not created again, when it exists): its share ``span`` of the
        soundtrack's progress, and the detail the soundtrack shows while it runs."""
        model = {JobKind.GENERATE: self.params.model, JobKind.SEPARATE: self.params.demucs_model}.get(kind)
        self.rows.family.add_child(
            NewChild(
                step=key,
                kind=kind.value,
                queue=pool_of_kind(kind).queue.value,
                model=model,
                params=params,
                stage=stage,
                pipeline={"span": list(span), "detail": self._detail(stage, scene)},
            )
        )

    def _detail(self, stage: str, scene: int | None) -> dict[str, Any]:
        return {"current_scene": scene, "total_scenes": self.rows.plan.count, "stage": stage, "message": stage}

    def _show(self, stage: str, span: tuple[float, float], scene: int | None = None) -> None:
        self.rows.family.show(stage=stage, detail=self._detail(stage, scene or self.rows.plan.count), progress=span[0])

    def _wait(self, stage: str, span: tuple[float, float], scene: int | None = None) -> Decision:
        self._show(stage, span, scene)
        return Decision()


def _round_span(round_: int, rounds: int) -> tuple[float, float]:
    low, high = REGENERATING
    step = (high - low) / max(rounds, 1)
    return low + step * (round_ - 1), low + step * round_
