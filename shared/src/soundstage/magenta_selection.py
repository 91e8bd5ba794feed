"""The magenta pool's selected checkpoint, kept in Redis: published by `POST /magenta/model/select`, read by
the API when it writes a job (the job records it) and followed by every magenta worker (each loads it as soon
as it sees it, before a job asks). Without a selection in Redis, the boot default of the settings holds
(MRT_SIZE, MRT_CKPT_REPO, MRT_CKPT_STEP, MRT_ASSETS_REPO)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from soundstage.db.models import utcnow
from soundstage.schemas.magenta_model import STEP_LATEST, STEP_NONE, ModelSelection, canonical_size, parse_step
from soundstage.settings import Settings

KEY = "soundstage:magenta:selection"
VERSION_KEY = "soundstage:magenta:selection:version"


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


def publish(redis: Any, selection: ModelSelection, *, replacing: int | None = None) -> ModelSelection | None:
    """Make ``selection`` the one in force with the next version; returns it as published. ``replacing``: only
    while the selection in force still has that version (a rollback must not undo a selection made
    meanwhile), else nothing is written and None returned."""

    def may(raw: bytes | None) -> bool:
        return replacing is None or (
            raw is not None and ModelSelection.model_validate(json.loads(raw)).version == replacing
        )

    return _publish_if(redis, selection, may)


def publish_boot(redis: Any, selection: ModelSelection) -> ModelSelection | None:
    """Publish the boot selection (its `latest` resolved) unless a selection is in force already, so that the
    API and every worker agree on it whatever environment each was started with."""
    return _publish_if(redis, selection, lambda raw: raw is None)


def _publish_if(redis: Any, selection: ModelSelection, may: Callable[[bytes | None], bool]) -> ModelSelection | None:
    """Write ``selection`` with the next version, version and selection together (a transaction watching
    both), if ``may`` accepts the selection in force; None when it does not."""
    from redis.exceptions import WatchError

    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(KEY, VERSION_KEY)
                if not may(pipe.get(KEY)):
                    pipe.unwatch()
                    return None
                version = int(pipe.get(VERSION_KEY) or 0) + 1
                published = selection.model_copy(update={"version": version, "selected_at": utcnow()})
                pipe.multi()
                pipe.set(VERSION_KEY, version)
                pipe.set(KEY, published.model_dump_json())
                pipe.execute()
                return published
            except WatchError:  # another selection came in between: read again
                continue
