"""How a soundtrack advances: from its rows alone, which steps come next (see soundstage_pipeline.advance).

The stages, each a set of steps (child jobs) on the pool that owns the work:

- **generating** (per scene, in order): ``scene:k`` generates scene k on the MusicGen pool, continuing
  the previous scene from its handoff; with it ``tail:k-1`` continues the same audio under the previous
  scene's prompt (its sound through the crossfade: the two are decoded side by side in one batch).
  Then ``prepare:k`` (CPU) tempo-matches scene k and places the cut into it. The next scene continues
  the prepared (tempo-matched) scene. ``extend`` tops the last scene up if a speed-up left it short.
- **separating** (stem-aware crossfades): ``separate:i:out`` and ``separate:i:in`` split both sides of
  every transition into stems on the Demucs pool.
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

from soundstage.db import Family, Job, JobFile, NewChild, NewFile
from soundstage.pools import Queue
from soundstage.schemas import (
    GenerateJobParams,
    JobKind,
    JobStatus,
    SceneResult,
    SeparateJobParams,
    SoundtrackJobParams,
    TransitionAttempt,
    TransitionResult,
)
from soundstage.settings import Settings
from soundstage_pipeline.advance import Completion, Decision
from soundstage_pipeline.soundtrack.models import (
    Candidate,
    Continuation,
    CrossfadeParams,
    FinalizeParams,
    Prepared,
    PrepareParams,
    RescoreParams,
    Stems,
    Window,
    WindowsResult,
)
from soundstage_pipeline.soundtrack.plan import Scene, SoundtrackPlan, derive_seed, scene_prompt
from soundstage_pipeline.soundtrack.prepare import MATERIAL_SECONDS
from soundstage_pipeline.soundtrack.timeline import EDGE_RADIUS_SECONDS

# Shares of the soundtrack's progress (percent) each stage covers.
GENERATING = (0.0, 80.0)
SEPARATING = (80.0, 86.0)
CROSSFADING = (86.0, 89.0)
REGENERATING = (89.0, 95.0)
FINALIZING = (95.0, 97.0)
STEMS = (97.0, 100.0)
SPLICE_SECONDS = 1.0
"""A regenerated opening hands back to the scene as it was with a crossfade this long (at most the
soundtrack's own crossfade)."""
MIN_OPENING_SECONDS = 0.5
"""A transition is regenerated only when the later scene has at least this much room after the crossfade."""
TRANSITION_STEMS = 4
PROMPT_MAX = 2000
RANDOM_WEIGHTS_WARNING = (
    "Generated with random weights ({model}): for tests and benchmarks only; the audio is noise, not music."
)


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


def advance_soundtrack(family: Family, settings: Settings) -> Decision:
    parent = family.parent
    assert parent is not None  # noqa: S101 - the caller checks it
    params = SoundtrackJobParams.model_validate(parent.params)
    return _Soundtrack(family, params, plan_of(params)).advance()


@dataclass
class _Soundtrack:
    family: Family
    params: SoundtrackJobParams
    plan: SoundtrackPlan

    # ------------------------------------------------------------------ stages
    def advance(self) -> Decision:  # noqa: PLR0911 - one return per stage, in order
        count = self.plan.count
        for k in range(count):
            if not self._done(f"prepare:{k}"):
                return self._generating(k)
        last = self._prepared(count - 1)
        if last.shortfall > 0 and not self._done("extend"):
            return self._extend(last)
        if count > 1 and self.params.use_stem_aware_crossfade and not self._separated():
            return self._wait("separating", SEPARATING)
        if count > 1 and not self._done("crossfade"):
            return self._crossfade()
        windows = self._windows()
        if windows is None:
            return Decision()  # the quality loop runs (it showed where it is)
        if not self._done("finalize"):
            return self._finalize(windows)
        if self.params.stems is not None and not self._done("stems"):
            return self._stems()
        return Decision(completion=self._completion(windows))

    def _generating(self, k: int) -> Decision:
        low, high = self._scene_span(k)
        middle = low + 0.9 * (high - low)  # generating the scene, then preparing it
        current = k + 1
        if self._step(f"scene:{k}") is None:
            previous = self._prepared(k - 1) if k else None
            self._add(
                f"scene:{k}", JobKind.GENERATE, self._generate_params(k, previous), "generating", (low, middle), current
            )
            if previous is not None:
                tail = self._generate_params(k - 1, previous, tail=True)
                self._add(f"tail:{k - 1}", JobKind.GENERATE, tail, "generating", (low, middle), current)
        elif self._done(f"scene:{k}") and (k == 0 or self._done(f"tail:{k - 1}")):
            self._add(f"prepare:{k}", JobKind.MIX, self._prepare_params(k), "generating", (middle, high), current)
        return self._wait("generating", (low, high), current)

    def _extend(self, last: Prepared) -> Decision:
        params = self._continuation_params(
            last.index, last, join=last.track.end, seconds=last.shortfall / last.rate + 0.1
        )
        self._add("extend", JobKind.GENERATE, params, "generating", GENERATING, self.plan.count)
        return self._wait("generating", GENERATING, self.plan.count)

    def _separated(self) -> bool:
        """Whether both sides of every transition are separated; creates the separations still missing."""
        done = True
        for i in range(self.plan.transitions):
            transition = self._transition(i)
            for side, track in (("out", transition.outgoing), ("in", transition.incoming)):
                key = f"separate:{i}:{side}"
                if self._step(key) is None:
                    self._add(key, JobKind.SEPARATE, self._separate_params(track.file, track.length), "separating",
                              SEPARATING, self.plan.count)  # fmt: skip
                done = done and self._done(key)
        return done

    def _crossfade(self) -> Decision:
        transitions = [self._transition(i) for i in range(self.plan.transitions)]
        stems = [self._transition_stems(i) for i in range(self.plan.transitions)]
        params = CrossfadeParams(
            rate=self._rate(), transitions=transitions, stems=stems, score=self.params.use_quality_loop
        )
        self._add("crossfade", JobKind.MIX, params.model_dump(mode="json"), "crossfading", CROSSFADING, self.plan.count)
        return self._wait("crossfading", CROSSFADING)

    def _windows(self) -> list[list[Window]] | None:
        """Every attempt of every transition once the quality loop is over (None while it runs: the next
        steps it needs are created)."""
        if self.plan.transitions == 0:
            return []
        attempts = [[window] for window in self._windows_of("crossfade")]
        if not self.params.use_quality_loop:
            return attempts
        for round_ in range(1, self.params.max_regen_attempts + 1):
            failing = [i for i, tried in enumerate(attempts) if not _best(tried).passed and self._room(i) is not None]
            if not failing:
                break
            if not self._done(f"rescore:{round_}"):
                self._regenerate(round_, failing)
                return None
            for window in self._windows_of(f"rescore:{round_}"):
                attempts[window.index].append(window)
        return attempts

    def _regenerate(self, round_: int, failing: list[int]) -> None:
        span = _round_span(round_, self.params.max_regen_attempts)
        ready = True
        for i in failing:
            key = f"regenerate:{i}:{round_}"
            if self._step(key) is None:
                self._add(key, JobKind.GENERATE, self._regenerate_params(i, round_), "regenerating", span, i + 2)
            ready = ready and self._done(key)
            if self.params.use_stem_aware_crossfade and self._done(key):
                opening = self._continuation(key, self._prepared(i).handoff or 0)
                stems_key = f"separate:{i}:opening:{round_}"
                if self._step(stems_key) is None:
                    self._add(stems_key, JobKind.SEPARATE, self._separate_params(opening.file, opening.length),
                              "regenerating", span, i + 2)  # fmt: skip
                ready = ready and self._done(stems_key)
        if ready:
            candidates = [self._candidate(i, round_) for i in failing]
            params = RescoreParams(round=round_, rate=self._rate(), candidates=candidates)
            self._add(f"rescore:{round_}", JobKind.MIX, params.model_dump(mode="json"), "scoring", span, failing[0] + 2)
        self._show("regenerating", span, failing[0] + 2)

    def _finalize(self, attempts: list[list[Window]]) -> Decision:
        rate = self._rate()
        count = self.plan.count
        extend = self._step("extend")
        params = FinalizeParams(
            rate=rate,
            total=round(self.plan.total * rate),
            scenes=[self._prepared(k).track for k in range(count)],
            tails=[self._continuation(f"tail:{k}", self._prepared(k).handoff or 0) for k in range(count - 1)],
            extension=self._continuation("extend", self._prepared(count - 1).track.end) if extend else None,
            windows=[_best(tried) for tried in attempts],
            output=f"{self._parent.id}_soundtrack.{self.params.format.value}",
            format=self.params.format.value,
            sample_rate=self.params.sample_rate,
            loudness_target=self.params.loudness_target,
            total_seconds=self.plan.total,
        )
        span = FINALIZING if self.params.stems is not None else (FINALIZING[0], STEMS[1] - 1)
        self._add("finalize", JobKind.MIX, params.model_dump(mode="json"), "finalizing", span, count)
        return self._wait("finalizing", span)

    def _stems(self) -> Decision:
        soundtrack = self._files("finalize")[0]
        params = self._separate_params(
            soundtrack.name,
            round((soundtrack.duration_s or 0.0) * (soundtrack.sample_rate or 1)),
            rate=soundtrack.sample_rate,
            channels=soundtrack.channels,
            stems=self.params.stems or TRANSITION_STEMS,
            prefix=self._parent.id,
        )
        self._add("stems", JobKind.SEPARATE, params, "separating", STEMS, self.plan.count)
        return self._wait("separating", STEMS)

    def _completion(self, attempts: list[list[Window]]) -> Completion:
        files = [_new_file(row) for row in self._files("finalize")]
        stems: dict[str, str] | None = None
        if self.params.stems is not None:
            stem_rows = self._files("stems")
            files += [_new_file(row) for row in stem_rows]
            stems = dict(self._result("stems").get("stems", {}))
        scenes_made = [self._result(f"scene:{k}") for k in range(self.plan.count)]
        random_weights = any(bool(made.get("random_weights")) for made in scenes_made)
        result: dict[str, Any] = {
            "seed": self.params.seed,
            "model": self.params.model,
            "random_weights": random_weights,
            "warning": RANDOM_WEIGHTS_WARNING.format(model=self.params.model) if random_weights else None,
            "device": scenes_made[0].get("device"),
            "compute_seconds": round(
                sum(
                    float(child.result.get("compute_seconds") or 0.0)
                    for child in self.family.children.values()
                    if child.result
                ),
                3,
            ),
            "stems": stems,
            "scenes": [scene.model_dump(mode="json") for scene in self._scene_results()],
            "transitions": [t.model_dump(mode="json") for t in self._transition_results(attempts)],
        }
        return Completion(files=files, result=result, audio_seconds=self.plan.total)

    # ------------------------------------------------------------- step params
    def _generate_params(self, k: int, previous: Prepared | None, *, tail: bool = False) -> dict[str, Any]:
        """Scene k's generation (continuing the previous scene), or with ``tail`` scene k's tail."""
        if previous is None:
            return self._text_params(self.plan.scenes[k], self.plan.generated_end(0), melody_start=0.0)
        join = previous.handoff or previous.track.end
        if tail:
            seconds = max(self.plan.tail_length(k), 1.0)
            return self._continuation_params(
                k, previous, join=join, seconds=seconds, seed=derive_seed(self.params.seed, "tail", k)
            )
        seconds = (round(self.plan.generated_end(k) * previous.rate) - join) / previous.rate
        # A little more than the timeline needs: the cut into the scene may read it a few samples later.
        return self._continuation_params(k, previous, join=join, seconds=seconds + 2 * EDGE_RADIUS_SECONDS)

    def _continuation_params(
        self,
        k: int,
        previous: Prepared,
        *,
        join: int,
        seconds: float,
        seed: int | None = None,
        prompt_of: int | None = None,
    ) -> dict[str, Any]:
        """A generation of scene ``prompt_of`` (default ``k``) continuing the prepared scene ``previous`` at
        timeline sample ``join``, conditioned on its last SOUNDTRACK_CONTEXT_SECONDS."""
        rate, track = previous.rate, previous.track
        first = max(track.start, join - round(self.params.context_seconds * rate))
        scene = self.plan.scenes[k if prompt_of is None else prompt_of]
        params = self._text_params(scene, seconds, melody_start=join / rate, seed=seed)
        params.update(
            audio_prompt=track.file,
            audio_prompt_start=(first - track.start) / rate,
            audio_prompt_end=(join - track.start) / rate,
            include_prompt=True,
        )
        return GenerateJobParams.model_validate(params).model_dump(mode="json", exclude={"model"})

    def _text_params(
        self, scene: Scene, seconds: float, *, melody_start: float, seed: int | None = None
    ) -> dict[str, Any]:
        p = self.params
        return GenerateJobParams.model_validate(
            {
                "prompt": scene.prompt[:PROMPT_MAX],  # what job listings show; the model gets full_prompt
                "full_prompt": scene.prompt,
                "duration": max(seconds, 1.0),
                "temperature": p.temperature,
                "top_k": p.top_k,
                "top_p": p.top_p,
                "guidance_scale": p.guidance_scale,
                "seed": scene.seed if seed is None else seed,
                "melody_audio": p.melody_audio,
                "melody_start": melody_start,
            }
        ).model_dump(mode="json", exclude={"model"})

    def _prepare_params(self, k: int) -> dict[str, Any]:
        previous = self._prepared(k - 1) if k else None
        rate = self._rate()
        join = (previous.handoff or previous.track.end) if previous else 0
        last = k == self.plan.count - 1
        params = PrepareParams(
            index=k,
            last=last,
            rate=rate,
            scene=self._continuation(f"scene:{k}", join),
            previous=previous,
            tail=self._continuation(f"tail:{k - 1}", join) if previous else None,
            boundary=round(self.plan.boundary(k - 1) * rate) if k else None,
            snap=round(self.plan.snap(k - 1) * rate) if k else 0,
            crossfade=round(self.plan.crossfade * rate),
            handoff=None if last else round(self.plan.handoff(k) * rate),
            total=round(self.plan.total * rate),
            beat_aligned=self.params.use_beat_aligned_crossfade,
            tempo_threshold=self.params.tempo_threshold,
            max_tempo_stretch=self.params.max_tempo_stretch,
        )
        return params.model_dump(mode="json")

    def _separate_params(
        self,
        name: str,
        length: int,
        *,
        rate: int | None = None,
        channels: int | None = None,
        stems: int = TRANSITION_STEMS,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        rate = rate or self._rate()
        params = SeparateJobParams(
            model=self.params.demucs_model,
            stems=stems,  # type: ignore[arg-type]
            format=self.params.format if prefix else "wav",  # type: ignore[arg-type]
            input_audio=name,
            input_sample_rate=rate,
            input_channels=channels or self._prepared(0).channels,
            input_seconds=length / rate,
            output_prefix=prefix,
        )
        return params.model_dump(mode="json")

    def _room(self, i: int) -> tuple[int, int] | None:
        """Where a regenerated opening after transition i would hand back to the scene as it was, and how
        long that handover is; None when the later scene has no room for one."""
        rate = self._rate()
        transition = self._transition(i)
        length = round(min(SPLICE_SECONDS, self.plan.crossfade) * rate)
        incoming = self._prepared(i + 1)
        # The scene as it was must still be what plays where the opening hands back to it: before its own
        # handoff (after it, its tail plays) and before the next transition.
        limit = incoming.handoff or incoming.track.end
        if i + 1 < self.plan.transitions:
            limit = min(limit, self._transition(i + 1).start)
        splice = min(transition.end + round(MATERIAL_SECONDS * rate), limit - length)
        if splice < transition.end + round(MIN_OPENING_SECONDS * rate):
            return None
        return splice, length

    def _regenerate_params(self, i: int, round_: int) -> dict[str, Any]:
        outgoing = self._prepared(i)
        room = self._room(i)
        assert room is not None  # noqa: S101 - only transitions with room are regenerated
        join = outgoing.handoff or outgoing.track.end
        seconds = (room[0] + room[1] - join) / outgoing.rate
        seed = derive_seed(self.params.seed, "regenerate", i, round_)
        return self._continuation_params(i, outgoing, join=join, seconds=seconds, seed=seed, prompt_of=i + 1)

    def _candidate(self, i: int, round_: int) -> Candidate:
        room = self._room(i)
        assert room is not None  # noqa: S101 - only transitions with room are regenerated
        stems = None
        if self.params.use_stem_aware_crossfade:
            stems = Stems(
                outgoing=self._stems_of(f"separate:{i}:out"), incoming=self._stems_of(f"separate:{i}:opening:{round_}")
            )
        key = f"regenerate:{i}:{round_}"
        return Candidate(
            transition=self._transition(i),
            attempt=round_,
            seed=int(self._step_params(key)["seed"]),
            opening=self._continuation(key, self._prepared(i).handoff or 0),
            incoming=self._prepared(i + 1).track,
            splice=room[0],
            splice_length=room[1],
            stems=stems,
        )

    # ------------------------------------------------------------------ results
    def _scene_results(self) -> list[SceneResult]:
        rate = self._rate()
        results = []
        for k, scene in enumerate(self.plan.scenes):
            prepared = self._prepared(k)
            start = self._transition(k - 1).centre if k else 0
            end = self._transition(k).centre if k < self.plan.transitions else round(self.plan.total * rate)
            results.append(
                SceneResult(
                    index=k + 1,
                    prompt=scene.prompt,
                    seed=scene.seed,
                    start=start / rate,
                    end=end / rate,
                    tempo=round(prepared.tempo / prepared.stretch, 3) if prepared.tempo else None,
                    stretch=prepared.stretch,
                )
            )
        return results

    def _transition_results(self, attempts: list[list[Window]]) -> list[TransitionResult]:
        rate = self._rate()
        results = []
        for i, tried in enumerate(attempts):
            transition, chosen = self._transition(i), _best(tried)
            results.append(
                TransitionResult(
                    index=i,
                    from_scene=i + 1,
                    to_scene=i + 2,
                    boundary=transition.boundary / rate,
                    cut=transition.centre / rate,
                    start=transition.start / rate,
                    end=transition.end / rate,
                    incoming_offset=transition.incoming_shift / rate,
                    beat=transition.beat / rate if transition.beat is not None else None,
                    tempo_from=transition.tempo_from,
                    tempo_to=transition.tempo_to,
                    stem_aware=self.params.use_stem_aware_crossfade,
                    scores=chosen.scores,
                    passed=chosen.passed,
                    attempts=[
                        TransitionAttempt(attempt=w.attempt, seed=w.seed, scores=w.scores or {}, passed=bool(w.passed))
                        for w in tried
                        if w.scores is not None
                    ],
                    chosen_attempt=chosen.attempt,
                )
            )
        return results

    # ---------------------------------------------------------------- plumbing
    @property
    def _parent(self) -> Job:
        parent = self.family.parent
        assert parent is not None  # noqa: S101 - the caller checks it
        return parent

    def _step(self, key: str) -> Job | None:
        return self.family.children.get(key)

    def _done(self, key: str) -> bool:
        step = self._step(key)
        return step is not None and step.status == JobStatus.COMPLETED.value

    def _result(self, key: str) -> dict[str, Any]:
        step = self._step(key)
        return dict(step.result or {}) if step is not None else {}

    def _step_params(self, key: str) -> dict[str, Any]:
        step = self._step(key)
        return dict(step.params) if step is not None else {}

    def _files(self, key: str) -> list[JobFile]:
        step = self._step(key)
        return list(step.files) if step is not None else []

    def _prepared(self, k: int) -> Prepared:
        return Prepared.model_validate(self._result(f"prepare:{k}"))

    def _transition(self, i: int) -> Any:
        transition = self._prepared(i + 1).transition
        if transition is None:
            raise RuntimeError(f"scene {i + 2} was prepared without its transition")
        return transition

    def _rate(self) -> int:
        rate = self._files("scene:0")[0].sample_rate
        if not rate:
            raise RuntimeError("the first scene's file has no sample rate")
        return int(rate)

    def _continuation(self, key: str, join: int) -> Continuation:
        """The output of generate step ``key`` as a continuation whose new audio starts at ``join``."""
        row = self._files(key)[0]
        rate = int(row.sample_rate or self._rate())
        return Continuation(
            file=row.name,
            join=join,
            prompt=round(float(self._result(key).get("prompt_seconds") or 0.0) * rate),
            length=round((row.duration_s or 0.0) * rate),
        )

    def _stems_of(self, key: str) -> dict[str, str]:
        return {str(stem): str(name) for stem, name in dict(self._result(key).get("stems") or {}).items()}

    def _transition_stems(self, i: int) -> Stems | None:
        if not self.params.use_stem_aware_crossfade:
            return None
        return Stems(outgoing=self._stems_of(f"separate:{i}:out"), incoming=self._stems_of(f"separate:{i}:in"))

    def _windows_of(self, key: str) -> list[Window]:
        return WindowsResult.model_validate(self._result(key)).windows

    def _scene_span(self, k: int) -> tuple[float, float]:
        low, high = GENERATING
        share = (high - low) / self.plan.total
        return low + share * self.plan.boundary(k - 1), low + share * self.plan.boundary(k)

    def _add(  # noqa: PLR0917 - a step is all of these
        self, key: str, kind: JobKind, params: dict[str, Any], stage: str, span: tuple[float, float], scene: int
    ) -> None:
        queue = {JobKind.GENERATE: Queue.MUSICGEN, JobKind.SEPARATE: Queue.DEMUCS, JobKind.MIX: Queue.PIPELINE}[kind]
        model = {JobKind.GENERATE: self.params.model, JobKind.SEPARATE: self.params.demucs_model}.get(kind)
        self.family.add_child(
            NewChild(
                step=key,
                kind=kind.value,
                queue=queue.value,
                model=model,
                params=params,
                stage=stage,
                pipeline={"span": list(span), "detail": self._detail(stage, scene)},
            )
        )

    def _detail(self, stage: str, scene: int | None) -> dict[str, Any]:
        return {"current_scene": scene, "total_scenes": self.plan.count, "stage": stage, "message": stage}

    def _show(self, stage: str, span: tuple[float, float], scene: int | None = None) -> None:
        self.family.show(stage=stage, detail=self._detail(stage, scene or self.plan.count), progress=span[0])

    def _wait(self, stage: str, span: tuple[float, float], scene: int | None = None) -> Decision:
        self._show(stage, span, scene)
        return Decision()


def _best(attempts: list[Window]) -> Window:
    """The attempt kept: every measure met first, then the lowest badness, then the earliest."""
    return min(attempts, key=lambda w: (not w.passed, w.badness if w.badness is not None else 0.0, w.attempt))


def _round_span(round_: int, rounds: int) -> tuple[float, float]:
    low, high = REGENERATING
    step = (high - low) / max(rounds, 1)
    return low + step * (round_ - 1), low + step * round_


def _new_file(row: JobFile) -> NewFile:
    return NewFile(
        name=row.name,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        duration_s=row.duration_s,
        sample_rate=row.sample_rate,
        channels=row.channels,
    )
