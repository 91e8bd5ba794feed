"""The pipeline pool's engine: no model, only the audio analysis it warms up once per process.

The pool runtime expects an engine per served model; this pool serves none, so it has one engine whose
"load" compiles librosa's numba kernels (the first beat tracking of a process takes 5-30 s otherwise;
one process at a time, see ``audio.compile_lock``),
after which the worker's heartbeat says it is ready.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from soundstage.schemas import ModelCapabilities

logger = logging.getLogger(__name__)

ENGINE_NAME = "mix"


@dataclass(frozen=True)
class MixInfo:
    device: str = "cpu"
    gpu_available: bool = False
    random_weights: bool = False


class MixEngine:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False

    @property
    def model_ref(self) -> str:
        return ENGINE_NAME

    @property
    def loaded(self) -> bool:
        return self._ready

    @property
    def info(self) -> MixInfo:
        return MixInfo()

    def load(self) -> None:
        """Warm the analysis up once (thread-safe, idempotent)."""
        with self._lock:
            if not self._ready:
                from soundstage_pipeline.audio import beats, quality

                beats.warm_up()
                quality.warm_up()
                self._ready = True
                logger.info("audio analysis warmed up")

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(model=ENGINE_NAME)
