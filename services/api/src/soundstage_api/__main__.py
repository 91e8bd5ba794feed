"""`python -m soundstage_api` / `soundstage-api`: serve the API with uvicorn."""

from __future__ import annotations

import gc

import uvicorn

from soundstage.logs import configure_logging
from soundstage.settings import Settings
from soundstage_api.app import create_app
from soundstage_api.routes.jam_ws import WS_MAX_FRAME_BYTES
from soundstage_api.transport import TransportLimits, guarded_protocol


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # The modules, the app and its routes live as long as the process. Freezing them keeps
    # the cyclic GC from rescanning those ~100k objects in every full collection, which
    # stalled all in-flight requests for ~80 ms on a 2-core machine (`make bench-api`).
    gc.collect()
    gc.freeze()
    limits = TransportLimits(
        max_header_bytes=settings.max_header_kb * 1024,
        header_timeout=settings.header_timeout_seconds,
        body_idle_timeout=settings.body_idle_timeout_seconds,
    )
    uvicorn.run(
        app,
        http=guarded_protocol(limits),  # httptools with a head size cap and slow-client timeouts
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our logging set-up
        access_log=False,
        timeout_graceful_shutdown=10,
        # Above the jam socket's own message limit, so that a message over it gets an error event, not a close.
        ws_max_size=WS_MAX_FRAME_BYTES,
    )


if __name__ == "__main__":
    main()
