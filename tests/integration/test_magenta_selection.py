"""The selected Magenta checkpoint in a real Redis: versions increase with every selection, a rollback never
undoes a selection made meanwhile, and the boot selection is published once, by whichever process comes
first, never over a selection made through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soundstage import magenta_selection
from soundstage.schemas.magenta_model import ModelSelection
from soundstage.settings import Settings
from tests.support.servers import RedisServer


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    client.flushdb()
    yield client
    client.flushdb()


def _settings(tmp_path: Path, **magenta: object) -> Settings:
    return Settings(model_cache_dir=tmp_path, magenta={"model": "random:tiny", **magenta})


def test_without_a_selection_the_boot_default_holds(redis: Any, tmp_path: Path) -> None:
    current = magenta_selection.current(redis, _settings(tmp_path, mrt_ckpt_repo="me/ft", mrt_ckpt_step="7"))
    assert (current.repo, current.step, current.version) == ("me/ft", 7, 0)


def test_each_selection_gets_the_next_version_and_rollbacks_are_conditional(redis: Any, tmp_path: Path) -> None:
    first = magenta_selection.publish(redis, ModelSelection(size="random:tiny", repo="me/ft", step=1))
    second = magenta_selection.publish(redis, ModelSelection(size="random:tiny", repo="me/ft", step=2))
    assert first is not None and second is not None and (first.version, second.version) == (1, 2)
    assert second.selected_at is not None
    # A rollback of the first selection finds the second in force: nothing is written.
    assert magenta_selection.publish(redis, first, replacing=first.version) is None
    assert magenta_selection.current(redis, _settings(tmp_path)).step == 2
    rolled = magenta_selection.publish(redis, first, replacing=second.version)
    assert rolled is not None and rolled.version == 3 and rolled.step == 1
    assert magenta_selection.current(redis, _settings(tmp_path)) == rolled


def test_the_boot_selection_is_published_once_and_never_over_a_selection(redis: Any, tmp_path: Path) -> None:
    boot = ModelSelection(size="random:tiny", repo="me/ft", step=5)
    published = magenta_selection.publish_boot(redis, boot)
    assert published is not None and published.version == 1
    assert magenta_selection.publish_boot(redis, boot.model_copy(update={"step": 6})) is None  # a second worker
    chosen = magenta_selection.publish(redis, ModelSelection(size="random:tiny"))
    assert chosen is not None
    assert magenta_selection.publish_boot(redis, boot) is None
    assert magenta_selection.current(redis, _settings(tmp_path)).repo is None
