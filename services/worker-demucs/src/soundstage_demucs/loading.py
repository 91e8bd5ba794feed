"""Loading a Demucs model: a demucs name, a local file or folder, or ``random:<name>``.

Where a model comes from, in order:
- ``random:*``: built offline into the model cache as a demucs model folder, then loaded from it;
- a path (``/models/my.th``, ``./repo``, ``repo/name.yaml``): that local file or folder;
- DEMUCS_MODEL_DIR set: the name from that folder only (air-gapped sites; nothing is downloaded);
- otherwise as demucs 4.1.0 does: the Hugging Face hub (its cache first), then the legacy demucs URLs
  (the torch hub cache first). Each network source is probed once with a short timeout, so an
  unreachable model fails its jobs in seconds with ``model_unavailable`` instead of retrying for minutes.
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundstage.errors import ModelUnavailableError
from soundstage_demucs.random_models import MARKER_FILE, bag_name, build_random_model, is_random_ref

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 8.0
LEGACY_ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/"
_FIX_HINT = (
    "To fix: give this machine network access to huggingface.co (or dl.fbaipublicfiles.com), or "
    "pre-populate the Hugging Face cache (HF_HOME) or torch hub cache (TORCH_HOME), or put the model "
    "files (<sig>.th and <name>.yaml) in DEMUCS_MODEL_DIR. For offline testing use DEMUCS_MODEL=random:tiny "
    "(random weights, noise-like stems)."
)


@dataclass(frozen=True)
class LoadedSeparator:
    """A loaded model (a demucs ``BagOfModels`` or single model, eval mode) and the facts a job needs."""

    ref: str  # the model as configured (`htdemucs`, a path, `random:tiny`)
    model: Any
    sub_models: list[Any]  # the models a separation runs (one for a single model)
    weights: list[list[float]]  # per sub-model, per source (demucs' bag weights)
    sources: list[str]
    sample_rate: int
    audio_channels: int
    device: str
    gpu_available: bool
    random_weights: bool

    @property
    def max_segment(self) -> float | None:
        """The longest segment (seconds) every sub-model takes: transformer models are bounded."""
        from demucs.htdemucs import HTDemucs

        limits = [float(model.segment) for model in self.sub_models if isinstance(model, HTDemucs)]
        return min(limits) if limits else None


def load_separator(ref: str, *, model_dir: Path | None, cache_dir: Path, device: str) -> LoadedSeparator:
    """Load ``ref`` on ``device`` (``auto``, ``cpu`` or ``cuda``). Raises ModelUnavailableError."""
    import torch
    from demucs.apply import BagOfModels

    gpu = torch.cuda.is_available()
    if device == "cuda" and not gpu:
        raise ModelUnavailableError("The Demucs pool was configured for 'cuda' but no CUDA GPU is available.")
    chosen = "cuda" if device == "cuda" or (device == "auto" and gpu) else "cpu"
    model, random_weights = _load(ref, model_dir, cache_dir)
    if isinstance(model, BagOfModels):
        sub_models = list(model.models)
        weights = [list(map(float, row)) for row in model.weights]
    else:
        sub_models = [model]
        weights = [[1.0] * len(model.sources)]
    for sub_model in sub_models:
        sub_model.to(chosen).eval()
    return LoadedSeparator(
        ref=ref,
        model=model,
        sub_models=sub_models,
        weights=weights,
        sources=list(model.sources),
        sample_rate=int(model.samplerate),
        audio_channels=int(model.audio_channels),
        device=chosen,
        gpu_available=gpu,
        random_weights=random_weights,
    )


def _load(ref: str, model_dir: Path | None, cache_dir: Path) -> tuple[Any, bool]:
    if is_random_ref(ref):
        folder = build_random_model(ref, cache_dir)
        return _from_repo(bag_name(ref), folder, ref), True
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith(("/", ".", "~")):
        name, folder = _local_name(path, ref)
        return _from_repo(name, folder, ref), (folder / MARKER_FILE).is_file()
    if model_dir is not None:
        return _from_repo(ref, model_dir, ref), (model_dir / MARKER_FILE).is_file()
    return _from_network(ref), False


def _local_name(path: Path, ref: str) -> tuple[str, Path]:
    """(name, repo folder) for a local model path: a `.th`/`.yaml` file, or a folder holding one bag or model."""
    if path.is_file() and path.suffix in (".th", ".yaml"):
        name = path.stem.split("-", 1)[0] if path.suffix == ".th" else path.stem
        return name, path.parent
    if path.is_dir():
        bags = sorted(path.glob("*.yaml"))
        models = sorted(path.glob("*.th"))
        if len(bags) == 1:
            return bags[0].stem, path
        if not bags and len(models) == 1:
            return models[0].stem.split("-", 1)[0], path
        raise ModelUnavailableError(
            f"Demucs model folder {ref!r} holds {len(bags)} bag(s) and {len(models)} model file(s); name one "
            "file (`<folder>/<name>.yaml` or `<folder>/<sig>.th`) instead.",
            details={"model": ref},
        )
    raise ModelUnavailableError(
        f"Demucs model path {ref!r} is not a `.th` or `.yaml` model file nor a folder of them.",
        details={"model": ref},
    )


def _from_repo(name: str, folder: Path, ref: str) -> Any:
    from demucs.pretrained import get_model

    if not folder.is_dir():
        raise ModelUnavailableError(f"Demucs model folder {str(folder)!r} does not exist.", details={"model": ref})
    try:
        return get_model(name, repo=folder)
    except (Exception, SystemExit) as exc:  # demucs raises ModelLoadingError, or exits through `fatal`
        available = sorted({file.stem for file in folder.glob("*.yaml")} | {f.stem for f in folder.glob("*.th")})
        raise ModelUnavailableError(
            f"Could not load Demucs model {name!r} from {str(folder)!r} ({type(exc).__name__}: {exc}). "
            f"That folder holds: {', '.join(available) or 'nothing'}.",
            details={"model": ref, "folder": str(folder)},
        ) from exc


def _from_network(name: str) -> Any:
    try:
        return _from_hub(name, local_only=True)  # already in the Hugging Face cache: no network needed
    except Exception:
        logger.debug("Demucs model %s is not in the Hugging Face cache", name)
    hub_error = _probe(_hub_probe_url(name))
    if hub_error is None:
        try:
            return _from_hub(name, local_only=False)
        except Exception as exc:
            logger.info("Demucs model %s: not on the Hugging Face hub (%s); trying the legacy URLs", name, exc)
    legacy_error = None if _legacy_cached(name) else _probe(LEGACY_ROOT_URL)
    if legacy_error is None:
        try:
            return _from_legacy(name)
        except Exception as exc:
            legacy_error = f"{type(exc).__name__}: {exc}"
    raise ModelUnavailableError(
        f"Demucs model {name!r} is not cached and could not be fetched (Hugging Face hub: "
        f"{hub_error or 'not found there'}; legacy demucs URLs: {legacy_error}). {_FIX_HINT}",
        details={"model": name},
    )


def _hub_repo(name: str) -> tuple[str, str]:
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

    namespace, _, base = name.rpartition("/")
    return f"{namespace or DEFAULT_NAMESPACE}/{hf_repo_name(base)}", base


def _hub_probe_url(name: str) -> str:
    from huggingface_hub import hf_hub_url

    repo_id, base = _hub_repo(name)
    return str(hf_hub_url(repo_id, f"{base}.yaml"))


def _from_hub(name: str, *, local_only: bool) -> Any:
    """demucs.hf.get_hf_model, with `local_files_only` so a cached model loads with no network at all."""
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model
    from huggingface_hub import hf_hub_download

    repo_id, base = _hub_repo(name)
    with open(hf_hub_download(repo_id, f"{base}.yaml", local_files_only=local_only)) as file:
        bag = yaml.safe_load(file)
    models = [
        load_safetensors_model(hf_hub_download(repo_id, f"{sig}.safetensors", local_files_only=local_only))
        for sig in bag["models"]
    ]
    return BagOfModels(models, bag.get("weights"), bag.get("segment")).eval()


def _legacy_repo() -> Any:
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files
    from demucs.repo import AnyModelRepo, BagOnlyRepo, RemoteRepo

    model_repo = RemoteRepo(_parse_remote_files(REMOTE_ROOT / "files.txt"))
    return AnyModelRepo(model_repo, BagOnlyRepo(REMOTE_ROOT, model_repo))


def _legacy_cached(name: str) -> bool:
    """Whether every file of a legacy model is already in the torch hub cache (then no network is used)."""
    import torch.hub
    import yaml
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    urls = _parse_remote_files(REMOTE_ROOT / "files.txt")
    bag_file = REMOTE_ROOT / f"{name}.yaml"
    signatures = yaml.safe_load(bag_file.read_text())["models"] if bag_file.is_file() else [name]
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return all(sig in urls and (checkpoints / urls[sig].rsplit("/", 1)[-1]).is_file() for sig in signatures)


def _from_legacy(name: str) -> Any:
    model = _legacy_repo().get_model(name)
    model.eval()
    return model


def _probe(url: str) -> str | None:
    """None if ``url`` answers within PROBE_TIMEOUT_S (any HTTP status), else why not."""
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - fixed https URLs, not client input
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):  # noqa: S310
            return None
    except urllib.error.HTTPError:
        return None  # reachable; the download itself says whether the file exists
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
