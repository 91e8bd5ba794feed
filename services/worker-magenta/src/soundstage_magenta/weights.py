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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.magenta_model import ModelSelection, ServingCheckpoint
from soundstage_magenta.finetune import NO_ASSETS, Checkpoint, FinetuneFetcher, SteeringAssets
from soundstage_magenta.system import MagentaSystem

KEPT_FINETUNES = 2
"""Finetunes' weights kept loaded per model (the newest and the one before), beside its own."""
KEPT_ASSETS = 4
WeightsKey = tuple[str, str, object]  # (repository, revision, step)
AssetsKey = tuple[str, str]  # (repository, revision)


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

    def error(self) -> AppError:
        return AppError(self.code, self.message, status_code=self.status_code)  # a fresh one per job thread


@dataclass(frozen=True)
class _Report:
    serving: Serving | None
    assets: SteeringAssets
    version: int
    error: tuple[str, int] | None = None  # why selection `version` could not be served


class ModelWeights:
    def __init__(self, model_ref: str, fetcher: FinetuneFetcher | None) -> None:
        self._model_ref = model_ref
        self._fetcher = fetcher
        self._lock = threading.Lock()  # the dictionaries below; never held while loading
        self._finetunes: OrderedDict[WeightsKey, Serving] = OrderedDict()
        self._loading: dict[WeightsKey, threading.Lock] = {}
        self._failures: dict[WeightsKey, _Failure] = {}
        self._assets: OrderedDict[AssetsKey, SteeringAssets] = OrderedDict()
        self._assets_lock = threading.Lock()
        self._report: _Report | None = None
        self._switching = False

    def serve(self, base: MagentaSystem, selection: ModelSelection | None) -> Serving:
        """The weights ``selection`` names on top of ``base`` (the model's own when it names no repository or
        another model). AppError for a checkpoint that cannot be served."""
        wanted = selection if selection is not None and selection.size == self._model_ref else None
        key = _weights_key(wanted)
        if key is None or wanted is None:
            return Serving(selection=wanted, system=base)
        with self._lock:
            if key in self._finetunes:
                self._finetunes.move_to_end(key)
                return dataclasses.replace(self._finetunes[key], selection=wanted)
            if key in self._failures:
                raise self._failures[key].error()
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per checkpoint; the others wait for it, not for every load
            with self._lock:
                if key in self._finetunes:  # loaded by the job that held the lock before
                    return dataclasses.replace(self._finetunes[key], selection=wanted)
            try:
                checkpoint = self._checkpoint(wanted)
                served = Serving(
                    selection=wanted,
                    system=base.with_weights(checkpoint.path),
                    step=checkpoint.step,
                    path=checkpoint.path,
                )
            except AppError as error:
                if error.code != ErrorCode.CHECKPOINT_REPO_UNAVAILABLE:  # that one may pass: not remembered
                    with self._lock:
                        self._failures[key] = _Failure(error.code, error.message, error.status_code)
                raise
            with self._lock:
                self._finetunes[key] = served
                while len(self._finetunes) > KEPT_FINETUNES:
                    self._finetunes.popitem(last=False)
                self._loading.pop(key, None)
            return served

    def assets(self, selection: ModelSelection | None) -> SteeringAssets:
        """The steering assets ``selection`` names (fetched the first time; none without an assets repo)."""
        if selection is None or selection.assets_repo is None or self._fetcher is None:
            return NO_ASSETS
        key = (selection.assets_repo, selection.assets_revision)
        with self._assets_lock:  # small files: one fetch at a time is enough
            if key in self._assets:
                self._assets.move_to_end(key)
                return self._assets[key]
            assets = self._fetcher.assets(*key)
            self._assets[key] = assets
            while len(self._assets) > KEPT_ASSETS:
                self._assets.popitem(last=False)
            return assets

    def follow(self, base: MagentaSystem, selection: ModelSelection) -> None:
        """Serve ``selection`` (this model's own weights when it selects another model) and report it; a
        checkpoint that failed before is tried again. AppError when it cannot be served: reported too."""
        mine = selection if selection.size == self._model_ref else ModelSelection(size=self._model_ref)
        wanted = mine.model_copy(update={"version": selection.version})
        key = _weights_key(wanted)
        with self._lock:
            if key is not None:
                self._failures.pop(key, None)
        self._switching = True
        try:
            serving = self.serve(base, wanted)
            assets = self.assets(wanted)
        except AppError as error:
            previous = self._report
            self._report = _Report(
                serving=previous.serving if previous else None,
                assets=previous.assets if previous else NO_ASSETS,
                version=previous.version if previous else 0,
                error=(error.message, selection.version),
            )
            raise
        finally:
            self._switching = False
        self._report = _Report(serving=serving, assets=assets, version=selection.version)

    def note_error(self, message: str, version: int) -> None:
        """Why selection ``version`` could not be served (the model itself did not load)."""
        previous = self._report
        self._report = _Report(
            serving=previous.serving if previous else None,
            assets=previous.assets if previous else NO_ASSETS,
            version=previous.version if previous else 0,
            error=(message, version),
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
        )

    def _checkpoint(self, selection: ModelSelection) -> Checkpoint:
        if self._fetcher is None:
            raise RuntimeError("this engine was built without a finetune fetcher")
        return self._fetcher.checkpoint(selection)


def _weights_key(selection: ModelSelection | None) -> WeightsKey | None:
    """What identifies a finetune's weights (None: the model's own)."""
    if selection is None or selection.repo is None:
        return None
    return (selection.repo, selection.revision, selection.step)
