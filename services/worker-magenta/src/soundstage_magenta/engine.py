"""The Magenta engine of a worker: one Magenta RT 2 model, loaded (and compiled) once, shared by its jobs,
with the finetune weights and steering assets they ask for (``weights.ModelWeights``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from soundstage.schemas import ModelCapabilities
from soundstage.schemas.magenta_model import ModelSelection, ServingCheckpoint
from soundstage_magenta.finetune import FinetuneFetcher, SteeringAssets
from soundstage_magenta.system import CHANNELS, SAMPLE_RATE, MagentaSystem
from soundstage_magenta.weights import ModelWeights, Serving


@dataclass(frozen=True)
class MagentaInfo:
    """Facts about a loaded model, as the heartbeat and the jobs' results report them."""

    ref: str
    device: str  # JAX's backend: `cpu`, `gpu` or `tpu`
    gpu_available: bool
    random_weights: bool


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
        self._lock = threading.Lock()
        self._system: MagentaSystem | None = None
        self._info: MagentaInfo | None = None
        self.weights = ModelWeights(model_ref, fetcher)

    @property
    def loaded(self) -> bool:
        """Loaded, compiled and serving a selection (the boot one included), or saying why it cannot: only
        then does the heartbeat call the worker ready."""
        return self._system is not None and self.weights.reported

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

    def serve(self, selection: ModelSelection | None) -> Serving:
        """The weights a job written under ``selection`` runs on (``ModelWeights.serve``)."""
        return self.weights.serve(self.load(), selection)

    def assets_for(self, selection: ModelSelection | None) -> SteeringAssets:
        return self.weights.assets(selection)

    def follow(self, selection: ModelSelection) -> None:
        """Serve the selection in force and report it (the follower's call)."""
        self.weights.follow(self.load(), selection)

    def serving(self) -> ServingCheckpoint:
        return self.weights.describe()

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
