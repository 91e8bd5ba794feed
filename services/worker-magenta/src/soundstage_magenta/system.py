"""Our adapter over magenta-rt 2.0.3's MagentaRT2System: the one module that knows its API.

What it relies on, read in magenta-rt 2.0.3 (`magenta_rt/jax/system.py`):
- ``generate(conditioning, cfg_scales, temperature, top_k, frames, state) -> (Waveform, state)``: 48 kHz
  stereo, 25 frames a second of 1920 samples; CFG values become conditioning tokens (no doubled batch);
- the state passed in is donated to the compiled step (``donate_argnums``): it must be copied before it is
  used twice (``fork``);
- the samples are written as int16 with a fixed 0.5 gain (about -6 dB): callers loudness-normalise;
- the system compiles its streaming step when it is built, so loading pays the compile, never a request;
- MusicCoCa's TFLite interpreters are not safe to call from two threads: embeddings are serialised here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundstage.errors import ModelUnavailableError
from soundstage_magenta import random_models

SAMPLE_RATE = 48_000
CHANNELS = 2
FRAMES_PER_SECOND = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
EMBEDDING_DIM = 768
NAMED_SIZES = ("mrt2_small", "mrt2_base")
_LOAD_LOCK = threading.Lock()  # a random model's build swaps a magenta-rt function for its duration


@dataclass(frozen=True)
class Generated:
    """Audio of some frames: float32 samples shaped (frames * SAMPLES_PER_FRAME, CHANNELS) at SAMPLE_RATE."""

    samples: np.ndarray[Any, np.dtype[np.float32]]
    state: Any  # the stream's state after the last frame (owned by the caller: fork it to reuse it)


class MagentaSystem:
    """One loaded Magenta RT 2 model and its style embedder."""

    def __init__(self, model_ref: str, *, cache_dir: Path) -> None:
        self.model_ref = model_ref
        self.random_weights = model_ref.startswith(random_models.RANDOM_PREFIX)
        self._embed_lock = threading.Lock()
        with _LOAD_LOCK:
            self._system = _load(model_ref, cache_dir)

    def embed_text(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """MusicCoCa's style embedding of ``text``: EMBEDDING_DIM floats."""
        with self._embed_lock:
            embedding = self._system.embed_style(text)
        return np.asarray(embedding, dtype=np.float32).reshape(EMBEDDING_DIM)

    def generate(
        self,
        style: np.ndarray[Any, np.dtype[np.float32]] | None,
        frames: int,
        *,
        temperature: float,
        top_k: int,
        cfg_musiccoca: float,
        state: Any = None,
    ) -> Generated:
        """``frames`` frames conditioned on a style embedding (None: unconditioned), continuing ``state``
        (None: a new stream). ``state`` is consumed: pass ``fork(state)`` to keep it."""
        from magenta_rt.config import MUSICCOCA

        if frames < 1:
            raise ValueError("frames must be at least 1")
        conditioning = {} if style is None else {MUSICCOCA.key: np.asarray(style, dtype=np.float32)}
        waveform, after = self._system.generate(
            conditioning=conditioning,
            cfg_scales={"musiccoca": cfg_musiccoca},
            temperature=temperature,
            top_k=top_k,
            frames=frames,
            state=state,
        )
        samples = np.asarray(waveform.samples, dtype=np.float32).reshape(-1, CHANNELS)
        return Generated(samples=samples, state=after)

    @staticmethod
    def fork(state: Any) -> Any:
        """A copy of a stream state, for a second use (the compiled step donates the one it is given)."""
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.copy, state)


def _load(model_ref: str, cache_dir: Path) -> Any:
    from magenta_rt import musiccoca
    from magenta_rt.jax.system import MagentaRT2System

    if model_ref.startswith(random_models.RANDOM_PREFIX):
        size = model_ref.removeprefix(random_models.RANDOM_PREFIX)
        if size not in random_models.SIZES:
            raise ModelUnavailableError(
                f"Unknown random Magenta model {model_ref!r}; there is "
                + ", ".join(random_models.RANDOM_PREFIX + s for s in random_models.SIZES)
            )
        checkpoint = random_models.ensure_built(size, cache_dir)
        with random_models.shrunk_codec():
            return MagentaRT2System(
                size=random_models.registry_name(size),
                style_model=musiccoca.MockMusicCoCa(),
                checkpoint=str(checkpoint),  # absolute: magenta-rt joins it onto MAGENTA_HOME unchanged
            )
    if model_ref in NAMED_SIZES:
        from magenta_rt import paths

        checkpoint = paths.checkpoints_dir() / f"{model_ref}.safetensors"  # magenta-rt's own registry name
        if not checkpoint.is_file():
            raise ModelUnavailableError(
                f"Magenta RT model {model_ref!r} is not in MAGENTA_HOME (no {checkpoint}): fetch it with "
                "`make models` where Hugging Face is reachable, or use random:tiny offline."
            )
        return MagentaRT2System(size=model_ref)
    raise ModelUnavailableError(f"Unknown Magenta RT model {model_ref!r}: use {', '.join(NAMED_SIZES)} or random:tiny.")
