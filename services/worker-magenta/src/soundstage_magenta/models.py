"""`soundstage-magenta-models`: make every model the Magenta pool serves available (the model warm-up).

Reads the same settings as the worker (MAGENTA_MODELS, else MAGENTA_MODEL; MAGENTA_HOME; MODEL_CACHE_DIR)
and loads each model exactly as the worker does: `mrt2_small` and `mrt2_base` are fetched into
MAGENTA_HOME from Hugging Face (`google/magenta-realtime-2`, with MusicCoCa's resources) by magenta-rt's
own downloader when they are not there yet; `random:<size>` is built into MODEL_CACHE_DIR. Run it once
before starting workers (`make models`, `docker compose run --rm --no-deps worker-magenta
soundstage-magenta-models`, the model warm-up Job on Kubernetes). The exit status is 1 if any model could
not be made available.
"""

from __future__ import annotations

import sys

from soundstage.logs import configure_logging
from soundstage.pool import warm_up_models
from soundstage.settings import Settings
from soundstage_magenta.system import NAMED_SIZES, MagentaSystem, fetch_named


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)

    def load(ref: str) -> bool:
        home = settings.magenta.home
        if ref in NAMED_SIZES:
            fetch_named(ref, home)
        return MagentaSystem(ref, cache_dir=settings.resolved_model_cache_dir, magenta_home=home).random_weights

    return warm_up_models(settings.magenta.served_models, load)


if __name__ == "__main__":
    sys.exit(main())
