"""Documents over HTTP: LibreTranslate's `POST /translate_file` + `GET /download_file/...`, and the native
`POST /v1/documents` + `GET /v1/documents/{id}`.

Both parse the upload (service/text/documents.py), translate its texts through the serving layer like any request,
and keep the translated file for NEWSMT_DOCUMENT_TTL_SECONDS; the answer names where to fetch it. Downloads are
always attachments with a sandboxing Content-Security-Policy: a translated HTML file never runs in this origin.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile as StarletteUploadFile

from service.api.deps import Admitted, State, admit
from service.api.libretranslate import DOWNLOAD_PREFIX, api_key_field, required_str
from service.api.schemas import DocumentInfo, ModelRef, Source, TranslatedFileUrl
from service.config import TARGET_LANGUAGE
from service.errors import InvalidInput
from service.pipeline.articles import safe_file_name
from service.pipeline.translate import SOURCE_CHOICES, ArticleResult
from service.serving.documents import StoredDocument
from service.serving.state import ServiceState
from service.text.documents import FORMATS, parse_document

router = APIRouter(prefix="/v1", tags=["documents"])
libretranslate_router = APIRouter(tags=["LibreTranslate-compatible"])

#: How a download is served: as a file to save, never rendered or run in this origin.
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
                    "Cache-Control": "no-store"}
_FILE_HELP = f"The file to translate: {', '.join(FORMATS)}."
_TRANSLATE_FILE_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "source", "target"], "properties": {
            "file": {"type": "string", "format": "binary", "description": _FILE_HELP},
            "source": {"type": "string", "enum": list(SOURCE_CHOICES)},
            "target": {"type": "string", "enum": [TARGET_LANGUAGE]},
            "api_key": {"type": "string", "description": "One of NEWSMT_API_KEYS, when the server has keys."},
        }}}},
}


def _upload_name(upload: StarletteUploadFile) -> str:
    """The client's file name without any folders, made safe to store (its extension picks the format)."""
    name = PurePath((upload.filename or "").replace("\\", "/")).name
    if not name:
        raise InvalidInput("Invalid request: the file has no name (its extension says which format it is)")
    return safe_file_name(name)


async def _translate_upload(state: ServiceState, upload: StarletteUploadFile,
                            source: str) -> tuple[StoredDocument, ArticleResult]:
    name = _upload_name(upload)
    data = await upload.read()
    doc = await anyio.to_thread.run_sync(parse_document, name, data, state.settings)
    translated = await state.translate_document(doc, source)
    stored = await anyio.to_thread.run_sync(state.documents.put, translated.filename, translated.media_type,
                                            translated.content)
    return stored, translated.result


def _download(state: ServiceState, document_id: str) -> FileResponse:
    stored = state.documents.get(document_id)
    return FileResponse(stored.path(state.documents.root), media_type=stored.media_type, filename=stored.filename,
                        headers=DOWNLOAD_HEADERS)


@router.post("/documents")
async def translate_document(
    request: Request,
    state: Admitted,
    file: Annotated[UploadFile, File(description=_FILE_HELP)],
    source: Annotated[Source, Form(description="Source language; auto detects it.")] = "auto",
) -> DocumentInfo:
    """Translate a file, keeping its format: markup, subtitle timings, Word styles, tables, headers and footers.
    The answer says where to download the result."""
    stored, result = await _translate_upload(state, file, source)
    return DocumentInfo(
        id=stored.id, filename=stored.filename, media_type=stored.media_type,
        download_url=str(request.url_for("download_document", document_id=stored.id)),
        expires_at=datetime.fromtimestamp(stored.expires_at, UTC).isoformat(timespec="seconds"),
        detected_language=result.detected_language, language_confidence=result.language_confidence,
        segments=result.segments, cached_segments=result.cache_hits,
        models=[ModelRef.model_validate(m) for m in result.models],
    )


@router.get("/documents/{document_id}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The translated file."}})
async def download_document(document_id: str, state: State) -> FileResponse:
    """The translated file, until it expires (404 after)."""
    return _download(state, document_id)


@libretranslate_router.post("/translate_file", openapi_extra={"requestBody": _TRANSLATE_FILE_BODY},
                            response_model=TranslatedFileUrl)
async def translate_file(request: Request, state: State) -> dict[str, str]:
    """LibreTranslate's file translation: multipart `file`, `source`, `target` (and `api_key`); answers the URL of
    the translated file."""
    form = await request.form()
    fields: dict[str, Any] = {key: form.get(key) for key in form}
    admit(state, request, api_key_field(fields))
    upload = fields.get("file")
    if not isinstance(upload, StarletteUploadFile):
        raise InvalidInput("Invalid request: missing file parameter")
    source, target = required_str(fields, "source"), required_str(fields, "target")
    if source not in SOURCE_CHOICES:
        raise InvalidInput(f"{source} is not supported")
    if target != TARGET_LANGUAGE:
        raise InvalidInput(f"{target} is not supported: newsmt translates into {TARGET_LANGUAGE} only")
    stored, _ = await _translate_upload(state, upload, source)
    url = request.url_for("download_file", name=f"{stored.id}.{stored.filename}")
    return {"translatedFileUrl": str(url)}


@libretranslate_router.get(DOWNLOAD_PREFIX + "{name}", response_class=FileResponse,
                           responses={200: {"content": {"application/octet-stream": {}},
                                            "description": "The translated file."}})
async def download_file(name: str, state: State) -> FileResponse:
    """A file `/translate_file` translated, by the name in its `translatedFileUrl`."""
    return _download(state, name.partition(".")[0])
