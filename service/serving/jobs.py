"""Long-running translation jobs: a corpus submitted over HTTP, translated in the background, results as the bulk
CLI writes them.

Each job is a folder under NEWSMT_JOBS_DIR: `job.json` (owner, status, times), `input.jsonl` (the articles as
submitted) and `results.jsonl` (one bulk-CLI record per finished article, in input order, appended and fsynced a
chunk at a time). Nothing else is state: progress is counted from `results.jsonl`, so a server that starts finds
every queued or running job, drops a torn last line a kill left, and goes on after the last whole record. The
articles it redoes come from the cache: a chunk's sentences are stored before its records are written, so a kill
costs at most the chunk that was in flight (NEWSMT_JOB_CHUNK_ARTICLES).

Jobs translate through the serving layer's `translate_background`: the same cache and batcher as requests, with
their sentences queued behind every interactive request's, and one chunk of one job in flight per job slot
(NEWSMT_JOB_CONCURRENCY), so a job fills the engine's idle time rather than competing with requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from service.config import Settings
from service.errors import InputTooLarge, InvalidInput, NotFound
from service.files import write_atomic
from service.pipeline.articles import ArticleSource, result_record
from service.pipeline.translate import ArticleResult

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "cancelled", "failed"]
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")
JOB_FILE, INPUT_FILE, RESULTS_FILE = "job.json", "input.jsonl", "results.jsonl"
#: `translate_background(texts, source, ids)`: how a job reaches the serving layer.
Translate = Callable[[list[str], str, list[str]], Awaitable[list[ArticleResult]]]


@dataclass
class Job:
    """A job's saved state (`job.json`) plus its progress, which is counted from results.jsonl, never saved."""

    id: str
    owner: str
    name: str
    source: str
    total: int
    created_at: float
    status: JobStatus = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    done: int = field(default=0, metadata={"progress": True})
    failed: int = field(default=0, metadata={"progress": True})
    segments: int = field(default=0, metadata={"progress": True})
    cache_hits: int = field(default=0, metadata={"progress": True})
    #: This process's share of the work, for the estimate of time left (a resumed job's earlier run says nothing
    #: about this one's speed).
    run_started: float | None = field(default=None, metadata={"progress": True})
    run_done: int = field(default=0, metadata={"progress": True})

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def hit_rate(self) -> float | None:
        return round(self.cache_hits / self.segments, 4) if self.segments else None

    @property
    def eta_seconds(self) -> float | None:
        if not self.active or not self.run_done or self.run_started is None:
            return None
        rate = self.run_done / max(time.monotonic() - self.run_started, 1e-6)
        return round((self.total - self.done) / rate, 1)

    def saved(self) -> dict[str, Any]:
        progress = {name for name, f in self.__dataclass_fields__.items() if f.metadata.get("progress")}
        return {k: v for k, v in asdict(self).items() if k not in progress}

    def count(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.done += 1
            self.failed += record.get("status") != "ok"
            self.segments += int(record.get("segments") or 0)
            self.cache_hits += int(record.get("cache_hits") or 0)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a results.jsonl. A torn last line (a kill mid-append) is cut off the file, so the
    next append starts on a line of its own."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as fh:
            fh.truncate(end)
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        fh.flush()
        os.fsync(fh.fileno())


class JobManager:
    """Owns every job of this server: submission, resumption at start-up, the runners, cancellation."""

    def __init__(self, settings: Settings, translate: Translate):
        self.settings = settings
        self.root = settings.jobs_dir
        self._translate = translate
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.job_concurrency)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every job on disk and resume the unfinished ones, oldest first."""
        jobs = await anyio.to_thread.run_sync(self._load_all)
        for job in sorted(jobs, key=lambda j: j.created_at):
            self._jobs[job.id] = job
            if job.active:
                log.info("resuming job %s at %d/%d articles", job.id, job.done, job.total)
                self._schedule(job)

    async def close(self) -> None:
        """Stop the runners; their jobs stay `running` on disk and resume at the next start."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _load_all(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        jobs = []
        for folder in self.root.iterdir():
            try:
                job = Job(**json.loads((folder / JOB_FILE).read_text(encoding="utf-8")))
                job.count(read_results(folder / RESULTS_FILE))
            except (OSError, ValueError, TypeError) as exc:  # a folder a kill left before its job.json was written
                log.warning("skipping job folder %s: %s", folder, exc)
                continue
            jobs.append(job)
        return jobs

    # -- requests -------------------------------------------------------------------------------------------------
    async def submit(self, owner: str, name: str, source: str, articles: list[ArticleSource]) -> Job:
        if not articles:
            raise InvalidInput("the job has no articles")
        if len(articles) > self.settings.job_max_articles:
            raise InputTooLarge(f"the job has {len(articles)} articles; the limit is {self.settings.job_max_articles} "
                                "(NEWSMT_JOB_MAX_ARTICLES)")
        job = Job(secrets.token_hex(16), owner, name, source, len(articles), time.time())
        await anyio.to_thread.run_sync(self._create, job, articles)
        self._jobs[job.id] = job
        self._schedule(job)
        return job

    def _create(self, job: Job, articles: list[ArticleSource]) -> None:
        folder = self.root / job.id
        write_atomic(folder / INPUT_FILE, "".join(
            json.dumps({"id": a.id, "path": str(a.path), "line": a.line, "text": a.text}, ensure_ascii=False) + "\n"
            for a in articles))
        self._save(job)  # last: a folder without job.json is skipped at start-up

    def _save(self, job: Job) -> None:
        write_atomic(self.root / job.id / JOB_FILE, json.dumps(job.saved()))

    def get(self, job_id: str, owner: str) -> Job:
        """The caller's job; another caller's is not found either, so ids reveal nothing."""
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound(f"no job {job_id!r} for this caller")
        return job

    def owned_by(self, owner: str) -> list[Job]:
        return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created_at, reverse=True)

    async def cancel(self, job_id: str, owner: str) -> Job:
        """Stop the job after the chunk in flight; its results so far stay available."""
        job = self.get(job_id, owner)
        if job.active:
            job.status, job.finished_at = "cancelled", time.time()
            await anyio.to_thread.run_sync(self._save, job)
        return job

    def results_path(self, job: Job) -> Path:
        return self.root / job.id / RESULTS_FILE

    # -- running --------------------------------------------------------------------------------------------------
    def _schedule(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if not job.active:  # cancelled while it waited for a slot
                return
            try:
                await self._translate_all(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the job, not the server, fails: a full disk, a broken input file
                log.exception("job %s failed", job.id)
                job.status, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}", time.time()
                await anyio.to_thread.run_sync(self._save, job)

    async def _translate_all(self, job: Job) -> None:
        if job.status == "queued":
            job.status, job.started_at = "running", time.time()
            await anyio.to_thread.run_sync(self._save, job)
        articles = await anyio.to_thread.run_sync(self._read_input, job)
        job.run_started, job.run_done = time.monotonic(), 0
        chunk = self.settings.job_chunk_articles
        for part in _chunks(articles[job.done:], chunk):
            if not job.active:
                return  # cancelled: the chunk in flight was the last
            results = await self._translate([a.text or "" for a in part], job.source, [a.id for a in part])
            threshold = self.settings.low_confidence  # the records the bulk CLI writes, sentence scores included
            records = [result_record(a, r, None, threshold) for a, r in zip(part, results, strict=True)]
            await anyio.to_thread.run_sync(_append, self.results_path(job), records)
            job.count(records)
            job.run_done += len(records)
        if job.active:
            job.status, job.finished_at = "done", time.time()
            await anyio.to_thread.run_sync(self._save, job)

    def _read_input(self, job: Job) -> list[ArticleSource]:
        with (self.root / job.id / INPUT_FILE).open(encoding="utf-8") as fh:
            return [ArticleSource(r["id"], Path(r["path"]), "", r["text"], r["line"]) for r in map(json.loads, fh)]


def _chunks(items: list[ArticleSource], size: int) -> Iterator[list[ArticleSource]]:
    for first in range(0, len(items), size):
        yield items[first:first + size]
