"""The API app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from soundstage import __version__
from soundstage.settings import Settings
from soundstage_api.errors import install_error_handlers
from soundstage_api.key_path import KeyPathMiddleware
from soundstage_api.metrics import SoundstageCollector
from soundstage_api.openapi_doc import install_openapi
from soundstage_api.request_id import RequestIdMiddleware, requests_counter
from soundstage_api.routes import (
    compat_segmind,
    compat_srocks,
    continue_,
    embed,
    files,
    generate,
    jam,
    jam_ws,
    jobs,
    magenta,
    magenta_model,
    melody,
    separate,
    soundtrack,
    style,
    system,
)
from soundstage_api.state import AppState

DESCRIPTION = """
Soundstage serves AI music models over HTTP. Submit a job, poll `GET /jobs/{job_id}`,
download `result_urls` from `GET /files/{name}`.

Errors always look like `{"error": {"code", "message", "details"}, "detail": message}`;
`code` is stable and machine-readable. When the server sets `API_KEY` or `API_KEYS`,
send `X-API-Key` on every route except `/health`, `/ready` and `/metrics` (with
`PUBLIC_READS`, only on POST and DELETE). Multi-scene soundtracks: `POST /generate/soundtrack`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = AppState.build(settings)
    state.metrics_registry.register(SoundstageCollector(state))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        try:
            await state.waiter.aclose()
            await state.jams.aclose()
        finally:
            state.close()

    app = FastAPI(
        title="Soundstage",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
    )
    app.state.soundstage = state
    install_error_handlers(app)
    routers = (
        generate,
        continue_,
        melody,
        soundtrack,
        style,
        embed,
        magenta,
        magenta_model,
        jam,
        jam_ws,
        separate,
        jobs,
        files,
        system,
        compat_srocks,
        compat_segmind,
    )
    for module in routers:
        app.include_router(module.router)
    install_openapi(app)
    app.add_middleware(RequestIdMiddleware, counter=requests_counter(state.metrics_registry))
    app.add_middleware(KeyPathMiddleware)  # the outermost: nothing after it sees a key in a path
    return app
