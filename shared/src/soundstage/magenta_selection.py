"""The magenta pool's selected checkpoint, kept in Redis: published by `POST /magenta/model/select`, read by
the API when it writes a job (the job records it) and followed by every magenta worker (each loads it as soon
as it sees it, before a job asks). Without a selection in Redis, the boot default of the settings holds
(MRT_SIZE, MRT_CKPT_REPO, MRT_CKPT_STEP, MRT_ASSETS_REPO)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from soundstage.db.models import utcnow
from soundstage.schemas.magenta_model import SIZE_ALIASES, STEP_LATEST, STEP_NONE, ModelSelection, parse_step
from soundstage.settings import Settings

KEY = "soundstage:magenta:selection"
VERSION_KEY = "soundstage:magenta:selection:version"


def canonical_size(size: str) -> str:
    """A size as the pool names it (`small` -> `mrt2_small`)."""
    return SIZE_ALIASES.get(size.strip(), size.strip())


def finetunes_root(settings: Settings) -> Path:
    return (settings.magenta.finetunes_dir or settings.resolved_model_cache_dir / "magenta-finetunes").resolve()


def boot_selection(settings: Settings) -> ModelSelection:
    """The selection the settings give (version 0). A bad MRT_CKPT_STEP is a ValueError: the process must not
    start serving something else than the operator asked for."""
    magenta = settings.magenta
    size = canonical_size(magenta.boot_size) if magenta.boot_size else magenta.served_models[0]
    asked = parse_step(magenta.boot_step) if magenta.boot_repo else None
    step: int | Literal["latest"] | None = STEP_LATEST if asked is None else asked if asked != STEP_NONE else None
    if magenta.boot_repo is None:
        step = None
    return ModelSelection(
        size=size,
        repo=magenta.boot_repo if step is not None else None,
        step=step,
        assets_repo=magenta.boot_assets_repo or magenta.boot_repo or None,
    )


def current(redis: Any, settings: Settings) -> ModelSelection:
    """The selection in force: the last one published, else the boot default."""
    raw = redis.get(KEY)
    if raw is None:
        return boot_selection(settings)
    return ModelSelection.model_validate(json.loads(raw))


def publish(redis: Any, selection: ModelSelection) -> ModelSelection:
    """Make ``selection`` the one in force, with the next version; returns it as published."""
    version = int(redis.incr(VERSION_KEY))
    published = selection.model_copy(update={"version": version, "selected_at": utcnow()})
    redis.set(KEY, published.model_dump_json())
    return published
