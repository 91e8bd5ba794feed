"""The Magenta engine of a worker: one Magenta RT 2 model, loaded (and compiled) once, shared by its jobs,
and the finetune checkpoint and steering assets it serves now (swapped without compiling again)."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from soundstage.errors import AppError
from soundstage.schemas import ModelCapabilities
from soundstage.schemas.magenta_model import DEFAULT_REVISION, ModelSelection, ServingCheckpoint
from soundstage_magenta.finetune import NO_ASSETS, FinetuneFetcher, SteeringAssets
from soundstage_magenta.system import CHANNELS, SAMPLE_RATE, MagentaSystem


@dataclass(frozen=True)
class MagentaInfo:
    """Facts about a loaded model, as the heartbeat and the jobs' results report them."""

    ref: str
    device: str  # JAX's backend: `cpu`, `gpu` or `tpu`
    gpu_available: bool
    random_weights: bool


KEPT_FINETUNES = 2
"""Finetunes' weights kept loaded per model (the newest and the one before)."""


@dataclass(frozen=True)
class Serving:
    """The weights a model serves now: its own (no repository), or a finetune's at a step."""

    selection: ModelSelection | None
    system: MagentaSystem
    step: int | None = None
    path: Path | None = None

    def checkpoint(self) -> dict[str, object] | None:
        """What a job's result says of the weights (None: the model's own)."""
        if self.selection is None or self.selection.repo is None:
            return None
        return {"repo": self.selection.repo, "revision": self.selection.revision, "step": self.step}


class MagentaEngine:
    def __init__(
        self,
        model_ref: str,
        *,
        cache_dir: Path,
        magenta_home: Path | None = None,
        fetcher: FinetuneFetcher | None = None,
    ) -> None:
        self.model_ref = model_ref
        self._cache_dir = cache_dir
        self._magenta_home = magenta_home
        self._fetcher = fetcher
        self._lock = threading.Lock()
        self._switch_lock = threading.Lock()  # one checkpoint or asset load at a time
        self._system: MagentaSystem | None = None
        self._info: MagentaInfo | None = None
        self._serving: Serving | None = None
        self._serving_version = 0
        self._finetunes: OrderedDict[tuple[str, str, object], Serving] = OrderedDict()
        self._assets: tuple[tuple[str | None, str], SteeringAssets] = ((None, DEFAULT_REVISION), NO_ASSETS)
        self._error: tuple[str, int] | None = None  # why a selection (its version) could not be served
        self._switching = False

    @property
    def loaded(self) -> bool:
        return self._system is not None

    def load(self) -> MagentaSystem:
        """Load and compile the model once (thread-safe); later calls return it at once. Raises
        ModelUnavailableError for a model that is not there (the job fails with `model_unavailable`)."""
        with self._lock:
            if self._system is None:
                import jax

                system = MagentaSystem(self.model_ref, cache_dir=self._cache_dir, magenta_home=self._magenta_home)
                backend = jax.default_backend()
                self._info = MagentaInfo(
                    ref=self.model_ref,
                    device=backend,
                    gpu_available=backend == "gpu",
                    random_weights=system.random_weights,
                )
                self._system = system
            return self._system

    @property
    def system(self) -> MagentaSystem:
        return self.load()

    def system_for(self, selection: ModelSelection | None) -> MagentaSystem:
        return self.serve(selection).system

    def serve(self, selection: ModelSelection | None) -> Serving:
        """The system with the weights ``selection`` names: a finetune's checkpoint of this model, fetched and
        loaded the first time (the compiled steps are reused; the last KEPT_FINETUNES stay loaded, so that a
        job of an older selection still queued does not unload the newest), or the model's own weights. The
        newest selection asked for is what the engine reports serving. AppError for a checkpoint that cannot
        be served (the job fails with its code)."""
        base = self.load()
        wanted = selection if selection is not None and selection.size == self.model_ref else None
        with self._switch_lock:
            key = _weights_key(wanted)
            if key is None:
                serving = Serving(selection=wanted, system=base)
            elif key in self._finetunes:
                self._finetunes.move_to_end(key)
                serving = dataclasses.replace(self._finetunes[key], selection=wanted)
            else:
                serving = self._load_finetune(base, wanted)
                self._finetunes[key] = serving
                while len(self._finetunes) > KEPT_FINETUNES:
                    self._finetunes.popitem(last=False)
            version = wanted.version if wanted is not None else 0
            if self._serving is None or version >= self._serving_version:
                self._serving, self._serving_version = serving, version
                self._error = None
            return serving

    def _load_finetune(self, base: MagentaSystem, wanted: ModelSelection | None) -> Serving:
        if self._fetcher is None or wanted is None:
            raise RuntimeError("this engine was built without a finetune fetcher")
        self._switching = True
        try:
            checkpoint = self._fetcher.checkpoint(wanted)
            system = base.with_weights(checkpoint.path)
        except AppError as error:
            self._error = (error.message, wanted.version)
            raise
        finally:
            self._switching = False
        return Serving(selection=wanted, system=system, step=checkpoint.step, path=checkpoint.path)

    def assets_for(self, selection: ModelSelection | None) -> SteeringAssets:
        """The steering assets ``selection`` names (fetched the first time; none without an assets repo)."""
        repo = selection.assets_repo if selection is not None else None
        revision = selection.revision if selection is not None and repo == selection.repo else DEFAULT_REVISION
        with self._switch_lock:
            if self._assets[0] == (repo, revision):
                return self._assets[1]
            if self._fetcher is None:
                return NO_ASSETS
            try:
                assets = self._fetcher.assets(repo, revision)
            except AppError as error:
                self._error = (error.message, selection.version if selection is not None else 0)
                raise
            self._assets = ((repo, revision), assets)
            return assets

    def serving(self) -> ServingCheckpoint:
        """What it serves now, for the heartbeat."""
        serving, assets = self._serving, self._assets[1]
        selection = serving.selection if serving is not None else None
        return ServingCheckpoint(
            size=self.model_ref,
            repo=selection.repo if selection is not None else None,
            revision=selection.revision if selection is not None and selection.repo else None,
            step=serving.step if serving is not None else None,
            version=selection.version if selection is not None else 0,
            local_checkpoint_dir=str(serving.path.parent) if serving is not None and serving.path else None,
            assets_repo=assets.repo,
            mean_loaded=assets.mean is not None,
            centroids_loaded=assets.centroids is not None,
            centroid_count=assets.centroid_count,
            switching=self._switching,
            error=self._error[0] if self._error is not None else None,
            failed_version=self._error[1] if self._error is not None else None,
        )

    def note_error(self, message: str, version: int) -> None:
        """Why selection ``version`` could not be served."""
        self._error = (message, version)

    @property
    def info(self) -> MagentaInfo:
        self.load()
        if self._info is None:  # set together with the system, under the lock
            raise RuntimeError("the Magenta model is not loaded")
        return self._info

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            model=self.model_ref, sample_rate=SAMPLE_RATE, channels=CHANNELS, random_weights=self.info.random_weights
        )


def _weights_key(selection: ModelSelection | None) -> tuple[str, str, object] | None:
    """What identifies a finetune's weights (None: the model's own)."""
    if selection is None or selection.repo is None:
        return None
    return (selection.repo, selection.revision, selection.step)
