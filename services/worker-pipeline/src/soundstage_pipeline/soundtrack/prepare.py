"""The `prepare_scene` step: a generated scene made ready for the timeline, and the transition into it chosen.

1. The scene's new audio (its file minus the re-synthesised prompt it starts with) is laid on the timeline
   at the handoff it continued from.
2. Tempo matching: its beats are tracked; when both its pulse and the soundtrack's (its first scene's) are
   steady and the tempos differ by more than the threshold (octave-aware, at most the largest stretch),
   it is time-stretched with Rubber Band to the soundtrack's tempo. Later scenes continue this
   tempo-matched audio, so they start at the right tempo too.
3. Its handoff (where the next scene and this scene's tail continue it) is the nominal one, or earlier
   when a speed-up left the scene shorter: its tail is then longer by as much (it always reaches the
   latest end of the outgoing transition), so that transition still centres on its boundary.
4. The transition into it: the outgoing side is the previous scene joined to its tail; the cut goes to the
   nominal boundary, onto the outgoing side's nearest beat within the snap range, its edges onto zero
   crossings (see timeline.choose_cut); the audio of both sides around it is stored for the crossfade
   step, and for a stem-aware crossfade both sides around the crossfade in one file (the Pair), which one
   Demucs job separates.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from soundstage.db import Job, NewFile
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.storage import ObjectStore
from soundstage_pipeline.audio.beats import BeatAnalysis, analyse_beats
from soundstage_pipeline.audio.stretch import stretch_ratio, time_stretch
from soundstage_pipeline.soundtrack import files
from soundstage_pipeline.soundtrack.models import Pair, Prepared, PrepareParams, Track, Transition
from soundstage_pipeline.soundtrack.timeline import choose_cut, join_continuation, span

logger = logging.getLogger(__name__)

MATERIAL_SECONDS = 2.0
"""Audio kept on each side of a crossfade: the quality scores compare two seconds before and after it."""
PAIR_MARGIN_SECONDS = 0.5
"""Audio kept on each side of the crossfade in a transition's Pair: Demucs' convolutions and its STFT (a
4096-sample window) see the join between the two sides there, not inside the crossfade; two sides of a 2 s
crossfade with this margin (6 s, plus the 1 s a shift pads) fill one 7.8 s htdemucs segment."""
BEAT_CONTEXT_SECONDS = 20.0
"""How much of the outgoing side the beat tracker hears before a transition (enough bars to lock on)."""


def run_prepare(job: Job, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = PrepareParams.model_validate(job.params)
    report(0.0, f"scene {params.index + 1}: tempo", force=True)
    raw, rate = files.load(store, params.scene.file)
    if rate != params.rate:
        raise ValueError(f"scene {params.index} is at {rate} Hz, the soundtrack at {params.rate} Hz")
    audio = raw[:, params.scene.prompt :]
    start = params.scene.join
    analysis = analyse_beats(audio, rate)
    reference = params.previous.reference_tempo if params.previous else (analysis.bpm if analysis.steady else None)
    warnings: list[str] = []
    ratio = _ratio(params, analysis, reference, warnings)
    outputs: list[NewFile] = []
    transition, shift = None, 0
    processed = time_stretch(audio, rate, ratio) if ratio != 1.0 else audio
    if params.previous is not None:
        report(50.0, f"scene {params.index + 1}: placing the cut", force=True)
        try:
            transition, materials = _plan_transition(job, store, params, processed, start)
        except ValueError:
            if ratio == 1.0:
                raise
            # A speed-up left too little room for the crossfade: the scene keeps its own tempo.
            warnings.append(f"scene {params.index + 1} was not tempo-matched: too short once sped up")
            ratio, processed = 1.0, audio
            transition, materials = _plan_transition(job, store, params, processed, start)
        shift = transition.incoming_shift
        outputs += materials
    track_file = f"{job.id}_scene.wav"
    outputs.insert(0, files.save(store, track_file, processed, rate))
    track = Track(file=track_file, start=start - shift, length=processed.shape[-1])
    tempo = analysis.bpm * ratio if analysis.bpm is not None else None
    steady_tempo = round(tempo, 3) if tempo is not None and analysis.steady else None
    if transition is not None:
        transition = transition.model_copy(update={"tempo_to": steady_tempo})
    prepared = Prepared(
        index=params.index,
        rate=rate,
        channels=int(processed.shape[0]),
        track=track,
        handoff=None if params.last else min(params.handoff or track.end, track.end),
        tempo=steady_tempo,
        pulse_clarity=round(analysis.pulse_clarity, 4),
        stretch=round(ratio, 6),
        reference_tempo=reference,
        shortfall=max(0, params.total - track.end) if params.last else 0,
        transition=transition,
        warnings=warnings,
    )
    return JobOutput(files=outputs, result=prepared.model_dump(mode="json"))


def _ratio(params: PrepareParams, analysis: BeatAnalysis, reference: float | None, warnings: list[str]) -> float:
    if params.previous is None or reference is None or not analysis.steady or analysis.bpm is None:
        return 1.0
    ratio = stretch_ratio(
        analysis.bpm, reference, threshold=params.tempo_threshold, max_stretch=params.max_tempo_stretch
    )
    if ratio != 1.0 and shutil.which("rubberband") is None:
        warnings.append("tempo matching skipped: the `rubberband` program (Debian: rubberband-cli) is not installed")
        logger.warning("scene %d: tempo matching skipped, rubberband is not installed", params.index)
        return 1.0
    return ratio


def _plan_transition(
    job: Job, store: ObjectStore, params: PrepareParams, incoming: np.ndarray, incoming_start: int
) -> tuple[Transition, list[NewFile]]:
    """Choose the cut into this scene and store both sides' audio around it."""
    previous, tail = params.previous, params.tail
    if previous is None or tail is None or params.boundary is None:
        raise ValueError("a transition needs the previous scene, its tail and the boundary")
    rate = params.rate
    scene_audio, _ = files.load(store, previous.track.file)
    tail_audio, _ = files.load(store, tail.file)
    outgoing = join_continuation(
        scene_audio, previous.track.start, tail_audio, tail.track.start, join=tail.join, rate=rate
    )
    outgoing_start = previous.track.start
    incoming_end = incoming_start + incoming.shape[-1]
    lo = max(tail.join, incoming_start)
    hi = min(outgoing_start + outgoing.shape[-1], incoming_end)
    if not params.last and params.handoff is not None:
        hi = min(hi, params.handoff, incoming_end)  # this scene must still hold its own handoff after the cut
    beats = _beats(outgoing, outgoing_start, hi, rate) if params.beat_aligned else None
    cut = choose_cut(
        outgoing, outgoing_start, incoming, incoming_start,
        boundary=params.boundary, snap=params.snap, crossfade=params.crossfade, lo=lo, hi=hi, beats=beats, rate=rate,
    )  # fmt: skip
    context = round(MATERIAL_SECONDS * rate)
    shifted_start = incoming_start - cut.incoming_shift
    out_lo = max(cut.start - context, outgoing_start)
    out_hi = min(cut.end + context, outgoing_start + outgoing.shape[-1])
    in_lo = max(cut.start - context, shifted_start)
    in_hi = min(cut.end + context, shifted_start + incoming.shape[-1])
    out_name, in_name = f"{job.id}_outgoing.wav", f"{job.id}_incoming.wav"
    out_side = span(outgoing, outgoing_start, out_lo, out_hi)
    in_side = span(incoming, shifted_start, in_lo, in_hi)
    stored = [files.save(store, out_name, out_side, rate), files.save(store, in_name, in_side, rate)]
    pair = None
    if params.stem_aware:
        pair, pair_file = _pair(job, store, (out_side, out_lo), (in_side, in_lo), cut.start, cut.end, rate)
        stored.append(pair_file)
    transition = Transition(
        index=params.index - 1,
        boundary=params.boundary,
        centre=cut.centre,
        beat=cut.beat,
        start=cut.start,
        end=cut.end,
        incoming_shift=cut.incoming_shift,
        outgoing=Track(file=out_name, start=out_lo, length=out_hi - out_lo),
        incoming=Track(file=in_name, start=in_lo, length=in_hi - in_lo),
        tempo_from=previous.tempo,
        tempo_to=None,  # this scene's tempo after matching: set by run_prepare
        pair=pair,
    )
    return transition, stored


def _pair(  # noqa: PLR0917 - both sides and the crossfade they share
    job: Job,
    store: ObjectStore,
    outgoing: tuple[np.ndarray, int],
    incoming: tuple[np.ndarray, int],
    start: int,
    end: int,
    rate: int,
) -> tuple[Pair, NewFile]:
    """Both sides over the crossfade ``[start, end)`` and PAIR_MARGIN_SECONDS around it (each side's audio
    laid at its timeline sample), one after the other in one file for one separation."""
    margin = round(PAIR_MARGIN_SECONDS * rate)
    parts = []
    for audio, audio_start in (outgoing, incoming):
        lo, hi = max(start - margin, audio_start), min(end + margin, audio_start + audio.shape[-1])
        parts.append((span(audio, audio_start, lo, hi), lo))
    (out_part, out_lo), (in_part, in_lo) = parts
    name = f"{job.id}_pair.wav"
    both = np.concatenate([out_part, in_part], axis=-1)
    pair = Pair(file=name, length=both.shape[-1], split=out_part.shape[-1], outgoing_start=out_lo, incoming_start=in_lo)
    return pair, files.save(store, name, both, rate)


def _beats(outgoing: np.ndarray, outgoing_start: int, until: int, rate: int) -> np.ndarray | None:
    """The outgoing side's beats (timeline samples), from the last BEAT_CONTEXT_SECONDS before ``until``;
    None when its pulse is not steady (the cut then stays on the boundary)."""
    first = max(outgoing_start, until - round(BEAT_CONTEXT_SECONDS * rate))
    heard = span(outgoing, outgoing_start, first, min(until, outgoing_start + outgoing.shape[-1]))
    analysis = analyse_beats(heard, rate)
    if not analysis.steady:
        return None
    return np.round(analysis.beats * rate).astype(np.int64) + first
