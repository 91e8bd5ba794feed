"""The soundtrack's timeline plan: boundaries, snap ranges that never let two crossfades overlap, handoffs,
tails, prompts and seeds."""

from __future__ import annotations

import itertools

import pytest

from soundstage.schemas import SoundtrackJobParams
from soundstage_pipeline.soundtrack.plan import SNAP_SECONDS, Scene, SoundtrackPlan, derive_seed, scene_prompt
from soundstage_pipeline.soundtrack.rows import plan_of


def plan(durations: list[float], crossfade: float) -> SoundtrackPlan:
    return SoundtrackPlan(
        scenes=tuple(Scene(index=i, prompt="x", duration=d, seed=i) for i, d in enumerate(durations)),
        crossfade=crossfade,
    )


@pytest.mark.parametrize(
    ("durations", "crossfade"),
    [([20, 25, 15], 2.0), ([5, 5, 5, 5], 5.0), ([5, 6, 5.5], 4.0), ([600, 5, 600], 0.5), ([7.25, 5.5], 2.0)],
)
def test_transitions_can_never_overlap_and_every_tail_covers_its_crossfade(
    durations: list[float], crossfade: float
) -> None:
    p = plan(durations, crossfade)
    assert p.total == pytest.approx(sum(durations))
    for k in range(p.transitions):
        snap = p.snap(k)
        assert 0 <= snap <= SNAP_SECONDS
        # The latest end of transition k is no later than the earliest start of transition k + 1.
        latest_end = p.boundary(k) + snap + crossfade / 2
        if k + 1 < p.transitions:
            assert latest_end <= p.boundary(k + 1) - p.snap(k + 1) - crossfade / 2 + 1e-9
        assert p.handoff(k) == pytest.approx(p.boundary(k) - crossfade / 2 - snap)
        assert p.latest_end(k) == pytest.approx(latest_end)
        assert p.handoff(k) + p.tail_length(k) == pytest.approx(latest_end)
    ends = [p.generated_end(k) for k in range(p.count)]
    assert ends[-1] == p.total and all(a < b for a, b in itertools.pairwise([0.0, *ends]))


def test_snap_shrinks_only_next_to_short_scenes() -> None:
    p = plan([20, 5, 20], 4.0)  # the 5 s scene holds two 4 s crossfades and 1 s of room: half each
    assert p.snap(0) == pytest.approx(0.5) and p.snap(1) == pytest.approx(0.5)
    assert plan([20, 5, 20], 4.5).snap(0) == pytest.approx(0.25)
    assert plan([20, 5, 20], 5.0).snap(0) == 0.0
    assert plan([30, 30], 2.0).snap(0) == SNAP_SECONDS
    with pytest.raises(IndexError):
        plan([30, 30], 2.0).snap(1)


def test_prompts_follow_musicgen_api_and_seeds_are_stable() -> None:
    assert (
        scene_prompt("cinematic orchestral music", "peaceful morning", None)
        == "peaceful morning, cinematic orchestral music"
    )
    assert scene_prompt("base", "joyful", "solo piano") == "joyful, solo piano"
    assert scene_prompt("base", None, None) == "base"
    assert derive_seed(7, "scene", 1) == derive_seed(7, "scene", 1) != derive_seed(7, "scene", 2)
    assert 0 <= derive_seed(2**31 - 1, "tail", 0) <= 2**31 - 1


def test_the_plan_of_a_job_uses_its_scenes_and_seed() -> None:
    params = SoundtrackJobParams.model_validate(
        {
            "base_prompt": "lofi",
            "scenes": [{"mood": "rain", "duration": 8}, {"duration": 6, "prompt": "vinyl crackle"}],
            "seed": 11,
            "model": "random:tiny",
            "use_stem_aware_crossfade": True,
            "use_quality_loop": True,
            "max_regen_attempts": 3,
            "context_seconds": 10.0,
            "tempo_threshold": 0.04,
            "max_tempo_stretch": 0.25,
            "demucs_model": "random:tiny",
        }
    )
    p = plan_of(params)
    assert [scene.prompt for scene in p.scenes] == ["rain, lofi", "vinyl crackle"]
    assert [scene.seed for scene in p.scenes] == [derive_seed(11, "scene", 0), derive_seed(11, "scene", 1)]
    assert (p.total, p.crossfade) == (14.0, 2.0)
