"""What a finished soundtrack's job says: its files (the steps' that became its own) and its result."""

from __future__ import annotations

from typing import Any

from soundstage.db import JobFile, NewFile
from soundstage.schemas import GENERATED_WITH_RANDOM_WEIGHTS, SceneResult, TransitionAttempt, TransitionResult
from soundstage_pipeline.decisions import Completion
from soundstage_pipeline.soundtrack.models import Window
from soundstage_pipeline.soundtrack.rows import SoundtrackRows


def best(attempts: list[Window]) -> Window:
    """The attempt kept: every measure met first, then the lowest badness, then the earliest."""
    return min(attempts, key=lambda w: (not w.passed, w.badness if w.badness is not None else 0.0, w.attempt))


def completion(rows: SoundtrackRows, attempts: list[list[Window]]) -> Completion:
    """The soundtrack's file, its stems if asked, and the result: seed, model, the scenes and transitions."""
    params = rows.params
    files = [_new_file(row) for row in rows.files("finalize")]
    stems: dict[str, str] | None = None
    if params.stems is not None:
        files += [_new_file(row) for row in rows.files("stems")]
        stems = rows.stems_of("stems")
    scenes_made = [rows.result(f"scene:{k}") for k in range(rows.plan.count)]
    random_weights = any(bool(made.get("random_weights")) for made in scenes_made)
    compute = sum(
        float(child.result.get("compute_seconds") or 0.0) for child in rows.family.children.values() if child.result
    )
    result: dict[str, Any] = {
        "seed": params.seed,
        "model": params.model,
        "random_weights": random_weights,
        "warning": GENERATED_WITH_RANDOM_WEIGHTS.format(model=params.model) if random_weights else None,
        "device": scenes_made[0].get("device"),
        "compute_seconds": round(compute, 3),
        "stems": stems,
        "scenes": [scene.model_dump(mode="json") for scene in scene_results(rows)],
        "transitions": [transition.model_dump(mode="json") for transition in transition_results(rows, attempts)],
    }
    return Completion(files=files, result=result, audio_seconds=rows.plan.total)


def scene_results(rows: SoundtrackRows) -> list[SceneResult]:
    rate, plan = rows.rate(), rows.plan
    results = []
    for k, scene in enumerate(plan.scenes):
        prepared = rows.prepared(k)
        start = rows.transition(k - 1).centre if k else 0
        end = rows.transition(k).centre if k < plan.transitions else round(plan.total * rate)
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


def transition_results(rows: SoundtrackRows, attempts: list[list[Window]]) -> list[TransitionResult]:
    rate = rows.rate()
    results = []
    for i, tried in enumerate(attempts):
        transition, chosen = rows.transition(i), best(tried)
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
                stem_aware=rows.params.use_stem_aware_crossfade,
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


def _new_file(row: JobFile) -> NewFile:
    return NewFile(
        name=row.name,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        duration_s=row.duration_s,
        sample_rate=row.sample_rate,
        channels=row.channels,
    )
