"""What each of a soundtrack's steps is given: its job row's params, from the plan and the steps before it.

Generate steps are ordinary MusicGen jobs (GenerateJobParams) that continue a stretch of a prepared scene;
separate steps are ordinary Demucs jobs (SeparateJobParams) of a step's audio; the CPU steps get the
pipeline's own models (soundtrack.models).
"""

from __future__ import annotations

from typing import Any

from soundstage.schemas import GenerateJobParams, SeparateJobParams
from soundstage_pipeline.soundtrack.models import Candidate, LaidStems, Prepared, PrepareParams, Stems
from soundstage_pipeline.soundtrack.plan import Scene, derive_seed
from soundstage_pipeline.soundtrack.prepare import MATERIAL_SECONDS
from soundstage_pipeline.soundtrack.rows import SoundtrackRows
from soundstage_pipeline.soundtrack.timeline import EDGE_RADIUS_SECONDS

TRANSITION_STEMS = 4
PROMPT_MAX = 2000
SPLICE_SECONDS = 1.0
"""A regenerated opening hands back to the scene as it was with a crossfade this long (at most the
soundtrack's own crossfade)."""
MIN_OPENING_SECONDS = 0.5
"""A transition is regenerated only when the later scene has at least this much room after the crossfade."""


def generate_params(rows: SoundtrackRows, k: int, previous: Prepared | None, *, tail: bool = False) -> dict[str, Any]:
    """Scene k's generation (continuing the previous, prepared scene), or with ``tail`` scene k's tail."""
    plan = rows.plan
    if previous is None:
        return text_params(rows, plan.scenes[k], plan.generated_end(0), melody_start=0.0)
    join = previous.handoff or previous.track.end
    if tail:
        # The tail reaches the latest end of transition k from wherever the scene hands off: when a speed-up
        # moved the handoff earlier, the tail plays the difference too, so the cut can still sit on the
        # boundary instead of wherever the shortened scene happens to end.
        latest_end = round(plan.latest_end(k) * previous.rate)
        seed = derive_seed(rows.params.seed, "tail", k)
        seconds = max((latest_end - join) / previous.rate, 1.0)
        return continuation_params(rows, k, previous, join=join, seconds=seconds, seed=seed)
    seconds = (round(plan.generated_end(k) * previous.rate) - join) / previous.rate
    # A little more than the timeline needs: the cut into the scene may read it a few samples later.
    return continuation_params(rows, k, previous, join=join, seconds=seconds + 2 * EDGE_RADIUS_SECONDS)


def continuation_params(
    rows: SoundtrackRows,
    k: int,
    previous: Prepared,
    *,
    join: int,
    seconds: float,
    seed: int | None = None,
    prompt_of: int | None = None,
) -> dict[str, Any]:
    """A generation of scene ``prompt_of`` (default ``k``) continuing the prepared scene ``previous`` at
    timeline sample ``join``, conditioned on its last SOUNDTRACK_CONTEXT_SECONDS; the output starts with the
    re-synthesised prompt (`include_prompt`), so the continuation can be joined to what it continues."""
    rate, track = previous.rate, previous.track
    first = max(track.start, join - round(rows.params.context_seconds * rate))
    scene = rows.plan.scenes[k if prompt_of is None else prompt_of]
    params = text_params(rows, scene, seconds, melody_start=join / rate, seed=seed)
    params.update(
        audio_prompt=track.file,
        audio_prompt_start=(first - track.start) / rate,
        audio_prompt_end=(join - track.start) / rate,
        include_prompt=True,
    )
    return GenerateJobParams.model_validate(params).model_dump(mode="json", exclude={"model"})


def text_params(
    rows: SoundtrackRows, scene: Scene, seconds: float, *, melody_start: float, seed: int | None = None
) -> dict[str, Any]:
    p = rows.params
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


def prepare_params(rows: SoundtrackRows, k: int) -> dict[str, Any]:
    plan, rate = rows.plan, rows.rate()
    previous = rows.prepared(k - 1) if k else None
    join = (previous.handoff or previous.track.end) if previous else 0
    last = k == plan.count - 1
    params = PrepareParams(
        index=k,
        last=last,
        rate=rate,
        scene=rows.continuation(f"scene:{k}", join),
        previous=previous,
        tail=rows.continuation(f"tail:{k - 1}", join) if previous else None,
        boundary=round(plan.boundary(k - 1) * rate) if k else None,
        snap=round(plan.snap(k - 1) * rate) if k else 0,
        crossfade=round(plan.crossfade * rate),
        handoff=None if last else round(plan.handoff(k) * rate),
        total=round(plan.total * rate),
        beat_aligned=rows.params.use_beat_aligned_crossfade,
        stem_aware=rows.params.use_stem_aware_crossfade,
        tempo_threshold=rows.params.tempo_threshold,
        max_tempo_stretch=rows.params.max_tempo_stretch,
    )
    return params.model_dump(mode="json")


def separate_params(
    rows: SoundtrackRows,
    name: str,
    length: int,
    *,
    rate: int | None = None,
    channels: int | None = None,
    stems: int = TRANSITION_STEMS,
    prefix: str | None = None,
) -> dict[str, Any]:
    """A separation of the ``length`` samples of ``name`` (a transition's side: 16-bit WAV stems at the
    timeline's rate, as every WAV this server writes; with ``prefix``, the finished soundtrack: stems in
    its format, named after it)."""
    rate = rate or rows.rate()
    params = SeparateJobParams.model_validate(
        {
            "model": rows.params.demucs_model,
            "stems": stems,
            "format": rows.params.format.value if prefix else "wav",
            "input_audio": name,
            "input_sample_rate": rate,
            "input_channels": channels or rows.prepared(0).channels,
            "input_seconds": length / rate,
            "output_prefix": prefix,
        }
    )
    return params.model_dump(mode="json")


def room(rows: SoundtrackRows, i: int) -> tuple[int, int] | None:
    """Where a regenerated opening after transition i would hand back to the scene as it was, and how long
    that handover is; None when the later scene has no room for one."""
    rate = rows.rate()
    transition = rows.transition(i)
    length = round(min(SPLICE_SECONDS, rows.plan.crossfade) * rate)
    incoming = rows.prepared(i + 1)
    # The scene as it was must still be what plays where the opening hands back to it: before its own
    # handoff (after it, its tail plays) and before the next transition.
    limit = incoming.handoff or incoming.track.end
    if i + 1 < rows.plan.transitions:
        limit = min(limit, rows.transition(i + 1).start)
    splice = min(transition.end + round(MATERIAL_SECONDS * rate), limit - length)
    if splice < transition.end + round(MIN_OPENING_SECONDS * rate):
        return None
    return splice, length


def regenerate_params(rows: SoundtrackRows, i: int, round_: int) -> dict[str, Any]:
    """The later scene's opening after transition i generated again, with the round's own seed, continuing
    the outgoing scene from the same handoff as the scene did."""
    outgoing = rows.prepared(i)
    splice = _room(rows, i)
    join = outgoing.handoff or outgoing.track.end
    seconds = (splice[0] + splice[1] - join) / outgoing.rate
    seed = derive_seed(rows.params.seed, "regenerate", i, round_)
    return continuation_params(rows, i, outgoing, join=join, seconds=seconds, seed=seed, prompt_of=i + 1)


def candidate(rows: SoundtrackRows, i: int, round_: int) -> Candidate:
    """A regenerated opening for the rescore step, with its stems when the crossfade is stem-aware."""
    splice = _room(rows, i)
    key = f"regenerate:{i}:{round_}"
    opening = rows.continuation(key, rows.prepared(i).handoff or 0)
    stems = None
    transition_stems = rows.transition_stems(i)
    if transition_stems is not None:
        opening_stems = LaidStems(
            files=rows.stems_of(f"separate:{i}:opening:{round_}"), start=opening.track.start, length=opening.length
        )
        stems = Stems(outgoing=transition_stems.outgoing, incoming=opening_stems)
    return Candidate(
        transition=rows.transition(i),
        attempt=round_,
        seed=int(rows.step_params(key)["seed"]),
        opening=opening,
        incoming=rows.prepared(i + 1).track,
        splice=splice[0],
        splice_length=splice[1],
        stems=stems,
    )


def _room(rows: SoundtrackRows, i: int) -> tuple[int, int]:
    found = room(rows, i)
    if found is None:
        raise RuntimeError(f"transition {i} has no room for a regenerated opening")  # only those with room are
    return found
