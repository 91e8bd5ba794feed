"""MusicGen text-to-music engine: loads one model and turns prompts into waveforms.

Every model ref (Hugging Face id, local folder, ``random:<name>``) ends up in the same
``MusicgenForConditionalGeneration.from_pretrained`` + ``AutoProcessor.from_pretrained`` call.
``torch`` and ``transformers`` are imported lazily so importing this module stays cheap.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundstage.errors import AppError, ErrorCode, JobCancelledError, ModelUnavailableError
from soundstage_musicgen.random_models import MARKER_FILE, build_random_model, is_random_ref

__all__ = [
    "MAX_DURATION_S",
    "EngineInfo",
    "GeneratedAudio",
    "GenerationParams",
    "JobCancelledError",
    "MusicgenEngine",
    "ProgressCallback",
]

# MusicGen was trained on 30 s windows (1500 frames at 50 Hz); longer needs windowed long-form generation.
MAX_DURATION_S = 30.0
# Report progress every this many decoder steps (plus the first and the last one).
PROGRESS_EVERY_STEPS = 5
# One HEAD request to the hub before downloading: huggingface_hub itself retries unreachable hosts
# with backoff for ~25 s, far too long to tell a worker that the model is unavailable.
HUB_PROBE_TIMEOUT_S = 8.0
_FIX_HINT = (
    "To fix: give this machine network access to huggingface.co, or pre-populate the Hugging Face "
    "cache (HF_HOME) with the model, or set MUSICGEN_MODEL to a local model folder. For offline "
    "testing use MUSICGEN_MODEL=random:tiny (random weights, noise-like audio)."
)

ProgressCallback = Callable[[int, int], None]
"""``(decoder_steps_done, total_steps)``; may raise :class:`JobCancelledError` to abort generation."""


@dataclass(frozen=True)
class GenerationParams:
    """One generation request. ``prompt`` already includes any mood folding."""

    prompt: str
    duration_s: float
    temperature: float = 1.0
    top_k: int = 250  # 0 disables top-k
    top_p: float = 0.0  # 0 disables nucleus sampling
    guidance_scale: float = 3.0  # > 1 enables classifier-free guidance
    seed: int = 0  # always concrete; the caller resolves -1 to a random seed


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
    max_duration_s: float


@dataclass(frozen=True)
class _Loaded:
    model: Any  # MusicgenForConditionalGeneration, eval mode, on ``info.device``
    processor: Any  # MusicgenProcessor
    info: EngineInfo
    frame_rate: int  # codec frames per second (50)
    num_codebooks: int  # decoder codebooks per channel (4)


class MusicgenEngine:
    """Owns one loaded MusicGen model; ``generate`` calls are serialised (the RNG seed is global)."""

    def __init__(self, model_ref: str, cache_dir: Path, device: str = "auto") -> None:
        """``cache_dir`` holds built ``random:*`` models; hub downloads use the HF cache (HF_HOME)."""
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
        self._model_ref = model_ref
        self._cache_dir = Path(cache_dir)
        self._device = device
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model once (idempotent). Raises :class:`ModelUnavailableError`."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()

    @property
    def model_ref(self) -> str:
        """The model as configured (`MUSICGEN_MODEL`): the name jobs are recorded with."""
        return self._model_ref

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def info(self) -> EngineInfo:
        """Model facts; loads the model first if needed."""
        return self._ensure_loaded().info

    def generate(self, params: GenerationParams, on_progress: ProgressCallback | None = None) -> GeneratedAudio:
        """Generate exactly ``round(duration_s * sample_rate)`` samples for ``params``.

        Raises ``AppError(DURATION_EXCEEDS_MODEL_LIMIT)`` above 30 s, ``AppError(VALIDATION_ERROR)``
        for unusable sampling parameters, and lets :class:`JobCancelledError` from ``on_progress`` through.
        """
        _validate(params)
        loaded = self._ensure_loaded()
        with self._lock:
            return _generate(loaded, params, on_progress)

    def _ensure_loaded(self) -> _Loaded:
        self.load()
        if self._loaded is None:  # load() either sets it or raises
            raise RuntimeError("model failed to load")
        return self._loaded

    def _load(self) -> _Loaded:
        import torch

        gpu = torch.cuda.is_available()
        if self._device == "cuda" and not gpu:
            raise ModelUnavailableError("The MusicGen engine was configured for 'cuda' but no CUDA GPU is available.")
        device = "cuda" if self._device == "cuda" or (self._device == "auto" and gpu) else "cpu"
        source, random_weights = self._resolve_source()
        model, processor = _load_pretrained(source)
        model = model.to(device=device, dtype=torch.float32).eval()
        codec = model.config.audio_encoder
        info = EngineInfo(
            model=self._model_ref,
            device=device,
            gpu_available=gpu,
            random_weights=random_weights,
            sample_rate=int(codec.sampling_rate),
            channels=int(model.config.decoder.audio_channels),
            max_duration_s=MAX_DURATION_S,
        )
        frame_rate = int(codec.frame_rate)
        return _Loaded(model, processor, info, frame_rate, _codebooks_per_channel(model))

    def _resolve_source(self) -> tuple[str, bool]:
        """``(folder or hub id, random_weights)`` for the configured ref."""
        ref = self._model_ref
        if is_random_ref(ref):
            return str(build_random_model(ref, self._cache_dir)), True
        path = Path(ref).expanduser()
        if path.exists() or ref.startswith(("/", ".", "~")):
            if not (path / "config.json").is_file():
                raise ModelUnavailableError(
                    f"MusicGen model path {ref!r} is not a model folder (no config.json there). Set "
                    "MUSICGEN_MODEL to a folder written by save_pretrained, a Hugging Face id such as "
                    "facebook/musicgen-small, or random:tiny for offline testing.",
                    details={"model": ref},
                )
            return str(path), (path / MARKER_FILE).is_file()
        return ref, False


def _load_pretrained(source: str) -> tuple[Any, Any]:
    """Load model + processor from a folder, or a hub id: the HF cache first, else probe and download."""
    if Path(source).is_dir():
        try:
            return _from_pretrained(source, local_files_only=True)
        except Exception as exc:
            raise ModelUnavailableError(
                f"Could not load a MusicGen model from folder {source!r}: {exc}", details={"model": source}
            ) from exc
    try:
        return _from_pretrained(source, local_files_only=True)  # already cached: no network needed
    except Exception as cache_error:  # not (fully) cached: go to the network
        _probe_hub(source)
        try:
            return _from_pretrained(source, local_files_only=False)
        except Exception as exc:
            raise ModelUnavailableError(
                f"Could not download MusicGen model {source!r}: {exc}. {_FIX_HINT}",
                details={"model": source, "cache_error": str(cache_error)},
            ) from exc


def _from_pretrained(source: str, *, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoProcessor, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

    # Progress bars and config warnings (e.g. pad/bos ids outside the codebook, which every
    # MusicGen checkpoint has by design) are noise in a worker's log.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]

    model = MusicgenForConditionalGeneration.from_pretrained(source, local_files_only=local_files_only)
    processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        source, local_files_only=local_files_only
    )
    return model, processor


def _probe_hub(repo_id: str) -> None:
    """Fail within HUB_PROBE_TIMEOUT_S if the hub cannot serve ``repo_id`` (no retries, unlike downloads)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as exc:
        raise ModelUnavailableError(
            f"MusicGen model {repo_id!r} is not in the local Hugging Face cache and cannot be fetched "
            f"from the hub ({type(exc).__name__}: {exc}). {_FIX_HINT}",
            details={"model": repo_id, "reason": type(exc).__name__},
        ) from exc


def _codebooks_per_channel(model: Any) -> int:
    # Stereo checkpoints interleave left/right codebooks (8 = 2 x 4); the delay pattern is per channel.
    decoder = model.config.decoder
    return int(decoder.num_codebooks) // int(decoder.audio_channels)


def _validate(params: GenerationParams) -> None:
    if not math.isfinite(params.duration_s) or params.duration_s <= 0:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            "duration_s must be a positive number of seconds.",
            status_code=422,
            details={"duration_s": params.duration_s},
        )
    if params.duration_s > MAX_DURATION_S:
        raise AppError(
            ErrorCode.DURATION_EXCEEDS_MODEL_LIMIT,
            f"MusicGen generates at most {MAX_DURATION_S:g} s per request (its training window); "
            f"{params.duration_s:g} s was requested. Ask for {MAX_DURATION_S:g} s or less.",
            status_code=422,
            details={"duration_s": params.duration_s, "max_duration_s": MAX_DURATION_S},
        )
    if not params.temperature >= 0 or params.top_k < 0 or not 0 <= params.top_p <= 1:
        raise AppError(
            ErrorCode.VALIDATION_ERROR, "temperature must be >= 0, top_k >= 0 and top_p within [0, 1].", status_code=422
        )


def _generate(loaded: _Loaded, params: GenerationParams, on_progress: ProgressCallback | None) -> GeneratedAudio:
    import torch

    info = loaded.info
    # The delay pattern needs max_length >= 2K - 1 or transformers silently skips it; a minimum of K
    # frames keeps every request on the delayed path (the excess is trimmed below).
    frames = max(math.ceil(params.duration_s * loaded.frame_rate), loaded.num_codebooks)
    # Step counting (verified on transformers 5.23): the decoder starts from one BOS column, so
    # max_length = 1 + max_new_tokens, and every decoder step appends one column across all K codebooks.
    # Codebook k is delayed by k steps: it is BOS-padded for its first k+1 columns and pad-filled for its
    # last K-1-k, leaving max_length - K = max_new_tokens - (K - 1) real frames. Hence frames + K - 1 steps.
    steps = frames + loaded.num_codebooks - 1
    progress = _progress_criteria(steps, on_progress)
    inputs = loaded.processor(text=[params.prompt], padding=True, return_tensors="pt").to(info.device)
    if on_progress is not None:
        on_progress(0, steps)
    with torch.inference_mode():
        torch.manual_seed(params.seed)  # seeds CPU and all CUDA devices; generate has no generator arg
        audio = loaded.model.generate(
            **inputs,
            **_sampling_arguments(params),
            max_new_tokens=steps,
            **_guidance_arguments(params.guidance_scale),
            stopping_criteria=progress,
        )
    # audio_values: (batch=1, channels, frames * hop); stereo decodes left and right into channels 0, 1.
    samples = audio[0].float().cpu().numpy()
    wanted = round(params.duration_s * info.sample_rate)
    if samples.shape[-1] < wanted:
        raise AppError(
            ErrorCode.GENERATION_FAILED,
            f"decoder returned {samples.shape[-1]} samples, expected at least {wanted}",
            status_code=500,
        )
    samples = np.clip(samples[:, :wanted], -1.0, 1.0).astype(np.float32, copy=False)
    return GeneratedAudio(samples=np.ascontiguousarray(samples), sample_rate=info.sample_rate)


# transformers only runs classifier-free guidance for scales above 1 and then combines
# the conditional and unconditional logits with that fixed scale; below 1 we run it at
# this scale and rescale the conditional half first (see _RescaledGuidance).
_NATIVE_GUIDANCE = 2.0


def _guidance_arguments(scale: float) -> dict[str, Any]:
    """CFG as audiocraft defines it, for every scale in 0-10: logits = u + scale * (c - u).

    1 means the conditional logits alone (no guidance pass); 0 means unconditional generation.
    """
    if scale == 1:
        return {"guidance_scale": None}
    if scale > 1:
        return {"guidance_scale": scale}
    from transformers import LogitsProcessorList

    return {"guidance_scale": _NATIVE_GUIDANCE, "logits_processor": LogitsProcessorList([_rescaled_guidance(scale)])}


def _rescaled_guidance(scale: float) -> Any:
    import torch
    from transformers import LogitsProcessor

    class _RescaledGuidance(LogitsProcessor):
        """Runs just before transformers' CFG step (which computes u + 2 * (c' - u)) and sets
        c' = u + (scale / 2) * (c - u), so the result is u + scale * (c - u)."""

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            half = scores.shape[0] // 2
            cond, uncond = scores[:half], scores[half:]
            rescaled = uncond + (scale / _NATIVE_GUIDANCE) * (cond - uncond)
            return torch.cat([rescaled, uncond], dim=0)  # type: ignore[return-value]

    return _RescaledGuidance()


def _sampling_arguments(params: GenerationParams) -> dict[str, Any]:
    """Temperature 0 means greedy decoding (transformers rejects a zero temperature when sampling)."""
    if params.temperature == 0:
        return {"do_sample": False}
    return {
        "do_sample": True,
        "temperature": params.temperature,
        "top_k": params.top_k,  # 0 = off
        "top_p": params.top_p if params.top_p > 0 else 1.0,  # 1.0 = off
    }


def _progress_criteria(total: int, on_progress: ProgressCallback | None) -> Any:
    """A StoppingCriteriaList whose criterion never stops but reports ``(step, total)``: transformers
    calls it once per decoder step and does not catch its exceptions, so JobCancelledError aborts."""
    if on_progress is None:
        return None
    report: ProgressCallback = on_progress  # a non-Optional name for the nested class
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Progress(StoppingCriteria):
        def __init__(self) -> None:
            self.step = 0

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            if self.step < total:  # never report past total, even if a backend runs an extra step
                self.step += 1
                if self.step % PROGRESS_EVERY_STEPS == 0 or self.step == total:
                    report(self.step, total)
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            return done  # type: ignore[return-value]

    return StoppingCriteriaList([_Progress()])
