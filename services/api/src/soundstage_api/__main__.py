"""`python -m soundstage_api` / `soundstage-api`: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from soundstage.logs import configure_logging
from soundstage.settings import Settings
from soundstage_api.app import create_app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our logging set-up
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
