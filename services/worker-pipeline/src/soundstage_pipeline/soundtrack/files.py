"""Reading and writing a soundtrack's intermediate audio in the job store.

Intermediate audio (prepared scenes, the material around each transition, crossfaded windows) is stored
as 32-bit float WAV at the model's rate, so no step adds quantisation noise to the next; only the
finished soundtrack is encoded in the client's format. Every file is named after the step that writes it
(``{step_job_id}_{what}.wav``), so a retried step replaces its own files.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from soundstage.audio import decode_audio
from soundstage.db import NewFile
from soundstage.storage import ObjectStore


def load(store: ObjectStore, name: str) -> tuple[np.ndarray, int]:
    """The audio of ``name``: float32 (channels, n) and its rate."""
    decoded = decode_audio(store.read_bytes(name))
    return decoded.samples, decoded.sample_rate


def save(store: ObjectStore, name: str, samples: np.ndarray, rate: int) -> NewFile:
    """Store float32 ``samples`` (channels, n) as a float WAV named ``name``."""
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(samples.T, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    data = buffer.getvalue()
    stored = store.put_bytes(name, data, "audio/wav")
    return NewFile(
        name=name,
        content_type="audio/wav",
        size_bytes=stored.size,
        duration_s=samples.shape[-1] / rate,
        sample_rate=rate,
        channels=int(samples.shape[0]),
    )
