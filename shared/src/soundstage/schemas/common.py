"""Enumerations and small types shared by requests, responses and task payloads."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Job lifecycle; the strings are musicgen-api's."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL_STATUSES))
"""The same as plain strings, as the job rows hold them (for queries and membership tests)."""


class JobKind(StrEnum):
    """What a job does; each kind belongs to one worker pool (see `soundstage.pools`)."""

    GENERATE = "generate"
    SEPARATE = "separate"
    SOUNDTRACK = "soundtrack"
    """A multi-step job: its steps are child jobs on the pools that own each model."""
    STYLE = "style"
    """Music in the style of text and audio prompts (the Magenta RT API's routes), on the Magenta pool."""
    LOOP = "loop"
    """Bars of music at a tempo, continuing a loop or from styles (the research API's routes), on the Magenta pool."""
    EMBED = "embed"
    """A MusicCoCa style embedding of a text or an audio file, on the Magenta pool (its result holds it)."""
    MIX = "mix"
    """A CPU step of a multi-step job (tempo matching, crossfades, mixing), on the pipeline pool."""


class AudioFormat(StrEnum):
    WAV = "wav"
    FLAC = "flac"
    MP3 = "mp3"
    OGG = "ogg"
