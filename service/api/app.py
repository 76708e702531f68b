"""The HTTP service: `create_app(settings)` builds a FastAPI app whose lifespan owns the cache, the model manager and
the pipeline; routes are thin shells over `ServiceState.translate`.

Errors are domain exceptions (service/errors.py) mapped to HTTP here, once: native routes answer
`{"error": {"code", "message"}}` with the statuses in `NATIVE_STATUS`; LibreTranslate-compatible routes answer
LibreTranslate's `{"error": "..."}`, with 400 for anything wrong with the request, as LibreTranslate does.

`uvicorn --factory service.api.app:create_app` (what `newsmt serve` runs) calls it without arguments: settings then
come from NEWSMT_* variables.
"""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import libretranslate, native, ops, summarize, web
from service.cache.segment_cache import SegmentCache
from service.config import Settings
from service.engines.manager import ModelManager
from service.errors import (
    AuthenticationRequired,
    InputTooLarge,
    InvalidApiKey,
    InvalidInput,
    ItemFailed,
    ModelLoadError,
    ModelNotInstalled,
    NewsMTError,
    Overloaded,
    RequestTimedOut,
    UnknownTask,
    UnsupportedLanguage,
)
from service.pipeline.translate import Pipeline
from service.serving.metrics import Metrics
from service.serving.state import ServiceState

log = logging.getLogger(__name__)

#: HTTP status per domain error; the most specific class in an error's MRO wins. Anything else is a 500.
NATIVE_STATUS: dict[type[NewsMTError], int] = {
    InvalidInput: 422,
    InputTooLarge: 413,
    UnsupportedLanguage: 422,
    UnknownTask: 404,
    ModelNotInstalled: 503,
    ModelLoadError: 503,
    AuthenticationRequired: 401,
    InvalidApiKey: 403,
    Overloaded: 429,
    RequestTimedOut: 504,
}
#: LibreTranslate answers 400 to every problem with the request itself.
LIBRETRANSLATE_BAD_REQUEST = (InvalidInput, UnsupportedLanguage)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable name, e.g. `input_too_large` (see the README's table).")
    message: str = Field(description="What went wrong, stating the limit broken or the command that fixes it.")


class NativeError(BaseModel):
    """Error body of the native routes."""

    error: ErrorDetail


class LibreTranslateError(BaseModel):
    """Error body of the LibreTranslate-compatible routes, as LibreTranslate shapes it."""

    error: str


#: Every error status a route can answer, declared in the OpenAPI schema so that clients (and the contract test,
#: which checks each response against it) know the body of each: nothing a route answers is undocumented.
_ERROR_MEANINGS = {
    400: "Native routes: the body is not UTF-8. LibreTranslate routes: anything wrong with the request.",
    401: "An API key is required (NEWSMT_API_KEYS is set) and none was sent.",
    403: "The API key is not valid.",
    404: "No such task.",
    413: "The body, a text or the number of texts is over a limit; the message names the setting.",
    422: "Malformed or invalid request, empty text, or unsupported language.",
    429: "Too many translations in flight, or this caller's rate limit is used up; see Retry-After.",
    503: "The model is not installed (the message names the install command) or cannot be loaded.",
    504: "Slower than NEWSMT_REQUEST_TIMEOUT_SECONDS; the work finishes in the background.",
}


def _errors(body: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, object]]:
    return {status: {"model": body, "description": _ERROR_MEANINGS[status]} for status in statuses}


TRANSLATION_ERRORS = _errors(NativeError, 400, 401, 403, 413, 422, 429, 503, 504)
ADMIN_ERRORS = _errors(NativeError, 401, 403, 404, 413, 422, 429, 503)
LIBRETRANSLATE_ERRORS = _errors(LibreTranslateError, 400, 401, 403, 413, 429, 503, 504)

DESCRIPTION = """Translate Hebrew and Arabic news into English, with a content-hash cache.

* Native JSON API under `/v1` (errors: `{"error": {"code", "message"}}`).
* LibreTranslate-compatible `/translate`, `/detect`, `/languages` (errors: `{"error": "..."}`).
* With `NEWSMT_API_KEYS` set, send `Authorization: Bearer KEY` (native) or the `api_key` field (LibreTranslate).
"""


def error_response(path: str, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one place error bodies are shaped: LibreTranslate's on its paths, the native one everywhere else."""
    body: object = {"error": message} if path in libretranslate.LIBRETRANSLATE_PATHS else {
        "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _status(error: NewsMTError, libretranslate_route: bool) -> int:
    if libretranslate_route and isinstance(error, LIBRETRANSLATE_BAD_REQUEST):
        return 400
    return next((NATIVE_STATUS[c] for c in type(error).__mro__ if c in NATIVE_STATUS), 500)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NewsMTError)
    error = exc.error if isinstance(exc, ItemFailed) else exc
    path = request.url.path
    is_lt = path in libretranslate.LIBRETRANSLATE_PATHS
    status = _status(error, is_lt)
    headers = {}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, AuthenticationRequired) and not is_lt:
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, path, status, exc)
    return error_response(path, status, exc.code, str(exc), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()]
    return error_response(request.url.path, 422, "invalid_request", "; ".join(problems))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    return error_response(request.url.path, exc.status_code, phrase.lower().replace(" ", "_"), message,
                          dict(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request.url.path, 500, "internal_error", "internal error; see the server log")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, by the declared Content-Length or, for chunked bodies, by
    counting while reading. Runs before routing, so it answers in the path's error shape itself."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, f"request body has {int(declared)} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send, "request body is larger than that")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        message = f"{what}; the limit is {self.max_bytes} bytes (NEWSMT_MAX_REQUEST_BYTES)"
        await error_response(scope["path"], 413, InputTooLarge.code, message)(scope, receive, send)


class RequestMetrics:
    """Counts every response by route template (not raw path, which would explode label cardinality) and status,
    and observes its latency. Outermost, so refusals by the other middleware are counted too."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)


#: `api_key=...` in a query string. newsmt reads keys only from the Authorization header and the body, but a client
#: may still put one there, and uvicorn's access log records every path with its query string.
_KEY_IN_QUERY = re.compile(r"(?i)([?&]api_key=)[^&#\s]*")


class RedactApiKeys(logging.Filter):
    """Blanks API keys out of access-log lines, so that no key ever reaches a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_KEY_IN_QUERY.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactApiKeys) for f in access.filters):
        access.addFilter(RedactApiKeys())


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing heavy happens here: the cache is opened and the pipeline built in the lifespan, and
    models load on first use (or via POST /v1/models/{task}/load)."""
    settings = settings or Settings()
    metrics = Metrics()
    _redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = SegmentCache.from_settings(settings)
        manager = ModelManager(settings, on_load=metrics.on_load)
        pipeline = Pipeline(settings, manager, cache, on_batch=metrics.on_batch)
        state = app.state.service = ServiceState(settings, manager, cache, pipeline, metrics)
        # Resolves (and fingerprints, for a local model) every translation model now, in a thread, so the cache
        # lookups the event loop makes for each request never hash model files.
        await anyio.to_thread.run_sync(pipeline.models_signature)
        # Everything made so far (imported modules: ~400,000 objects with transformers) lives as long as the process.
        # Frozen, the garbage collector stops rescanning it: a full collection under load otherwise stalls every
        # request for ~250 ms, which is what a cached request's p99 latency showed.
        gc.freeze()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="newsmt", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(native.router, responses=TRANSLATION_ERRORS)
    app.include_router(summarize.router, responses=TRANSLATION_ERRORS)
    app.include_router(ops.admin, responses=ADMIN_ERRORS)
    app.include_router(libretranslate.router, responses=LIBRETRANSLATE_ERRORS)
    app.include_router(ops.router)
    app.include_router(web.router)
    app.add_exception_handler(NewsMTError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    # Starlette runs the last-added middleware outermost: metrics see everything, CORS headers go on refusals too.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
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
