"""The HTTP service: `create_app(settings)` builds a FastAPI app whose lifespan owns the cache, the model manager and
the pipeline; routes are thin shells over `ServiceState.translate` and `ServiceState.summarize`. Error mapping lives in
`errors.py`, middleware in `middleware.py`, wire schemas in `schemas.py`.

`uvicorn --factory service.api.app:create_app` (what `newsmt serve` runs) calls it without arguments: settings then
come from NEWSMT_* variables.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.api import documents, glossaries, jobs, libretranslate, native, ops, summarize, web
from service.api.errors import (
    ADMIN_ERRORS,
    DOCUMENT_ERRORS,
    GLOSSARY_ERRORS,
    LIBRETRANSLATE_DOWNLOAD_ERRORS,
    LIBRETRANSLATE_ERRORS,
    NATIVE_TRANSLATE_ERRORS,
    TRANSLATION_ERRORS,
    install_error_handlers,
)
from service.api.middleware import BodySizeLimit, RequestMetrics, redact_access_log
from service.cache.segment_cache import SegmentCache
from service.config import Settings
from service.engines.manager import ModelManager
from service.pipeline.translate import Pipeline
from service.serving.jobs import JobManager
from service.serving.metrics import Metrics
from service.serving.state import ServiceState

log = logging.getLogger(__name__)














DESCRIPTION = """Translate Hebrew and Arabic news into English, with a content-hash cache.

* Native JSON API under `/v1` (errors: `{"error": {"code", "message"}}`).
* LibreTranslate-compatible `/translate`, `/detect`, `/languages`, `/translate_file` (errors: `{"error": "..."}`).
* Documents (`/v1/documents`: .txt, .md, .html, .srt, .docx, format kept) and background jobs (`/v1/jobs`).
* With `NEWSMT_API_KEYS` set, send `Authorization: Bearer KEY` (native) or the `api_key` field (LibreTranslate).
"""
























def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing heavy happens here: the cache is opened and the pipeline built in the lifespan, and
    models load on first use (or via POST /v1/models/{task}/load)."""
    settings = settings or Settings()
    metrics = Metrics()
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = SegmentCache.from_settings(settings)
        manager = ModelManager(settings, on_load=metrics.on_load, on_batch=metrics.on_batch)
        pipeline = Pipeline(settings, manager, cache)
        state = app.state.service = ServiceState(settings, manager, cache, pipeline, metrics)
        await anyio.to_thread.run_sync(state.documents.sweep)
        # Resolves (and fingerprints, for a local model) every translation model now, in a thread, so the cache
        # lookups the event loop makes for each request never hash model files.
        await anyio.to_thread.run_sync(pipeline.models_signature)
        # Everything made so far (imported modules: ~400,000 objects with transformers) lives as long as the process.
        # Frozen, the garbage collector stops rescanning it: a full collection under load otherwise stalls every
        # request for ~250 ms, which is what a cached request's p99 latency showed.
        gc.freeze()
        idle_unloader = asyncio.create_task(state.unload_idle_models())
        job_manager = app.state.jobs = JobManager(settings, state.translate_background)
        await job_manager.start()
        try:
            yield
        finally:
            idle_unloader.cancel()
            await job_manager.close()
            state.close()

    app = FastAPI(title="newsmt", description=DESCRIPTION, lifespan=lifespan)
    # Routes are matched in order, one by one: the two translation routes, the hot ones, go first.
    app.include_router(native.router, responses=NATIVE_TRANSLATE_ERRORS)
    app.include_router(libretranslate.router, responses=LIBRETRANSLATE_ERRORS)
    app.include_router(summarize.router, responses=TRANSLATION_ERRORS)
    app.include_router(ops.admin, responses=ADMIN_ERRORS)
    app.include_router(glossaries.router, responses=GLOSSARY_ERRORS)
    app.include_router(documents.router, responses=DOCUMENT_ERRORS)
    app.include_router(documents.libretranslate_router, responses=LIBRETRANSLATE_DOWNLOAD_ERRORS)
    app.include_router(jobs.router, responses=DOCUMENT_ERRORS)
    app.include_router(ops.router)
    app.include_router(web.router)
    install_error_handlers(app)
    # Starlette runs the last-added middleware outermost: metrics see everything, CORS headers go on refusals too.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestMetrics, metrics=metrics)
    if not settings.api_keys:
        _schema_without_auth(app)
    return app


def _schema_without_auth(app: FastAPI) -> None:
    """A server without NEWSMT_API_KEYS takes no key, so its live schema demands none: generated clients and the
    contract test then see the API as it is. (The bearer scheme is on the routes because keys can be switched on.)"""
    generate = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.pop("security", None)
            schema.get("components", {}).pop("securitySchemes", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
