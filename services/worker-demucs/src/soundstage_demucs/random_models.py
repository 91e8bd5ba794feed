"""Offline builders for random-weight Demucs models (``random:<name>`` model refs).

A random model is a real ``HTDemucs`` (the architecture of ``htdemucs``) with deterministic random
weights. It is written as a demucs model repository (``<sig>.th`` plus a ``<name>.yaml`` bag, what
``demucs --repo`` and DEMUCS_MODEL_DIR read) and loaded back through the very same local-folder
path as an operator's own model files, so the whole pool runs and is tested without network access.
The separated "stems" of a random model are noise-like: for tests and benchmarks only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from soundstage.errors import ModelUnavailableError

RANDOM_PREFIX = "random:"
MARKER_FILE = "soundstage_random.json"
BUILDER_VERSION = 1
BUILD_SEED = 0
FOUR_SOURCES = ("drums", "bass", "other", "vocals")
SIX_SOURCES = ("drums", "bass", "other", "vocals", "guitar", "piano")
# Threads of one process share torch's global RNG, so their builds must not interleave.
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class RandomModelSpec:
    description: str
    sources: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)  # HTDemucs constructor arguments


# htdemucs' own segment: 7.8 s at 44.1 kHz.
_SEGMENT = Fraction(39, 5)
# Depth stays 4 as in htdemucs: the cross-transformer attends over time frames, and a shallower
# encoder would leave 16x more of them (far slower, not smaller). Narrow layers keep it tiny.
_TINY: dict[str, Any] = {
    "channels": 4,
    "t_layers": 1,
    "t_heads": 2,
    "t_hidden_scale": 1.0,
    "dconv_comp": 4,
    "segment": _SEGMENT,
}

SPECS: dict[str, RandomModelSpec] = {
    "tiny": RandomModelSpec("tiny HTDemucs, 4 sources", FOUR_SOURCES, _TINY),
    "tiny-6s": RandomModelSpec("tiny HTDemucs, 6 sources (htdemucs_6s layout)", SIX_SOURCES, _TINY),
    # The architecture of the released `htdemucs` (41.5 M parameters): for benchmarks.
    "htdemucs": RandomModelSpec(
        "full-size htdemucs architecture", FOUR_SOURCES, {"bottom_channels": 512, "segment": _SEGMENT}
    ),
}


def is_random_ref(ref: str) -> bool:
    return ref.startswith(RANDOM_PREFIX)


def bag_name(ref: str) -> str:
    """The bag (yaml) name a random model is saved under in its folder."""
    return "random_" + ref.removeprefix(RANDOM_PREFIX).replace("-", "_")


def build_random_model(ref: str, cache_dir: Path) -> Path:
    """Build ``ref`` (``random:tiny``, ``random:tiny-6s``, ``random:htdemucs``) into a model folder
    under ``cache_dir`` once, and return the folder."""
    name = ref.removeprefix(RANDOM_PREFIX)
    spec = SPECS.get(name)
    if spec is None:
        raise ModelUnavailableError(
            f"Unknown random model {ref!r}; choose one of: {', '.join(RANDOM_PREFIX + key for key in SPECS)}.",
            details={"model": ref},
        )
    target = cache_dir / "demucs" / f"random-{name}"
    marker = target / MARKER_FILE
    with _BUILD_LOCK:
        if _built(marker):
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename, so a concurrent worker never sees half a folder.
        staging = Path(tempfile.mkdtemp(prefix=f".random-{name}-", dir=cache_dir))
        try:
            _write_model(spec, ref, staging)
            if _built(marker):  # another process finished first: keep its folder, which may be in use
                shutil.rmtree(staging)
                return target
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _built(marker: Path) -> bool:
    try:
        return bool(json.loads(marker.read_text()).get("version") == BUILDER_VERSION)
    except (OSError, ValueError):
        return False


def _write_model(spec: RandomModelSpec, ref: str, folder: Path) -> None:
    import torch
    import yaml
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(BUILD_SEED)
        model = HTDemucs(sources=list(spec.sources), samplerate=44100, audio_channels=2, **spec.kwargs)
    finally:
        torch.random.set_rng_state(state)
    args, kwargs = model._init_args_kwargs
    # The package `demucs.states.load_model` reads (what `serialize_model` writes, without its
    # training arguments, which need omegaconf).
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None, half=False)}  # type: ignore[no-untyped-call]
    signature = "rnd" + bag_name(ref).removeprefix("random_").replace("_", "")
    torch.save(package, folder / f"{signature}.th")
    (folder / f"{bag_name(ref)}.yaml").write_text(yaml.safe_dump({"models": [signature]}))
    (folder / MARKER_FILE).write_text(
        json.dumps({"version": BUILDER_VERSION, "ref": ref, "description": spec.description, "random": True})
    )
