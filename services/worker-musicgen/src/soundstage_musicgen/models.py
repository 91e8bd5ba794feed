"""`soundstage-musicgen-models`: make every model the MusicGen pool serves available (the model-cache warm-up).

Reads the same settings as the worker (MUSICGEN_MODELS, else MUSICGEN_MODEL; HF_HOME;
MODEL_CACHE_DIR) and loads each model exactly as the worker does, on the CPU:
- a Hugging Face id: `from_pretrained` downloads its files into HF_HOME (already cached files
  are not downloaded again);
- `random:<name>`: builds it into MODEL_CACHE_DIR;
- a local folder: checks that it holds a loadable model.
Run it once before starting workers (`make models`, `docker compose run --rm worker-musicgen
soundstage-musicgen-models`, the soundstage-model-warmup Job on Kubernetes), so that worker
replicas load from the cache instead of each downloading gigabytes. Every model is tried; the
exit status is 1 if any could not be made available.
"""

from __future__ import annotations

import sys

from soundstage.logs import configure_logging
from soundstage.pool import warm_up_models
from soundstage.settings import Settings
from soundstage_musicgen.engine import MusicgenEngine


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    cache_dir = settings.resolved_model_cache_dir

    def load(ref: str) -> bool:
        engine = MusicgenEngine(ref, cache_dir, device="cpu", mode="plain")
        engine.load()
        return engine.info.random_weights  # the engine (and its weights) go before the next model loads

    return warm_up_models(settings.musicgen.served_models, load)


if __name__ == "__main__":
    sys.exit(main())
