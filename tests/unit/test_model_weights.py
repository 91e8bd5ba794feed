"""ModelWeights, the finetune weights one Magenta model serves, with a stand-in system and fetcher (the real
swap is tested on random:tiny in tests/integration/test_magenta_engine.py): one load per checkpoint while
jobs wait, failures remembered for the waiters and later jobs, the followed checkpoint never dropped, and
what the heartbeat reports changed only by the follower."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from soundstage_magenta.finetune import NO_ASSETS, Checkpoint, SteeringAssets
from soundstage_magenta.weights import KEPT_FINETUNES, ModelWeights

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.magenta_model import ModelSelection

MODEL = "random:tiny"


class System:
    def __init__(self, name: str = "base") -> None:
        self.name = name

    def with_weights(self, path: Path) -> System:
        return System(path.name)


class Fetcher:
    def __init__(self, *, fail: dict[int, AppError] | None = None, delay: float = 0.0) -> None:
        self.fail = fail or {}
        self.delay = delay
        self.calls: list[int] = []
        self.fetching = threading.Event()  # set once a fetch has begun

    def checkpoint(self, selection: ModelSelection) -> Checkpoint:
        step = int(selection.step or 0)
        self.calls.append(step)
        self.fetching.set()
        time.sleep(self.delay)  # a slow download
        if step in self.fail:
            raise self.fail[step]
        return Checkpoint(step=step, path=Path(f"step-{step}.safetensors"))

    def assets(self, repo: str | None, revision: str | None) -> SteeringAssets:
        return SteeringAssets(repo=repo)


def _selection(step: int, version: int = 1) -> ModelSelection:
    return ModelSelection(size=MODEL, repo="me/ft", step=step, version=version, assets_repo="me/ft")


def test_jobs_waiting_for_a_failing_load_get_its_failure_without_loading_again() -> None:
    invalid = AppError(ErrorCode.CHECKPOINT_INVALID, "not this architecture", status_code=422)
    fetcher = Fetcher(fail={7: invalid}, delay=0.3)
    weights = ModelWeights(MODEL, fetcher)  # type: ignore[arg-type]
    codes: list[str] = []

    def job() -> None:
        try:
            weights.serve(System(), _selection(7))  # type: ignore[arg-type]
        except AppError as error:
            codes.append(error.code)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert codes == ["checkpoint_invalid"] * 4 and fetcher.calls == [7]  # loaded once, failed for all
    job()
    assert fetcher.calls == [7]  # a later job fails at once too
    with pytest.raises(AppError):
        weights.follow(System(), _selection(7, version=2))  # type: ignore[arg-type]
    assert fetcher.calls == [7, 7]  # the follower tries it again for a newer selection
    assert weights.describe().failed_version == 2 and weights.describe().error_code == "checkpoint_invalid"


def test_a_job_on_loaded_weights_never_waits_for_another_checkpoints_download() -> None:
    fetcher = Fetcher()
    weights = ModelWeights(MODEL, fetcher)  # type: ignore[arg-type]
    weights.serve(System(), _selection(1))  # type: ignore[arg-type]
    fetcher.delay = 2.0
    fetcher.fetching.clear()
    slow = threading.Thread(target=weights.serve, args=(System(), _selection(2)))
    slow.start()
    assert fetcher.fetching.wait(timeout=5)  # the other checkpoint's download holds its lock now
    started = time.monotonic()
    served = weights.serve(System(), _selection(1))  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0 and served.step == 1
    slow.join(timeout=10)


def test_the_followed_checkpoint_is_never_dropped_by_older_jobs() -> None:
    weights = ModelWeights(MODEL, Fetcher())  # type: ignore[arg-type]
    weights.follow(System(), _selection(10, version=3))  # type: ignore[arg-type]
    for step in range(1, KEPT_FINETUNES + 3):  # jobs of older selections, each another checkpoint
        weights.serve(System(), _selection(step))  # type: ignore[arg-type]
    assert 10 in [key[2] for key in weights._finetunes]
    report = weights.describe()
    assert (report.step, report.version, report.repo) == (10, 3, "me/ft")  # jobs never change the report


def test_another_model_selected_reports_its_own_weights_at_the_new_version() -> None:
    weights = ModelWeights(MODEL, Fetcher())  # type: ignore[arg-type]
    weights.follow(System(), _selection(10, version=3))  # type: ignore[arg-type]
    weights.follow(System(), ModelSelection(size="mrt2_small", repo="me/ft", step=4, version=4))  # type: ignore[arg-type]
    report = weights.describe()
    assert (report.repo, report.step, report.version, report.assets_repo) == (None, None, 4, None)
    assert weights.assets(None) is NO_ASSETS


def test_an_unreachable_repository_fails_fast_for_a_while_then_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from soundstage_magenta import weights as module

    offline = AppError(ErrorCode.CHECKPOINT_REPO_UNAVAILABLE, "Hugging Face away", status_code=502)
    fetcher = Fetcher(fail={5: offline})
    weights = ModelWeights(MODEL, fetcher)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(AppError):
            weights.serve(System(), _selection(5))  # type: ignore[arg-type]
    assert fetcher.calls == [5]
    del fetcher.fail[5]
    later = time.monotonic() + module.RETRY_SECONDS + 1
    monkeypatch.setattr(module.time, "monotonic", lambda: later)
    assert weights.serve(System(), _selection(5)).step == 5  # type: ignore[arg-type]


def test_unexpected_load_errors_are_remembered_as_checkpoint_invalid() -> None:
    class Broken(Fetcher):
        def checkpoint(self, selection: ModelSelection) -> Checkpoint:
            raise OSError(28, "No space left on device")

    weights = ModelWeights(MODEL, Broken())  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(AppError) as refused:
            weights.serve(System(), _selection(3))  # type: ignore[arg-type]
        assert refused.value.code == "checkpoint_invalid" and "OSError" in refused.value.message
    assert weights._loading == {}


def test_assets_are_cached_per_repository_and_revision() -> None:
    weights = ModelWeights(MODEL, Fetcher())  # type: ignore[arg-type]
    first = weights.assets(_selection(1))
    assert first.repo == "me/ft" and weights.assets(_selection(2)) is first
    other = _selection(1).model_copy(update={"assets_repo": "me/other"})
    assert weights.assets(other).repo == "me/other"
