"""Domain errors (service/errors.py) mapped to HTTP here, once: native routes answer `{"error": {"code",
"message"}}` with the statuses in `NATIVE_STATUS`; LibreTranslate-compatible routes answer LibreTranslate's
`{"error": "..."}`, with 400 for anything wrong with the request, as LibreTranslate does. Every status a route can
answer is declared in the OpenAPI schema with its body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.libretranslate import is_libretranslate_path
from service.api.schemas import LibreTranslateError, NativeError
from service.errors import (
    AuthenticationRequired,
    GlossaryNotFound,
    InputTooLarge,
    InvalidApiKey,
    InvalidInput,
    ItemFailed,
    ModelLoadError,
    ModelNotInstalled,
    NewsMTError,
    NotFound,
    Overloaded,
    RequestTimedOut,
    UnknownTask,
    UnsupportedFormat,
    UnsupportedLanguage,
    mapped,
)

log = logging.getLogger(__name__)

#: HTTP status per domain error; the most specific class in an error's MRO wins. Anything else is a 500.
NATIVE_STATUS: dict[type[NewsMTError], int] = {
    InvalidInput: 422,
    InputTooLarge: 413,
    UnsupportedLanguage: 422,
    UnknownTask: 404,
    GlossaryNotFound: 404,
    NotFound: 404,
    UnsupportedFormat: 415,
    ModelNotInstalled: 503,
    ModelLoadError: 503,
    AuthenticationRequired: 401,
    InvalidApiKey: 403,
    Overloaded: 429,
    RequestTimedOut: 504,
}


#: LibreTranslate answers 400 to every problem with the request itself.
LIBRETRANSLATE_BAD_REQUEST = (InvalidInput, UnsupportedLanguage)


#: Every error status a route can answer, declared in the OpenAPI schema so that clients (and the contract test,
#: which checks each response against it) know the body of each: nothing a route answers is undocumented.
_ERROR_MEANINGS = {
    400: "Native routes: the body is not UTF-8, or not valid multipart. LibreTranslate routes: anything wrong with "
         "the request.",
    401: "An API key is required (NEWSMT_API_KEYS is set) and none was sent.",
    403: "The API key is not valid.",
    404: "No such task, glossary, job or document (or the document expired).",
    413: "The body, a text, a file or the number of texts is over a limit; the message names the setting.",
    415: "The file's extension is not a format newsmt translates, or its bytes are not that format.",
    422: "Malformed or invalid request, empty text, or unsupported language.",
    429: "Too many translations or summaries in flight, or this caller's rate limit is used up; see Retry-After.",
    503: "The model is not installed (the message names the install command) or cannot be loaded.",
    504: "Slower than NEWSMT_REQUEST_TIMEOUT_SECONDS; the work finishes in the background.",
}


def _errors(body: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, object]]:
    return {status: {"model": body, "description": _ERROR_MEANINGS[status]} for status in statuses}


TRANSLATION_ERRORS = _errors(NativeError, 400, 401, 403, 413, 422, 429, 503, 504)
#: /v1/translate also answers 404 for a glossary name that does not exist.
NATIVE_TRANSLATE_ERRORS = {**TRANSLATION_ERRORS, **_errors(NativeError, 404)}


ADMIN_ERRORS = _errors(NativeError, 401, 403, 404, 413, 422, 429, 503)
#: /v1/glossaries: a PUT body that is not UTF-8 is a 400, as on the translate routes.
GLOSSARY_ERRORS = _errors(NativeError, 400, 401, 403, 404, 413, 422, 429)


LIBRETRANSLATE_ERRORS = _errors(LibreTranslateError, 400, 401, 403, 413, 429, 503, 504)


LIBRETRANSLATE_DOWNLOAD_ERRORS = {**LIBRETRANSLATE_ERRORS, **_errors(LibreTranslateError, 404)}


DOCUMENT_ERRORS = _errors(NativeError, 400, 401, 403, 404, 413, 415, 422, 429, 503, 504)


def error_response(path: str, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one place error bodies are shaped: LibreTranslate's on its paths, the native one everywhere else."""
    body: object = {"error": message} if is_libretranslate_path(path) else {
        "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _status(error: NewsMTError, libretranslate_route: bool) -> int:
    if libretranslate_route and isinstance(error, LIBRETRANSLATE_BAD_REQUEST):
        return 400
    return mapped(NATIVE_STATUS, error, 500)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NewsMTError)
    error = exc.error if isinstance(exc, ItemFailed) else exc
    path = request.url.path
    is_lt = is_libretranslate_path(path)
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NewsMTError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
