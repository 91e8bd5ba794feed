"""MusicGen engine: one loaded model that turns prompts (and optional audio) into waveforms.

`generate` plans the windows (see `windows`), runs each through transformers'
`generate` (see `generation`) with one seeded random stream for the whole piece,
then decodes the complete token sequence once (see `codec`) and trims it to the exact
length. Per-job parameters are arguments only; nothing is stored on the shared model.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from soundstage.audio import resample, to_channels
from soundstage.errors import AppError, ErrorCode, JobCancelledError
from soundstage.schemas import ModelCapabilities
from soundstage_musicgen.chroma import chroma_features
from soundstage_musicgen.codec import decode_tokens, encode_audio
from soundstage_musicgen.cohort import Row
from soundstage_musicgen.generation import Sampling, encode_text, generate_window, window_steps
from soundstage_musicgen.loading import LoadedModel, load_model
from soundstage_musicgen.sampler import RowSampling
from soundstage_musicgen.scheduler import CohortScheduler
from soundstage_musicgen.windows import WINDOW_FRAMES, Window, plan_windows

if TYPE_CHECKING:
    import torch

__all__ = [
    "EngineInfo",
    "GeneratedAudio",
    "GenerationParams",
    "JobCancelledError",
    "MusicgenEngine",
    "ProgressCallback",
    "PromptAudio",
]

ProgressCallback = Callable[[int, int, str], None]
"""``(decoder_steps_done, total_steps, detail)`` over the whole piece; may raise
:class:`JobCancelledError` to abort generation."""


@dataclass(frozen=True)
class PromptAudio:
    """Audio to continue: float32 ``(channels, n)`` at ``sample_rate`` Hz, any rate and channel count."""

    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class GenerationParams:
    """One generation request. ``prompt`` already includes any mood folding."""

    prompt: str
    duration_s: float  # seconds of NEW audio (after the audio prompt, if any)
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 250  # 0 disables top-k
    top_p: float = 0.0  # 0 disables nucleus sampling
    guidance_scale: float = 3.0  # audiocraft's CFG coefficient; 1 = no guidance pass
    seed: int = 0  # always concrete; the caller resolves -1 to a random seed
    num_outputs: int = 1  # takes of the same request, generated as one batch
    prompt_audio: PromptAudio | None = None
    include_prompt: bool = True  # with prompt_audio: whether the output starts with it
    melody: PromptAudio | None = None  # melody models: audio whose chroma the music follows
    melody_start_s: float = 0.0  # where in the melody this piece starts (a soundtrack's later scenes)


@dataclass(frozen=True)
class GeneratedAudio:
    """``samples``: float32 in [-1, 1], shape ``(channels, n_samples)``, at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class EngineInfo:
    model: str  # the ref as configured
    device: str  # "cpu" or "cuda"
    gpu_available: bool
    random_weights: bool
    sample_rate: int  # Hz, from the audio codec config (32000 for MusicGen)
    channels: int  # 1 (mono) or 2 (stereo checkpoints)
    window_s: float  # seconds one window covers; longer pieces are generated window by window


class MusicgenEngine:
    """Owns one loaded MusicGen model; ``generate`` calls are serialised (the RNG seed is global)."""

    def __init__(
        self, model_ref: str, cache_dir: Path, device: str = "auto", *, mode: str = "batched", max_batch: int = 8
    ) -> None:
        """``cache_dir`` holds built ``random:*`` models; hub downloads use the HF cache (HF_HOME).

        ``mode``: ``batched`` decodes concurrent jobs together with per-job sampling streams
        (see `scheduler`); ``plain`` runs transformers' own ``generate``, one job at a time,
        as the reference path.
        """
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
        if mode not in ("batched", "plain"):
            raise ValueError(f"mode must be 'batched' or 'plain', not {mode!r}")
        self._model_ref = model_ref
        self._cache_dir = Path(cache_dir)
        self._device = device
        self._mode = mode
        self._max_batch = max_batch
        self._loaded: LoadedModel | None = None
        self._scheduler: CohortScheduler | None = None
        self._lock = threading.Lock()

    @property
    def model_ref(self) -> str:
        """The model as configured (`MUSICGEN_MODEL(S)`): the name jobs are recorded with."""
        return self._model_ref

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Load the model once (idempotent). Raises :class:`ModelUnavailableError`."""
        with self._lock:
            if self._loaded is None:
                loaded = load_model(self._model_ref, self._cache_dir, self._device)
                # Melody checkpoints condition through a prefix, not cross-attention: they use
                # transformers' generate (the plain path).
                if self._mode == "batched" and not loaded.melody:
                    self._scheduler = CohortScheduler(loaded, self._max_batch)
                self._loaded = loaded

    @property
    def info(self) -> EngineInfo:
        """Model facts; loads the model first if needed."""
        loaded = self._ensure_loaded()
        return EngineInfo(
            model=self._model_ref,
            device=loaded.device,
            gpu_available=loaded.gpu_available,
            random_weights=loaded.random_weights,
            sample_rate=loaded.sample_rate,
            channels=loaded.channels,
            window_s=WINDOW_FRAMES / loaded.frame_rate,
        )

    def capabilities(self) -> ModelCapabilities:
        """What the loaded model can do, for the worker's heartbeat (the API validates requests against it)."""
        loaded = self._ensure_loaded()
        return ModelCapabilities(
            model=self._model_ref,
            sample_rate=loaded.sample_rate,
            channels=loaded.channels,
            melody=loaded.melody,
            random_weights=loaded.random_weights,
        )

    def generate(self, params: GenerationParams, on_progress: ProgressCallback | None = None) -> list[GeneratedAudio]:
        """``params.num_outputs`` takes, each exactly ``round(duration_s * sample_rate)`` samples
        long (plus the prompt audio when ``include_prompt``)."""
        _validate(params)
        loaded = self._ensure_loaded()
        if params.melody is not None and not loaded.melody:
            raise AppError(
                ErrorCode.MODEL_NOT_MELODY,
                f"{self._model_ref} is not a melody model; melody conditioning needs one.",
                status_code=422,
            )
        progress = on_progress or _ignore_progress
        if self._scheduler is not None:
            # Until its first window is submitted, this job counts as arriving, so a batch
            # starting meanwhile waits briefly for it (see CohortScheduler).
            with self._scheduler.arriving() as arrived:
                return _generate(loaded, params, progress, _BatchedWindows(loaded, self._scheduler, params, arrived))
        with self._lock:  # the plain path seeds torch's global generator: one job at a time
            return _generate(loaded, params, progress, _PlainWindows(loaded, params))

    @property
    def scheduler(self) -> CohortScheduler | None:
        """The batching scheduler (None in plain mode or before loading)."""
        return self._scheduler

    def _ensure_loaded(self) -> LoadedModel:
        self.load()
        if self._loaded is None:  # load() either sets it or raises
            raise RuntimeError("model failed to load")
        return self._loaded


def _ignore_progress(step: int, total: int, detail: str) -> None:
    return None


def _validate(params: GenerationParams) -> None:
    if not math.isfinite(params.duration_s) or params.duration_s <= 0:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            "duration must be a positive number of seconds.",
            status_code=422,
            details={"duration": params.duration_s},
        )
    if not params.temperature >= 0 or params.top_k < 0 or not 0 <= params.top_p <= 1:
        raise AppError(
            ErrorCode.VALIDATION_ERROR, "temperature must be >= 0, top_k >= 0 and top_p within [0, 1].", status_code=422
        )
    if not 1 <= params.num_outputs <= 4:
        raise AppError(ErrorCode.VALIDATION_ERROR, "num_outputs must be between 1 and 4.", status_code=422)


class _Windows(Protocol):
    """Decodes one window for every take: ``(takes, K, context)`` tokens in, ``(takes, K, new)`` out."""

    def __call__(
        self, window: Window, context: torch.Tensor, on_step: Callable[[int], None], *, start_frame: int
    ) -> torch.Tensor: ...


def _generate(
    loaded: LoadedModel, params: GenerationParams, on_progress: ProgressCallback, windows_decoder: _Windows
) -> list[GeneratedAudio]:
    import torch

    prompt_tokens, prompt_samples = _prompt_tokens(loaded, params.prompt_audio, params.num_outputs)
    wanted = round(params.duration_s * loaded.sample_rate)
    # At least K frames, so the delay pattern fits (the excess is trimmed).
    new_frames = max(math.ceil(wanted / loaded.hop_length), loaded.codebooks_per_channel)
    windows = plan_windows(new_frames, prompt_tokens.shape[-1])
    total_steps = sum(window_steps(loaded, window.new_frames) for window in windows)

    tokens = prompt_tokens
    done = 0
    on_progress(0, total_steps, _detail(windows[0], len(windows), 0, total_steps))
    for window in windows:
        context = tokens[..., tokens.shape[-1] - window.context_frames :]

        def on_step(step: int, window: Window = window, offset: int = done) -> None:
            on_progress(offset + step, total_steps, _detail(window, len(windows), offset + step, total_steps))

        # Where the window's context starts on the timeline of the new audio (melody alignment): negative
        # while the context still holds prompt frames, which come before the new audio.
        start_frame = tokens.shape[-1] - window.context_frames - prompt_tokens.shape[-1]
        tokens = torch.cat([tokens, windows_decoder(window, context, on_step, start_frame=start_frame)], dim=-1)
        done += window_steps(loaded, window.new_frames)

    if not params.include_prompt:
        tokens = tokens[..., prompt_tokens.shape[-1] :]
        prompt_samples = 0
    audio = decode_tokens(loaded, tokens)
    length = prompt_samples + wanted
    if audio.shape[-1] < length:
        raise AppError(
            ErrorCode.GENERATION_FAILED,
            f"decoder returned {audio.shape[-1]} samples, expected at least {length}",
            status_code=500,
        )
    takes = np.clip(audio[..., :length], -1.0, 1.0).astype(np.float32, copy=False)
    return [GeneratedAudio(samples=np.ascontiguousarray(take), sample_rate=loaded.sample_rate) for take in takes]


class _PlainWindows:
    """transformers' ``generate`` for every window; torch's global generator, seeded once per piece."""

    def __init__(self, loaded: LoadedModel, params: GenerationParams) -> None:
        import torch

        self._loaded = loaded
        self._text = loaded.processor(text=[params.prompt] * params.num_outputs, padding=True, return_tensors="pt").to(
            loaded.device
        )
        self._sampling = Sampling(params.temperature, params.top_k, params.top_p, params.guidance_scale)
        self._params = params
        torch.manual_seed(params.seed)  # one stream for the whole piece: same seed, same audio

    def __call__(
        self, window: Window, context: torch.Tensor, on_step: Callable[[int], None], *, start_frame: int
    ) -> torch.Tensor:
        inputs = dict(self._text)
        if self._params.melody is not None:
            # Without one, transformers conditions a melody model on its "no melody" chroma.
            offset = round(self._params.melody_start_s * self._loaded.frame_rate)
            inputs["input_features"] = melody_features(
                self._loaded, self._params.melody, start_frame + offset, self._params.num_outputs
            )
        return generate_window(
            self._loaded, inputs, context, window.new_frames, sampling=self._sampling, on_step=on_step
        )


class _BatchedWindows:
    """Each take is a row of the shared decoding batch, with its own counter-based random stream."""

    def __init__(
        self, loaded: LoadedModel, scheduler: CohortScheduler, params: GenerationParams, arrived: Callable[[], None]
    ) -> None:
        self._loaded = loaded
        self._scheduler = scheduler
        self._params = params
        self._arrived = arrived
        self._text_states = encode_text(loaded, params.prompt)

    def __call__(
        self, window: Window, context: torch.Tensor, on_step: Callable[[int], None], *, start_frame: int
    ) -> torch.Tensor:
        import torch

        p = self._params
        stopped: list[BaseException] = []

        def take_step(take: int) -> Callable[[int], None]:
            def report(step: int) -> None:
                if stopped:  # another take of this job was stopped: stop this one too
                    raise stopped[0]
                if take == 0:
                    try:
                        on_step(step)
                    except BaseException as error:
                        stopped.append(error)
                        raise

            return report

        rows = [
            Row(
                text_states=self._text_states,
                context=context[take],
                new_frames=window.new_frames,
                sampling=RowSampling(
                    p.temperature, p.top_k, p.top_p, p.guidance_scale, p.seed, stream=(take << 16) | window.index
                ),
                on_step=take_step(take),
            )
            for take in range(p.num_outputs)
        ]
        self._scheduler.run(rows, arrived=self._arrived)
        for row in rows:
            if row.error is not None:
                raise row.error
        return torch.stack([row.result for row in rows if row.result is not None])


def melody_features(loaded: LoadedModel, melody: PromptAudio, start_frame: int, takes: int) -> torch.Tensor:
    """One-hot chroma ``(takes, frames, 12)`` of the melody under one window whose first frame is
    ``start_frame`` frames into the melody: its 30 s of melody, the melody looped (as audiocraft aligns it).
    ``start_frame`` is negative for a window that starts on an audio prompt: the prompt lies over the end of
    the loop before, so the new audio after it follows the melody from where it was asked to."""
    import torch

    mono = to_channels(resample(melody.samples, melody.sample_rate, loaded.sample_rate), 1)[0]
    if mono.size == 0:
        raise AppError(ErrorCode.AUDIO_EMPTY, "The melody audio is empty.", status_code=422)
    heard = looped_span(mono, start_frame * loaded.hop_length, WINDOW_FRAMES * loaded.hop_length)
    chroma = chroma_features(heard, loaded.sample_rate)
    return torch.from_numpy(chroma)[None].expand(takes, -1, -1).to(loaded.device)


def looped_span(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``samples`` repeated end to end forever (both ways), from sample ``start``."""
    span: np.ndarray = samples[(start + np.arange(length)) % samples.size]
    return span


def _detail(window: Window, windows: int, step: int, total: int) -> str:
    where = f"window {window.index + 1}/{windows}: " if windows > 1 else ""
    return f"{where}decoding step {step} (of {total} in all)"


def _prompt_tokens(loaded: LoadedModel, prompt: PromptAudio | None, batch: int) -> tuple[torch.Tensor, int]:
    """Tokens ``(batch, K, frames)`` of the audio prompt (empty without one) and its length in samples."""
    import torch

    if prompt is None:
        return torch.zeros((batch, loaded.num_codebooks, 0), dtype=torch.long), 0
    samples = to_channels(resample(prompt.samples, prompt.sample_rate, loaded.sample_rate), loaded.channels)
    # Whole frames only, so the continuation starts right where the prompt ends; the first
    # few milliseconds of the prompt are what gets dropped.
    usable = samples.shape[-1] - samples.shape[-1] % loaded.hop_length
    if usable <= 0:
        raise AppError(
            ErrorCode.AUDIO_EMPTY, "The audio prompt is shorter than one codec frame (20 ms).", status_code=422
        )
    tokens = encode_audio(loaded, samples[:, samples.shape[-1] - usable :])
    return tokens.expand(batch, -1, -1).clone(), usable
