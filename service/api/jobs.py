"""Jobs over HTTP: submit a corpus and get an id at once, poll its progress, stream its results.jsonl, cancel it.

`POST /v1/jobs` takes JSON (`{"articles": [{"id", "text"}], "source"}`) or a multipart upload of a `.jsonl` file in
the bulk CLI's input format; records are the bulk CLI's, and an uploaded `corpus.jsonl` gives the same ids
(`corpus/ID`) as `newsmt translate corpus.jsonl`. Every route sees only the caller's own jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from service.api.deps import AdmittedCaller
from service.api.schemas import JobInfo, JobRequest
from service.errors import InvalidInput, UnsupportedFormat
from service.pipeline.articles import JSONL_SUFFIX, ArticleSource, check_unique_ids, jsonl_articles, safe_file_name
from service.pipeline.translate import SOURCE_CHOICES
from service.serving.jobs import Job

router = APIRouter(prefix="/v1", tags=["jobs"])

#: How often a followed results stream looks for new records.
FOLLOW_POLL_SECONDS = 0.25


_JOB_BODY = {
    "required": True,
    "content": {
        # Written out rather than JobRequest.model_json_schema(), whose `$defs` references do not resolve in here.
        "application/json": {"schema": {
            "type": "object", "required": ["articles"], "additionalProperties": False, "properties": {
                "articles": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["text"], "additionalProperties": False, "properties": {
                        "id": {"type": ["string", "null"]}, "text": {"type": "string"}}}},
                "source": {"type": "string", "enum": list(SOURCE_CHOICES)},
                "name": {"type": "string", "minLength": 1, "maxLength": 200}}}, "example": {
            "articles": [{"id": "a1", "text": "ראש הממשלה נפגש היום עם שר החוץ בירושלים."}], "source": "auto"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "A .jsonl file: one `{\"text\": ..., \"id\": ...}` object per line."},
            "source": {"type": "string", "enum": list(SOURCE_CHOICES)}}}},
    },
}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _info(request: Request, job: Job) -> JobInfo:
    return JobInfo(id=job.id, name=job.name, status=job.status, source=job.source, total=job.total, done=job.done,
                   failed=job.failed, segments=job.segments, cache_hits=job.cache_hits, cache_hit_rate=job.hit_rate,
                   eta_seconds=job.eta_seconds, created_at=str(_iso(job.created_at)), started_at=_iso(job.started_at),
                   finished_at=_iso(job.finished_at), error=job.error,
                   results_url=str(request.url_for("job_results", job_id=job.id)))


async def _articles(request: Request) -> tuple[str, str, list[ArticleSource]]:
    """(name, source, articles) from a JSON body or an uploaded .jsonl, validated as the bulk CLI validates."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await request.form()
        upload, source = form.get("file"), form.get("source") or "auto"
        if not isinstance(upload, UploadFile):
            raise InvalidInput("missing `file`: upload a .jsonl file (one JSON object with a 'text' field a line)")
        if source not in SOURCE_CHOICES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCE_CHOICES)}, got {source!r}")
        name = safe_file_name(PurePath((upload.filename or "").replace("\\", "/")).name)
        if not name.lower().endswith(JSONL_SUFFIX):
            raise UnsupportedFormat(f"{name}: a job takes a {JSONL_SUFFIX} file (the bulk CLI's input format)")
        try:
            text = (await upload.read()).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{name} is not valid UTF-8 (byte {exc.start})") from exc
        articles = list(jsonl_articles(text.splitlines(), Path(name), safe_file_name(PurePath(name).stem)))
        check_unique_ids(articles)
        return name, str(source), articles
    try:
        body = JobRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    name = safe_file_name(body.name)
    articles = [ArticleSource(safe_file_name(a.id or str(n)), Path(name), "", a.text, n)
                for n, a in enumerate(body.articles, start=1)]
    check_unique_ids(articles)
    return name, body.source, articles


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, openapi_extra={"requestBody": _JOB_BODY})
async def submit_job(request: Request, caller: AdmittedCaller) -> JobInfo:
    """Start translating a corpus in the background; answers at once with the job's id and status."""
    name, source, articles = await _articles(request)
    return _info(request, await caller.jobs.submit(caller.owner, name, source, articles))


@router.get("/jobs")
async def list_jobs(request: Request, caller: AdmittedCaller) -> list[JobInfo]:
    """The caller's jobs, newest first."""
    return [_info(request, job) for job in caller.jobs.owned_by(caller.owner)]


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request, caller: AdmittedCaller) -> JobInfo:
    """Status and progress: articles done and failed, cache hit rate, estimated time left."""
    return _info(request, caller.jobs.get(job_id, caller.owner))


@router.delete("/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request, caller: AdmittedCaller) -> JobInfo:
    """Cancel the job after the chunk in flight; the results so far stay available."""
    return _info(request, await caller.jobs.cancel(job_id, caller.owner))


@router.get("/jobs/{job_id}/results", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "results.jsonl: one bulk-CLI record per finished article."}})
async def job_results(
    job_id: str, caller: AdmittedCaller,
    follow: Annotated[bool, Query(description="Keep the stream open and send records as they are written, "
                                              "until the job ends.")] = False,
) -> StreamingResponse:
    """The records written so far (the whole file once the job is done), in input order."""
    job = caller.jobs.get(job_id, caller.owner)
    path = caller.jobs.results_path(job)

    async def stream() -> AsyncIterator[bytes]:
        offset = 0
        while True:
            active = job.active  # read before the file: a job that ends meanwhile gets one more read
            data = await anyio.to_thread.run_sync(_read_from, path, offset)
            whole = data[:data.rfind(b"\n") + 1]
            if whole:
                offset += len(whole)
                yield whole
            if not (follow and active):
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()
    except FileNotFoundError:
        return b""

