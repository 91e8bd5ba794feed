"""A stem-aware transition's Pair: both sides around the crossfade in one file, separated by one Demucs job,
and its stems laid back on the timeline exactly where each side plays (a stem one sample off would leave
the crossfade's residual, the mix minus its stems, full of the other side's audio)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soundstage.db import Family, Job
from soundstage.schemas import JobStatus
from soundstage.storage import LocalObjectStore
from soundstage_pipeline.soundtrack import files
from soundstage_pipeline.soundtrack.crossfades import stem_windows
from soundstage_pipeline.soundtrack.models import Pair, Prepared, Track, Transition
from soundstage_pipeline.soundtrack.prepare import PAIR_MARGIN_SECONDS, _pair
from soundstage_pipeline.soundtrack.rows import SoundtrackRows, plan_of, separation_keys
from tests.support.soundtrack_seed import soundtrack_params

RATE = 32000
SHARES = {"drums": 0.25, "bass": 0.5, "other": 0.25}
"""What the stand-in separation puts in each stem: a fixed share of its input."""


def noise(seed: int, seconds: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (2, round(seconds * RATE))).astype(np.float32)


def transition(pair: Pair | None, outgoing: Track, incoming: Track, start: int, end: int) -> Transition:
    return Transition(
        index=0,
        boundary=(start + end) // 2,
        centre=(start + end) // 2,
        beat=None,
        start=start,
        end=end,
        incoming_shift=0,
        outgoing=outgoing,
        incoming=incoming,
        tempo_from=None,
        tempo_to=None,
        pair=pair,
    )


def rows_with(store: LocalObjectStore, transition: Transition) -> SoundtrackRows:
    """A soundtrack's rows with scene 1 prepared with ``transition`` and its separations done (each stem a
    share of what the separation was given)."""
    request = {"base_prompt": "x", "scenes": [{"duration": 8}, {"duration": 8}]}
    params = soundtrack_params(request, use_stem_aware_crossfade=True)
    prepared = Prepared(
        index=1,
        rate=RATE,
        channels=2,
        track=transition.incoming,
        handoff=None,
        tempo=None,
        pulse_clarity=0.0,
        stretch=1.0,
        reference_tempo=None,
        shortfall=0,
        transition=transition,
    )
    children = {"prepare:1": step(prepared.model_dump(mode="json"))}
    for key, track in separation_keys(0, transition):
        audio, _ = files.load(store, track.file)
        stems = {}
        for stem, share in SHARES.items():
            name = f"{key.replace(':', '_')}_{stem}.wav"
            files.save(store, name, audio * share, RATE)
            stems[stem] = name
        children[key] = step({"stems": stems})
    family = Family(session=None, parent=Job(id="soundtrack", params=params.model_dump(mode="json")), children=children)  # type: ignore[arg-type]
    return SoundtrackRows(family, params, plan_of(params))


def step(result: dict[str, Any]) -> Job:
    return Job(status=JobStatus.COMPLETED.value, result=result)


@pytest.fixture
def sides(tmp_path: Path) -> tuple[LocalObjectStore, tuple[np.ndarray, int], tuple[np.ndarray, int], int, int]:
    """Both sides' audio as prepare stores them (different lengths and starts), and a 2 s crossfade."""
    store = LocalObjectStore(tmp_path)
    start = 7 * RATE + 123
    end = start + 2 * RATE
    outgoing = (noise(1, 5.0), start - 2 * RATE - 17)
    incoming = (noise(2, 6.5), start - RATE // 3)  # less than the margin before the crossfade
    return store, outgoing, incoming, start, end


def test_a_pair_holds_both_sides_around_the_crossfade_in_one_segment(sides: Any) -> None:
    store, outgoing, incoming, start, end = sides
    pair, stored = _pair(Job(id="prep"), store, outgoing, incoming, start, end, RATE)
    margin = round(PAIR_MARGIN_SECONDS * RATE)
    assert stored.name == pair.file == "prep_pair.wav"
    assert pair.outgoing_start == start - margin and pair.split == end + margin - pair.outgoing_start
    assert pair.incoming_start == incoming[1]  # clipped to where the incoming side's audio begins
    assert pair.length == pair.split + end + margin - incoming[1]
    # Two sides of a 2 s crossfade with their margins, plus a shift's padding, fit one 7.8 s htdemucs segment.
    assert pair.length / RATE + 1.0 <= 7.8
    both, rate = files.load(store, pair.file)
    assert rate == RATE and both.shape == (2, pair.length)
    out_audio, out_start = outgoing
    first = pair.outgoing_start - out_start
    np.testing.assert_array_equal(both[:, : pair.split], out_audio[:, first : first + pair.split])
    np.testing.assert_array_equal(both[:, pair.split :], incoming[0][:, : pair.length - pair.split])


def test_the_pairs_stems_line_up_with_each_side_over_the_crossfade(sides: Any) -> None:
    store, (out_audio, out_start), (in_audio, in_start), start, end = sides
    pair, _ = _pair(Job(id="prep"), store, (out_audio, out_start), (in_audio, in_start), start, end, RATE)
    outgoing = Track(file="out.wav", start=out_start, length=out_audio.shape[-1])
    incoming = Track(file="in.wav", start=in_start, length=in_audio.shape[-1])
    moment = transition(pair, outgoing, incoming, start, end)
    assert separation_keys(0, moment) == [("separate:0", Track(file=pair.file, start=0, length=pair.length))]
    stems = rows_with(store, moment).transition_stems(0)
    assert stems is not None
    for laid, audio, audio_start in ((stems.outgoing, out_audio, out_start), (stems.incoming, in_audio, in_start)):
        windows = stem_windows(store, laid, start, end)
        side = audio[:, start - audio_start : end - audio_start]
        assert set(windows) == set(SHARES)
        for stem, share in SHARES.items():
            np.testing.assert_allclose(windows[stem], side * share, atol=1e-7)


def test_a_transition_prepared_before_pairs_separates_each_side_on_its_own(sides: Any) -> None:
    store, (out_audio, out_start), (in_audio, in_start), start, end = sides
    files.save(store, "out.wav", out_audio, RATE)
    files.save(store, "in.wav", in_audio, RATE)
    outgoing = Track(file="out.wav", start=out_start, length=out_audio.shape[-1])
    incoming = Track(file="in.wav", start=in_start, length=in_audio.shape[-1])
    moment = transition(None, outgoing, incoming, start, end)
    assert separation_keys(0, moment) == [("separate:0:out", outgoing), ("separate:0:in", incoming)]
    stems = rows_with(store, moment).transition_stems(0)
    assert stems is not None
    for laid, audio, audio_start in ((stems.outgoing, out_audio, out_start), (stems.incoming, in_audio, in_start)):
        side = audio[:, start - audio_start : end - audio_start]
        np.testing.assert_allclose(stem_windows(store, laid, start, end)["bass"], side * 0.5, atol=1e-7)
