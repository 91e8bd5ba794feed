"""The `crossfade` and `rescore` steps: every transition crossfaded (stem by stem when its sides were
separated) and scored; then, for the quality loop, each regenerated opening crossfaded and scored the same
way, with the splice that hands it back to the scene as it was.

A plain transition is one equal-power crossfade of the two sides. A stem-aware one crossfades each stem of
the sides with its own curve: drums, other, vocals (and guitar, piano) and the residual (the mix minus its
stems, so each side still sums to itself at the window's edges) with the equal-power curves, the bass
swapped at once on the cut, at the point nearest to it where the two bass lines cross (so the swap makes no
step).
"""

from __future__ import annotations

import numpy as np

from soundstage.audio.crossfade import (
    BASS_STEM,
    crossfade,
    equal_power_fades,
    mono,
    nearest_meeting_point,
    nearest_zero_crossing,
    stem_crossfade,
)
from soundstage.db import Job, NewFile
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.storage import ObjectStore
from soundstage_pipeline.audio.quality import score_transition
from soundstage_pipeline.soundtrack import files
from soundstage_pipeline.soundtrack.models import (
    Candidate,
    CrossfadeParams,
    LaidStems,
    RescoreParams,
    Stems,
    Track,
    Transition,
    Window,
    WindowsResult,
)
from soundstage_pipeline.soundtrack.prepare import MATERIAL_SECONDS
from soundstage_pipeline.soundtrack.timeline import EDGE_RADIUS_SECONDS, span

BASS_SWAP_SECONDS = 0.005
"""The bass swap is an equal-power fade this short: instant to the ear, but never a step."""
RESIDUAL = "residual"

Laid = tuple[np.ndarray, int]
"""Audio and the timeline sample its first sample plays at."""


def run_crossfade(job: Job, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = CrossfadeParams.model_validate(job.params)
    outputs: list[NewFile] = []
    windows: list[Window] = []
    for done, (transition, stems) in enumerate(zip(params.transitions, params.stems, strict=True)):
        report(100.0 * done / len(params.transitions), f"transition {transition.index + 1}: crossfading")
        outgoing = _laid(store, transition.outgoing)
        incoming = _laid(store, transition.incoming)
        mixed = _mix(store, transition, outgoing, incoming, stems=stems, rate=params.rate)
        name = f"{job.id}_transition{transition.index}.wav"
        outputs.append(files.save(store, name, mixed, params.rate))
        scored = _scored(transition, outgoing, incoming, mixed, params.rate) if params.score else None
        windows.append(_window(transition, 0, None, name, scored=scored))
    return JobOutput(files=outputs, result=WindowsResult(windows=windows).model_dump(mode="json"))


def run_rescore(job: Job, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = RescoreParams.model_validate(job.params)
    outputs: list[NewFile] = []
    windows: list[Window] = []
    rate = params.rate
    for done, candidate in enumerate(params.candidates):
        transition = candidate.transition
        report(100.0 * done / len(params.candidates), f"transition {transition.index + 1}: scoring attempt")
        outgoing = _laid(store, transition.outgoing)
        opening = _shifted_opening(store, candidate, rate)
        stems = candidate.stems
        if stems is not None:  # the opening's stems move with it
            stems = stems.model_copy(update={"incoming": stems.incoming.model_copy(update={"start": opening[1]})})
        mixed = _mix(store, transition, outgoing, opening, stems=stems, rate=rate)
        name = f"{job.id}_transition{transition.index}.wav"
        outputs.append(files.save(store, name, mixed, rate))
        override = _override(store, candidate, opening)
        override_name = f"{job.id}_opening{transition.index}.wav"
        outputs.append(files.save(store, override_name, override, rate))
        scored = _scored(transition, outgoing, opening, mixed, rate)
        window = _window(transition, candidate.attempt, candidate.seed, name, scored=scored)
        track = Track(file=override_name, start=transition.end, length=override.shape[-1])
        windows.append(window.model_copy(update={"override": track}))
    return JobOutput(files=outputs, result=WindowsResult(windows=windows).model_dump(mode="json"))


def _laid(store: ObjectStore, track: Track) -> Laid:
    audio, _ = files.load(store, track.file)
    return audio, track.start


def _mix(
    store: ObjectStore,
    transition: Transition,
    outgoing: Laid,
    incoming: Laid,
    *,
    stems: Stems | None,
    rate: int,
) -> np.ndarray:
    """The crossfaded window ``[start, end)`` of a transition; stem by stem when ``stems`` are given."""
    lo, hi = transition.start, transition.end
    out_window = span(*outgoing, lo, hi)
    in_window = span(*incoming, lo, hi)
    if stems is None:
        return crossfade(out_window, in_window)
    loaded: dict[str, np.ndarray] = {}  # a transition's Pair: both sides read the same stem files
    out_stems = stem_windows(store, stems.outgoing, lo, hi, loaded)
    in_stems = stem_windows(store, stems.incoming, lo, hi, loaded)
    shared = sorted(set(out_stems) & set(in_stems))
    out_parts = {stem: out_stems[stem] for stem in shared}
    in_parts = {stem: in_stems[stem] for stem in shared}
    out_parts[RESIDUAL] = out_window - sum(out_parts.values(), np.zeros_like(out_window))
    in_parts[RESIDUAL] = in_window - sum(in_parts.values(), np.zeros_like(in_window))
    swap = transition.centre - lo
    if BASS_STEM in shared:
        radius = round(EDGE_RADIUS_SECONDS * rate)
        swap = nearest_meeting_point(mono(out_parts[BASS_STEM]), mono(in_parts[BASS_STEM]), swap, radius)
    return stem_crossfade(out_parts, in_parts, swap_at=swap, swap_fade=round(BASS_SWAP_SECONDS * rate))


def stem_windows(
    store: ObjectStore, stems: LaidStems, lo: int, hi: int, loaded: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Timeline samples ``[lo, hi)`` of every stem, by stem; ``loaded`` keeps the files read, by name, so that
    a file shared by both sides is read once."""
    loaded = {} if loaded is None else loaded
    windows = {}
    for stem, name in stems.files.items():
        if name not in loaded:
            loaded[name] = files.load(store, name)[0]
        audio = loaded[name][:, stems.offset : stems.offset + stems.length]
        windows[stem] = span(audio, stems.start, lo, hi)
    return windows


def _shifted_opening(store: ObjectStore, candidate: Candidate, rate: int) -> Laid:
    """A regenerated opening laid on the timeline, moved (by at most EDGE_RADIUS_SECONDS) so that it crosses
    zero where the crossfade starts, as the scene it replaces was."""
    audio, _ = files.load(store, candidate.opening.file)
    start = candidate.opening.track.start
    position = candidate.transition.start - start
    radius = min(round(EDGE_RADIUS_SECONDS * rate), position, audio.shape[-1] - position - 1)
    shift = nearest_zero_crossing(mono(audio), position, radius) - position
    return audio, start - shift


def _override(store: ObjectStore, candidate: Candidate, opening: Laid) -> np.ndarray:
    """What plays after the crossfade instead of the scene as it was: the regenerated opening from the
    crossfade's end to the splice, then an equal-power crossfade back into the scene as it was."""
    end, splice, length = candidate.transition.end, candidate.splice, candidate.splice_length
    old = _laid(store, candidate.incoming)
    fade_out, fade_in = equal_power_fades(length)
    handover = span(*opening, splice, splice + length) * fade_out + span(*old, splice, splice + length) * fade_in
    return np.concatenate([span(*opening, end, splice), handover.astype(np.float32)], axis=-1)


def _scored(
    transition: Transition, outgoing: Laid, incoming: Laid, mixed: np.ndarray, rate: int
) -> tuple[dict[str, float], bool, float]:
    """Scores of the transition as it will sound: up to two seconds of the outgoing side, the window, up to two
    seconds of the incoming side."""
    context = round(MATERIAL_SECONDS * rate)
    audio, start = outgoing
    before = span(audio, start, max(transition.start - context, start), transition.start)
    audio, start = incoming
    after = span(audio, start, transition.end, min(transition.end + context, start + audio.shape[-1]))
    heard = np.concatenate([before, mixed, after], axis=-1)
    scores = score_transition(heard, rate, before.shape[-1], before.shape[-1] + mixed.shape[-1])
    return scores.as_dict(), scores.passed, round(scores.badness, 6)


def _window(
    transition: Transition,
    attempt: int,
    seed: int | None,
    name: str,
    scored: tuple[dict[str, float], bool, float] | None,
) -> Window:
    return Window(
        index=transition.index,
        attempt=attempt,
        seed=seed,
        file=name,
        start=transition.start,
        end=transition.end,
        scores=scored[0] if scored else None,
        passed=scored[1] if scored else None,
        badness=scored[2] if scored else None,
    )
