"""`soundstage-demucs-models`: make every model the Demucs pool serves available (the model-cache warm-up).

Reads the same settings as the worker (DEMUCS_MODELS, else DEMUCS_MODEL; DEMUCS_MODEL_DIR; HF_HOME,
TORCH_HOME; MODEL_CACHE_DIR) and loads each model exactly as the worker does, on the CPU: a demucs name
is downloaded into the Hugging Face (or torch hub) cache, `random:<name>` is built into MODEL_CACHE_DIR,
a local file or folder is checked to hold a loadable model. Run it once before starting workers
(`make models`, `docker compose run --rm --no-deps worker-demucs soundstage-demucs-models`, the model
warm-up Job on Kubernetes). The exit status is 1 if any model could not be made available.
"""

from __future__ import annotations

import sys

from soundstage.logs import configure_logging
from soundstage.pool import warm_up_models
from soundstage.settings import Settings
from soundstage_demucs.loading import load_separator


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)

    def load(ref: str) -> bool:
        loaded = load_separator(
            ref, model_dir=settings.demucs.model_dir, cache_dir=settings.resolved_model_cache_dir, device="cpu"
        )
        return loaded.random_weights

    return warm_up_models(settings.demucs.served_models, load)


if __name__ == "__main__":
    sys.exit(main())
