"""What a multi-step job's machine decides in one advance (see soundstage_pipeline.advance): the contract
between the advance, which applies it, and each kind's machine, which makes it."""

from __future__ import annotations

from dataclasses import dataclass

from soundstage.db import NewFile


@dataclass
class Completion:
    """What a machine hands back when the job is done: its files (steps' files move to it) and result."""

    files: list[NewFile]
    result: dict[str, object]
    audio_seconds: float = 0.0


@dataclass
class Decision:
    """What a machine decided; the steps it created are already in the Family."""

    completion: Completion | None = None
    """Set when the job is done."""
