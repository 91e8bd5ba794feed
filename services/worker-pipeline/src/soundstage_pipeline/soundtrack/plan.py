"""The timeline of a soundtrack, fixed from the request before anything is generated.

Scenes lie end to end on one timeline of ``total`` seconds (the sum of their durations); scene k's nominal
span is ``[boundary(k - 1), boundary(k))``. Transition k, between scene k and scene k + 1, is an equal-power
crossfade of ``crossfade`` seconds centred on ``boundary(k)``, moved by at most ``snap(k)`` seconds to land
on a beat.

How the scenes are generated so that every crossfade has both sides under it, without generating the
crossfaded stretch twice in a row:

- scene k + 1 continues scene k from the *handoff* ``handoff(k) = boundary(k) - crossfade/2 - snap(k)``, the
  earliest point transition k can start: its prompt audio is the end of (tempo-matched) scene k before
  that point;
- scene k itself is generated up to its handoff only; its own sound through the crossfade comes from a
  *tail*, a continuation of scene k from the same handoff under scene k's prompt, up to the latest end
  of transition k (``tail_length(k)`` seconds, or more when a speed-up made scene k hand off early). The
  tail and scene k + 1 continue the same audio from the same point, so the MusicGen worker decodes them
  side by side in one batch, and both start in phase with scene k.

``snap(k)`` is kept small enough that no two transitions can overlap (see :meth:`SoundtrackPlan.snap`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from soundstage.schemas.generate import SEED_MAX

SNAP_SECONDS = 0.5
"""A cut moves at most this far to land on a beat: half a beat at 60 BPM, so there is always one in reach
when the pulse is steady."""


@dataclass(frozen=True)
class Scene:
    index: int
    prompt: str
    """What the model is asked for: ``"<mood>, <scene prompt or base prompt>"``, as musicgen-api builds it."""
    duration: float
    seed: int


@dataclass(frozen=True)
class SoundtrackPlan:
    scenes: tuple[Scene, ...]
    crossfade: float

    @property
    def count(self) -> int:
        return len(self.scenes)

    @property
    def transitions(self) -> int:
        return len(self.scenes) - 1

    @property
    def total(self) -> float:
        return sum(scene.duration for scene in self.scenes)

    def boundary(self, k: int) -> float:
        """Nominal end of scene k (the start of scene k + 1), in seconds; boundary(-1) is 0."""
        return sum(scene.duration for scene in self.scenes[: k + 1])

    def snap(self, k: int) -> float:
        """How far transition k may move to land on a beat. At most SNAP_SECONDS, and at most half of what
        the shorter neighbouring scene has beyond one crossfade, so that consecutive windows never overlap
        (a scene of d seconds holds both of its transitions: d >= crossfade + snap(k - 1) + snap(k))."""
        if not 0 <= k < self.transitions:
            raise IndexError(f"no transition {k} in a plan of {self.count} scenes")
        room = min(self.scenes[k].duration, self.scenes[k + 1].duration) - self.crossfade
        return max(0.0, min(SNAP_SECONDS, room / 2))

    def handoff(self, k: int) -> float:
        """Where scene k + 1 (and scene k's tail) continue scene k: the earliest start of transition k."""
        return self.boundary(k) - self.crossfade / 2 - self.snap(k)

    def latest_end(self, k: int) -> float:
        """The latest end of transition k: where scene k's tail must reach."""
        return self.boundary(k) + self.crossfade / 2 + self.snap(k)

    def tail_length(self, k: int) -> float:
        """Seconds of scene k's tail: from its handoff to the latest end of transition k. (From an earlier
        handoff, after a speed-up shortened the scene, the tail is longer by as much.)"""
        return self.latest_end(k) - self.handoff(k)

    def generated_end(self, k: int) -> float:
        """Where scene k's own generation (not its tail) must reach on the timeline: its handoff, or the
        end of the soundtrack for the last scene."""
        return self.total if k == self.count - 1 else self.handoff(k)


def scene_prompt(base_prompt: str, mood: str | None, prompt: str | None) -> str:
    """musicgen-api's scene prompt: the mood first, then the scene's own prompt or else the base prompt."""
    body = prompt or base_prompt
    return f"{mood}, {body}" if mood else body


def derive_seed(seed: int, *labels: object) -> int:
    """A seed for one generation of the soundtrack (a scene, a tail, a regeneration), fixed by the
    soundtrack's seed and what it is for, so that a retried pipeline makes the same audio."""
    text = ":".join([str(seed), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % (SEED_MAX + 1)
