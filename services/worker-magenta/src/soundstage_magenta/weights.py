"""The weights one Magenta model serves: its own, or a finetune's checkpoint swapped into the steps it
already compiled, and the steering assets of the selection; what it reports serving.

Jobs ask for the weights of the selection they were written under (``serve``, ``assets``): a finetune is
fetched and loaded once per process and the newest KEPT_FINETUNES stay loaded, so a job of an older
selection still queued does not unload the newest. Each checkpoint loads under its own lock: jobs on
weights already loaded never wait for a download. A checkpoint that cannot be served is remembered, and
its jobs fail at once with its code, until the follower tries it again for a newer selection. Only the
follower (``follow``) changes what the heartbeat reports, so a job of an old selection never makes the
worker look as if it went back to it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.magenta_model import ModelSelection, ServingCheckpoint
from soundstage_magenta.finetune import NO_ASSETS, Checkpoint, FinetuneFetcher, SteeringAssets
from soundstage_magenta.system import MagentaSystem

KEPT_FINETUNES = 2
"""Finetunes' weights kept loaded per model (the newest and the one before), beside its own."""
KEPT_ASSETS = 4
RETRY_SECONDS = 30.0
"""How long a checkpoint whose repository Hugging Face did not answer for fails at once before a new try."""
Key = tuple[object, ...]  # (repository, revision, step) of weights; ("assets", repository, revision)
T = TypeVar("T")


@dataclass(frozen=True)
class Serving:
    """The weights a job runs on: the model's own (no repository), or a finetune's at a step."""

    selection: ModelSelection | None
    system: MagentaSystem
    step: int | None = None
    path: Path | None = None

    def checkpoint(self) -> dict[str, object] | None:
        """What a job's result says of the weights (None: the model's own)."""
        if self.selection is None or self.selection.repo is None:
            return None
        return {"repo": self.selection.repo, "revision": self.selection.revision, "step": self.step}


@dataclass(frozen=True)
class _Failure:
    code: ErrorCode
    message: str
    status_code: int
    until: float | None  # time.monotonic() it expires at; None: until the follower tries it again

    def error(self) -> AppError:
        return AppError(self.code, self.message, status_code=self.status_code)  # a fresh one per job thread


@dataclass(frozen=True)
class _Report:
    serving: Serving | None
    assets: SteeringAssets
    version: int
    error: tuple[str, int, str | None] | None = None  # why selection `version` could not be served, its code


class ModelWeights:
    def __init__(self, model_ref: str, fetcher: FinetuneFetcher | None) -> None:
        self._model_ref = model_ref
        self._fetcher = fetcher
        self._lock = threading.Lock()  # the dictionaries below; never held while loading
        self._finetunes: OrderedDict[Key, Serving] = OrderedDict()
        self._assets: OrderedDict[Key, SteeringAssets] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self._failures: dict[Key, _Failure] = {}
        self._pinned: Key | None = None  # the weights the follower serves: never dropped
        self._report: _Report | None = None
        self._switching = False

    def serve(self, base: MagentaSystem, selection: ModelSelection | None) -> Serving:
        """The weights ``selection`` names on top of ``base`` (the model's own when it names no repository or
        another model). AppError for a checkpoint that cannot be served."""
        wanted = selection if selection is not None and selection.size == self._model_ref else None
        key = _weights_key(wanted)
        if key is None or wanted is None:
            return Serving(selection=wanted, system=base)

        def load() -> Serving:
            checkpoint = self._checkpoint(wanted)
            system = base.with_weights(checkpoint.path)
            return Serving(selection=wanted, system=system, step=checkpoint.step, path=checkpoint.path)

        served = self._once(key, self._finetunes, load, keep=KEPT_FINETUNES)
        return dataclasses.replace(served, selection=wanted)

    def assets(self, selection: ModelSelection | None) -> SteeringAssets:
        """The steering assets ``selection`` names (fetched the first time; none without an assets repo)."""
        fetcher = self._fetcher
        if selection is None or selection.assets_repo is None or fetcher is None:
            return NO_ASSETS
        repo, revision = selection.assets_repo, selection.assets_revision
        return self._once(("assets", repo, revision), self._assets, lambda: fetcher.assets(repo, revision), KEPT_ASSETS)

    def _once(self, key: Key, cache: OrderedDict[Key, T], load: Callable[[], T], keep: int) -> T:
        """``cache[key]``, loaded by ``load`` the first time: one load per key at a time (a job on another
        key never waits for it), its failure remembered (RETRY_SECONDS for an unreachable repository) and
        raised at once to the jobs that wait for it or come later. The least recently used entries beyond
        ``keep`` are dropped, never the one the follower reports serving."""
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
            self._raise_failure(key)
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in cache:  # loaded by the job that held the lock before
                    return cache[key]
                self._raise_failure(key)  # failed for the job that held the lock before
            try:
                value = load()
            except AppError as error:
                self._remember(key, error)
                raise
            except Exception as error:  # a full disk, a file gone meanwhile: not a job's fault, still remembered
                failure = AppError(
                    ErrorCode.CHECKPOINT_INVALID,
                    f"{self._model_ref}: the finetune could not be loaded ({type(error).__name__}).",
                    status_code=422,
                )
                self._remember(key, failure)
                raise failure from error
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                cache[key] = value
                for stale in [k for k in cache if k != self._pinned][: max(0, len(cache) - keep)]:
                    del cache[stale]
            return value

    def _raise_failure(self, key: Key) -> None:
        """Raise the remembered failure of ``key`` (called under the lock), unless it expired."""
        failure = self._failures.get(key)
        if failure is None:
            return
        if failure.until is not None and time.monotonic() >= failure.until:
            del self._failures[key]
            return
        raise failure.error()

    def _remember(self, key: Key, error: AppError) -> None:
        transient = error.code == ErrorCode.CHECKPOINT_REPO_UNAVAILABLE  # Hugging Face may answer again soon
        with self._lock:
            self._failures[key] = _Failure(
                error.code, error.message, error.status_code, time.monotonic() + RETRY_SECONDS if transient else None
            )

    def follow(self, base: MagentaSystem, selection: ModelSelection) -> None:
        """Serve ``selection`` (this model's own weights when it selects another model) and report it; a
        checkpoint that failed before is tried again. AppError when it cannot be served: reported too."""
        mine = selection if selection.size == self._model_ref else ModelSelection(size=self._model_ref)
        wanted = mine.model_copy(update={"version": selection.version})
        key = _weights_key(wanted)
        with self._lock:
            self._pinned = key
            if key is not None:
                self._failures.pop(key, None)
            self._failures.pop(("assets", wanted.assets_repo, wanted.assets_revision), None)
        self._switching = True
        try:
            serving = self.serve(base, wanted)
            assets = self.assets(wanted)
        except AppError as error:
            self.note_error(error.message, selection.version, error.code)
            raise
        finally:
            self._switching = False
        self._report = _Report(serving=serving, assets=assets, version=selection.version)

    def note_error(self, message: str, version: int, code: str | None = None) -> None:
        """Why selection ``version`` could not be served (its code: a lasting failure or one that may pass)."""
        previous = self._report
        self._report = _Report(
            serving=previous.serving if previous else None,
            assets=previous.assets if previous else NO_ASSETS,
            version=previous.version if previous else 0,
            error=(message, version, code),
        )

    @property
    def reported(self) -> bool:
        """Whether the follower has served (or failed to serve) a selection yet."""
        return self._report is not None

    def describe(self) -> ServingCheckpoint:
        """What the heartbeat says this model serves."""
        report = self._report or _Report(serving=None, assets=NO_ASSETS, version=0)
        selection = report.serving.selection if report.serving is not None else None
        finetuned = selection is not None and selection.repo is not None
        return ServingCheckpoint(
            size=self._model_ref,
            repo=selection.repo if finetuned and selection is not None else None,
            revision=selection.revision if finetuned and selection is not None else None,
            step=report.serving.step if report.serving is not None else None,
            version=report.version,
            local_checkpoint_dir=str(report.serving.path.parent)
            if report.serving is not None and report.serving.path
            else None,
            assets_repo=report.assets.repo,
            mean_loaded=report.assets.mean is not None,
            centroids_loaded=report.assets.centroids is not None,
            centroid_count=report.assets.centroid_count,
            switching=self._switching,
            error=report.error[0] if report.error else None,
            failed_version=report.error[1] if report.error else None,
            error_code=report.error[2] if report.error else None,
        )

    def _checkpoint(self, selection: ModelSelection) -> Checkpoint:
        if self._fetcher is None:
            raise RuntimeError("this engine was built without a finetune fetcher")
        return self._fetcher.checkpoint(selection)


def _weights_key(selection: ModelSelection | None) -> Key | None:
    """What identifies a finetune's weights (None: the model's own)."""
    if selection is None or selection.repo is None:
        return None
    return (selection.repo, selection.revision, selection.step)
