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

import logging
import sys

from soundstage.errors import ModelUnavailableError
from soundstage.logs import configure_logging
from soundstage.queue import Queue
from soundstage.settings import Settings
from soundstage_musicgen.engine import MusicgenEngine

logger = logging.getLogger(__name__)


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    cache_dir = settings.resolved_model_cache_dir
    models = settings.served_models(Queue.MUSICGEN)
    failed: list[str] = []
    for ref in models:
        logger.info("loading model %s", ref)
        try:
            engine = MusicgenEngine(ref, cache_dir, device="cpu", mode="plain")
            engine.load()
            info = engine.info
        except ModelUnavailableError as error:
            logger.error("model %s is not available: %s", ref, error.message)
            failed.append(ref)
            continue
        except Exception:  # disk, network or checkpoint errors: report every model, then fail
            logger.exception("model %s could not be loaded", ref)
            failed.append(ref)
            continue
        logger.info("model %s available (random weights: %s)", ref, info.random_weights)
        del engine  # free its weights before the next model loads
    if failed:
        logger.error("%d of %d models unavailable: %s", len(failed), len(models), ", ".join(failed))
        return 1
    logger.info("all %d models available", len(models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
