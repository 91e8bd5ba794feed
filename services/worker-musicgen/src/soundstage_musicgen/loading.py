"""Loading a MusicGen checkpoint: hub id, local folder or ``random:<name>``, all through ``from_pretrained``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundstage.errors import ModelUnavailableError
from soundstage_musicgen.random_models import MARKER_FILE, build_random_model, is_random_ref

# One HEAD request to the hub before downloading: huggingface_hub itself retries unreachable hosts
# with backoff for ~25 s, far too long to tell a worker that the model is unavailable.
HUB_PROBE_TIMEOUT_S = 8.0
_FIX_HINT = (
    "To fix: give this machine network access to huggingface.co, or pre-populate the Hugging Face "
    "cache (HF_HOME) with the model, or set MUSICGEN_MODEL to a local model folder. For offline "
    "testing use MUSICGEN_MODEL=random:tiny (random weights, noise-like audio)."
)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded checkpoint and the facts generation needs about it."""

    model: Any  # MusicgenForConditionalGeneration, eval mode, on ``device``
    processor: Any  # MusicgenProcessor
    device: str  # "cpu" or "cuda"
    gpu_available: bool
    random_weights: bool
    sample_rate: int  # Hz of the audio codec (32000 for MusicGen)
    frame_rate: int  # codec frames per second (50)
    channels: int  # 1, or 2 for the stereo checkpoints
    num_codebooks: int  # decoder codebooks in total (4 mono, 8 stereo: left/right interleaved)
    melody: bool = False  # a MusicgenMelody checkpoint: conditions on chroma, decoded by the plain path

    @property
    def codebooks_per_channel(self) -> int:
        return self.num_codebooks // self.channels

    @property
    def hop_length(self) -> int:
        """Audio samples per codec frame (640)."""
        return self.sample_rate // self.frame_rate

    def delay(self, codebook: int) -> int:
        """Steps codebook ``codebook`` lags behind the first one (the delay pattern; stereo
        checkpoints interleave left/right, so codebooks 2d and 2d+1 share delay d)."""
        return codebook // self.channels


def load_model(ref: str, cache_dir: Path, device: str) -> LoadedModel:
    """Load ``ref`` on ``device`` (``auto``, ``cpu`` or ``cuda``). Raises ModelUnavailableError."""
    import torch

    gpu = torch.cuda.is_available()
    if device == "cuda" and not gpu:
        raise ModelUnavailableError("The MusicGen engine was configured for 'cuda' but no CUDA GPU is available.")
    chosen = "cuda" if device == "cuda" or (device == "auto" and gpu) else "cpu"
    source, random_weights = resolve_source(ref, cache_dir)
    model, processor = _load_pretrained(source)
    model = model.to(device=chosen, dtype=torch.float32).eval()
    codec = model.config.audio_encoder
    return LoadedModel(
        model=model,
        processor=processor,
        device=chosen,
        gpu_available=gpu,
        random_weights=random_weights,
        sample_rate=int(codec.sampling_rate),
        frame_rate=int(codec.frame_rate),
        channels=int(model.config.decoder.audio_channels),
        num_codebooks=int(model.config.decoder.num_codebooks),
        melody=model.config.model_type == "musicgen_melody",
    )


def resolve_source(ref: str, cache_dir: Path) -> tuple[str, bool]:
    """``(folder or hub id, random_weights)`` for the configured ref."""
    if is_random_ref(ref):
        return str(build_random_model(ref, cache_dir)), True
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
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"Could not load a MusicGen model from folder {source!r}: {exc}", details={"model": source}
            ) from exc
    try:
        return _from_pretrained(source, local_files_only=True)  # already cached: no network needed
    except ModelUnavailableError:
        raise
    except Exception as cache_error:  # not (fully) cached: go to the network
        _probe_hub(source)
        try:
            return _from_pretrained(source, local_files_only=False)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"Could not download MusicGen model {source!r}: {exc}. {_FIX_HINT}",
                details={"model": source, "cache_error": str(cache_error)},
            ) from exc


def _from_pretrained(source: str, *, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoProcessor, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

    # Progress bars and config warnings (e.g. pad/bos ids outside the codebook, which every
    # MusicGen checkpoint has by design) are noise in a worker's log.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]

    config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    if config.model_type == "musicgen_melody":
        from transformers import AutoTokenizer, MusicgenMelodyForConditionalGeneration

        # The melody processor's chroma needs torchaudio; `chroma.py` computes it instead,
        # so only the tokenizer is loaded (it takes the same text arguments as the processor).
        melody = MusicgenMelodyForConditionalGeneration.from_pretrained(source, local_files_only=local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        return melody, tokenizer
    if config.model_type != "musicgen":
        raise ModelUnavailableError(
            f"{source!r} is a {config.model_type!r} checkpoint, not a MusicGen one.",
            details={"model": source, "model_type": config.model_type},
        )
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
