"""LibreTranslate-compatible routes, so existing LibreTranslate clients work against newsmt unchanged.

They answer what LibreTranslate's own server answers (read from its `app.py`): parameters come from a JSON body when
the request says it is JSON and from form fields otherwise; `q` is a string or (JSON only) a list; `source` may be
`auto`, in which case `detectedLanguage` (confidence 0-100) comes back; `alternatives=N` adds an `alternatives`
list of up to N other translations from the beam (the k-th takes every sentence's k-th hypothesis, duplicates and
copies of the translation left out, as LibreTranslate builds them), refused with 400 above its limit
(NEWSMT_ALTERNATIVES_LIMIT, like LibreTranslate's --alternatives-limit); errors are `{"error": "..."}` with status
400 for anything wrong with the request, 403 for a wrong key and 429 when busy. newsmt adds 401 (key missing), 413
(body too large), 503 (model not installed) and 504 (timeout). Alternatives are never invented: with `format=html`
the list is empty, as LibreTranslate's own is, since one document's text nodes have no whole-document hypotheses.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import State, admit
from service.api.encoding import json_response
from service.api.schemas import ARABIC_EXAMPLE, HEBREW_EXAMPLE, DetectedLanguage, Language, LibreTranslation
from service.config import LANGUAGE_NAMES, SOURCE_LANGUAGES, TARGET_LANGUAGE
from service.errors import InvalidInput
from service.pipeline.documents import detect_text
from service.pipeline.translate import SOURCE_CHOICES
from service.serving.state import ServiceState, raise_first_error
from service.text.documents import html_document

router = APIRouter(tags=["LibreTranslate-compatible"])

#: Paths whose errors use LibreTranslate's shape and status codes (see app.error_response).
LIBRETRANSLATE_PATHS = frozenset({"/translate", "/detect", "/languages", "/translate_file"})
#: Prefix of LibreTranslate's download route for translated files (`translatedFileUrl`).
DOWNLOAD_PREFIX = "/download_file/"


def is_libretranslate_path(path: str) -> bool:
    return path in LIBRETRANSLATE_PATHS or path.startswith(DOWNLOAD_PREFIX)

FORMATS = ("text", "html")
_SUPPORTED = (*SOURCE_LANGUAGES, TARGET_LANGUAGE)

_FORM = "application/x-www-form-urlencoded"
#: Any JSON value: with keys configured, anything but one of them (a number, say) is a wrong key (403), and without
#: keys the field is ignored.
_API_KEY = {"description": "One of NEWSMT_API_KEYS, when the server has keys."}
_TRANSLATE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["q", "source", "target"], "properties": {
                "q": {"oneOf": [{"type": "string", "minLength": 1},
                                {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                "source": {"type": "string", "enum": list(SOURCE_CHOICES)},
                "target": {"type": "string", "enum": [TARGET_LANGUAGE]},
                "format": {"type": ["string", "null"], "enum": [*FORMATS, "", None], "default": "text",
                           "description": "empty or null: text, as in LibreTranslate"},
                "alternatives": {"type": ["integer", "string", "null"], "default": 0,
                                 "description": "a whole number, or one written as text"},
                "api_key": _API_KEY,
            }},
            "examples": {
                "arabic": {"summary": "Arabic, detected", "value": {"q": ARABIC_EXAMPLE, "source": "auto",
                                                                     "target": "en"}},
                "hebrew": {"summary": "Hebrew, a list", "value": {"q": [HEBREW_EXAMPLE], "source": "he",
                                                                   "target": "en"}},
                "html": {"summary": "Arabic HTML: tags kept", "value": {
                    "q": "<p>التقى الوزير <b>بنظيره</b> في القاهرة.</p>", "source": "ar", "target": "en",
                    "format": "html"}},
            },
        },
        _FORM: {
            "schema": {"type": "object", "required": ["q", "source", "target"], "properties": {
                "q": {"type": "string", "minLength": 1}, "source": {"type": "string"}, "target": {"type": "string"},
                "format": {"type": "string"}, "alternatives": {"type": "integer"}, "api_key": {"type": "string"},
            }},
            "example": {"q": HEBREW_EXAMPLE, "source": "auto", "target": "en"},
        },
    },
}
_DETECT_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "object", "required": ["q"], "properties": {
            "q": {"type": "string", "minLength": 1}, "api_key": _API_KEY}}, "example": {"q": ARABIC_EXAMPLE}}
        for media in ("application/json", _FORM)
    },
}








async def _fields(request: Request) -> dict[str, Any]:
    """Request parameters the way LibreTranslate reads them: the JSON object when the content type is JSON, else
    the form fields (first value of each, like Flask's `request.values.get`)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            data = None
        if not isinstance(data, dict):
            raise InvalidInput("Invalid JSON format")
        return data
    form = await request.form()
    return {key: form.get(key) for key in form}


def required_str(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidInput(f"Invalid request: missing {name} parameter")
    if not isinstance(value, str):
        raise InvalidInput(f"Invalid request: {name} must be a string")
    return value


def _texts(fields: dict[str, Any]) -> list[str] | str:
    q = fields.get("q")
    if not q:
        raise InvalidInput("Invalid request: missing q parameter")
    if isinstance(q, str) or (isinstance(q, list) and all(isinstance(t, str) for t in q)):
        return q
    raise InvalidInput("Invalid request: q must be a string or a list of strings")


def api_key_field(fields: dict[str, Any]) -> str | None:
    """The `api_key` field as text: anything else a client sends there is simply not a valid key."""
    value = fields.get("api_key")
    return value if isinstance(value, str) or value is None else repr(value)


def _alternatives(value: Any) -> int:
    """A whole number, as JSON or as text (form fields are text, and LibreTranslate also takes JSON strings);
    absent, null or empty means none, and so does a negative number, as in LibreTranslate."""
    not_a_number = InvalidInput("Invalid request: alternatives parameter is not a number")
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        try:
            return max(0, int(value))
        except ValueError:
            raise not_a_number from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise not_a_number
    return max(0, value)


def _detected(lang: str | None, confidence: float | None) -> dict[str, Any]:
    """LibreTranslate reports confidence as a percentage."""
    return {"confidence": round((confidence or 0.0) * 100, 1), "language": lang}


async def _translate_html(state: ServiceState, markup: str, source: str) -> tuple[str, dict[str, Any]]:
    """Translate the text nodes of one HTML document; tags, attributes, scripts and styles are kept as sent. The
    language is detected once on all of its text, since single nodes are often too short to detect."""
    translated = await state.translate_document(html_document(markup), source)
    result = translated.result
    return translated.content.decode("utf-8"), _detected(result.detected_language, result.language_confidence)


@router.post("/translate", openapi_extra={"requestBody": _TRANSLATE_BODY}, response_model=LibreTranslation,
             response_model_exclude_none=True)
async def translate(request: Request, state: State) -> Response:
    """Translate text (or HTML, keeping its tags) from Arabic or Hebrew into English."""
    fields = await _fields(request)
    admit(state, request, api_key_field(fields))
    q = _texts(fields)
    source, target = required_str(fields, "source"), required_str(fields, "target")
    text_format = fields.get("format") or "text"
    if text_format not in FORMATS:
        raise InvalidInput(f"{text_format} format is not supported")
    alternatives = _alternatives(fields.get("alternatives"))
    limit = state.settings.alternatives_limit
    if alternatives > limit:
        raise InvalidInput(f"Invalid request: alternatives parameter must be <= {limit} (NEWSMT_ALTERNATIVES_LIMIT)")
    if source not in SOURCE_CHOICES:
        raise InvalidInput(f"{source} is not supported")
    if target != TARGET_LANGUAGE:
        raise InvalidInput(f"{target} is not supported: newsmt translates into {TARGET_LANGUAGE} only")
    batch = isinstance(q, list)
    texts = q if isinstance(q, list) else [q]
    field_name = "q" if batch else None
    state.check_request_size(texts, field_name)
    if text_format == "html":
        pairs = [await _translate_html(state, text, source) for text in texts]
        translated, detected = [p[0] for p in pairs], [p[1] for p in pairs]
        others: list[list[str]] = [[] for _ in texts]
    else:
        results = await state.translate(texts, source, alternatives=alternatives)
        raise_first_error(results, field_name)
        translated = [r.translation or "" for r in results]
        detected = [_detected(r.detected_language, r.language_confidence) for r in results]
        others = [r.alternatives(alternatives) for r in results]
    body: dict[str, Any] = {"translatedText": translated if batch else translated[0]}
    if source == "auto":
        body["detectedLanguage"] = detected if batch else detected[0]
    if alternatives:
        body["alternatives"] = others if batch else others[0]
    return json_response(body)


@router.post("/detect", openapi_extra={"requestBody": _DETECT_BODY}, response_model=list[DetectedLanguage])
async def detect(request: Request, state: State) -> list[dict[str, Any]]:
    """Detect the language of a text: `[{"confidence": 0-100, "language": code}]`."""
    fields = await _fields(request)
    admit(state, request, api_key_field(fields))
    q = required_str(fields, "q")
    state.check_request_size([q], None)
    detection = await anyio.to_thread.run_sync(detect_text, q)
    return [_detected(detection.lang, detection.confidence)]


@router.get("/languages", response_model=list[Language])
@router.post("/languages", operation_id="languages_post", response_model=list[Language])  # older clients POST
def languages() -> list[dict[str, Any]]:
    """Languages newsmt reads and the target each translates into (English is passed through, never a source
    of translation)."""
    return [{"code": code, "name": LANGUAGE_NAMES[code],
             "targets": [TARGET_LANGUAGE] if code in SOURCE_LANGUAGES else []} for code in _SUPPORTED]
