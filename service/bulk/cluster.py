"""The bulk run spread over a Ray cluster with Ray Data: `newsmt translate|summarize ... --cluster ray`.

The same pipeline functions as the local run, in Ray Data stages:

    inputs (files; JSONL in line ranges, read by the workers)  -> flat_map: one row per article
    -> map_batches, tasks:  read, article-cache lookup, clean + detect + segment, one segment-cache lookup per batch
    -> map_batches, actors: the misses through the task's engine (loaded once per actor, lazily, by the model
       manager, so an actor whose batches were all cached loads nothing), segment-cache store, per-article assembly
       and article-cache store, summaries
    -> the driver, in input order: NAME.en.txt, NAME.summary.txt, results.jsonl, through the very writer the local
       run uses (service/bulk/run.py: RunOutputs).

Rows cross stages as pickles of `_Article`, one per article: the state is the pipeline's own dataclasses, which Arrow
cannot type. Assembly runs in the actors because it is a string join next to an inference, and abstractive summaries
need the model the actor holds anyway.

Ray is an optional dependency (`pip install -e '.[cluster]'`): only this module imports it, and the CLI imports this
module only for `--cluster ray`.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import pickle
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, DataContext

from service.bulk.run import (
    DOCUMENT_SUFFIXES,
    RunOutputs,
    check_summary_options,
    input_files,
    is_jsonl,
    no_articles_message,
    read_sources,
)
from service.bulk.stats import BulkSummary
from service.cache.segment_cache import SegmentCache
from service.config import TARGET_LANGUAGE, TASKS, Settings
from service.engines.manager import ModelManager
from service.errors import InvalidInput, ModelLoadError, ModelNotInstalled, NewsMTError
from service.pipeline.articles import TRANSLATION_SUFFIX, ArticleSource, jsonl_article
from service.pipeline.sentences import SentenceResult
from service.pipeline.summarize import SUMMARIZE_THEN_TRANSLATE, Summarizer, SummaryOptions, SummaryResult
from service.pipeline.translate import ArticleResult, ArticleWork, Pipeline

log = logging.getLogger(__name__)

#: Lines of a JSONL input per read task: the driver only records where each range starts.
JSONL_LINES_PER_RANGE = 256
_COLUMN = "article"
_LOADS = "loads"


@dataclass(frozen=True)
class ActorPool:
    """The inference stage's actor pool, in Ray's own terms: `min_size`..`max_size` actors (map_batches'
    `concurrency` as min,max), `num_cpus` / `num_gpus` per actor, `batch_size` articles per call; an actor that dies
    is restarted up to `max_restarts` times (-1: always) and its batch retried up to `max_task_retries` times."""

    min_size: int = 1
    max_size: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = None
    max_restarts: int = -1
    max_task_retries: int = 3

    @classmethod
    def parse_concurrency(cls, value: str) -> tuple[int, int]:
        """`N` (a fixed pool) or `MIN,MAX` (Ray scales the pool between them)."""
        try:
            sizes = [int(part) for part in value.split(",")]
        except ValueError:
            sizes = []
        if len(sizes) not in (1, 2) or min(sizes) < 1 or sizes[0] > sizes[-1]:
            raise InvalidInput(f"--concurrency must be N or MIN,MAX with 1 <= MIN <= MAX, got '{value}'")
        return sizes[0], sizes[-1]


@dataclass(frozen=True)
class _Job:
    """What every stage needs to know about the run; shipped to the workers once."""

    settings: Settings
    source: str
    beam_size: int | None
    summary: SummaryOptions | None


@dataclass(frozen=True)
class JsonlRange:
    """Lines `first_line`.. of a JSONL file, from byte `start` to `end`: the driver finds the ranges without keeping
    any text, and a worker reads each one."""

    path: Path
    stem: str
    start: int
    end: int
    first_line: int


@dataclass
class _Article:
    """One article between stages."""

    src: ArticleSource
    result: ArticleResult
    #: Set while its segments are left to translate.
    work: ArticleWork | None = None
    #: Sentences of its segments that the cache had (SentenceResult pickles: plain dataclasses).
    found: dict[str, SentenceResult] = field(default_factory=dict)
    #: An input that could not be read (not UTF-8, a bad JSONL line) gets no summary, as in the local run.
    readable: bool = True
    summary: SummaryResult | None = None
    seconds: float = 0.0


# -- inputs ----------------------------------------------------------------------------------------------------
def plan_inputs(paths: Sequence[Path], *, documents: bool = True) -> tuple[list[ArticleSource | JsonlRange], int]:
    """Text files as articles and JSONL files as line ranges, in the local run's order, and how many articles
    that makes. Only offsets are kept, so a JSONL file of any size costs the driver one pass and no memory.
    Formatted documents (.html, .srt, .docx) are translated by the local run only: with `documents` (a run that
    writes translations) one is refused, as the local run would translate it; without, skipped, as it skips them."""
    items: list[ArticleSource | JsonlRange] = []
    total = 0
    for file, stem in input_files(paths, documents=documents):
        suffix = file.suffix.lower()
        if suffix in DOCUMENT_SUFFIXES and (documents or file in paths):
            raise InvalidInput(f"--cluster ray translates text and JSONL articles only; translate the document "
                               f"{file} without --cluster")
        if not is_jsonl(file):
            # A Markdown article also gets NAME.en.md (its translation as text), as in the local run.
            document = f"{stem}.{TARGET_LANGUAGE}{suffix}" if suffix != ".txt" else None
            items.append(ArticleSource(stem, file, f"{stem}{TRANSLATION_SUFFIX}", document_name=document))
            total += 1
            continue
        with file.open("rb") as fh:
            start = offset = 0
            first = count = 0
            for number, line in enumerate(fh, start=1):
                if count == 0:
                    start, first = offset, number
                offset += len(line)
                if line.strip():
                    count += 1
                    total += 1
                if count == JSONL_LINES_PER_RANGE:
                    items.append(JsonlRange(file, stem, start, offset, first))
                    count = 0
            if count:
                items.append(JsonlRange(file, stem, start, offset, first))
    return items, total


def _expand(row: dict[str, Any]) -> list[dict[str, Any]]:
    """flat_map: one row per article of an input item (a JSONL range is read here, on the worker)."""
    item: ArticleSource | JsonlRange = pickle.loads(row["item"])
    if isinstance(item, ArticleSource):
        return [_row(_Article(item, ArticleResult(id=item.id)))]
    rows = []
    with item.path.open("rb") as fh:
        fh.seek(item.start)
        data = fh.read(item.end - item.start)
    for number, raw in enumerate(data.split(b"\n"), start=item.first_line):
        if not raw.strip():
            continue
        try:
            src = jsonl_article(item.path, item.stem, number, raw.decode("utf-8"))
            rows.append(_row(_Article(src, ArticleResult(id=src.id))))
        except (InvalidInput, UnicodeDecodeError) as exc:
            error = exc if isinstance(exc, InvalidInput) else InvalidInput(f"{item.path}:{number}: not UTF-8: {exc}")
            name = f"{item.stem}/{number}"
            src = ArticleSource(name, item.path, f"{name}{TRANSLATION_SUFFIX}", "", number)
            rows.append(_row(_Article(src, ArticleResult(id=name, error=error), readable=False)))
    return rows


# -- stages ----------------------------------------------------------------------------------------------------
def _row(article: _Article) -> dict[str, Any]:
    return {_COLUMN: pickle.dumps(article, protocol=pickle.HIGHEST_PROTOCOL)}


def _load(batch: pa.Table) -> list[_Article]:
    return [pickle.loads(blob) for blob in batch.column(_COLUMN).to_pylist()]


def _dump(articles: list[_Article], loads: int = 0) -> pa.Table:
    blobs = [pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL) for a in articles]
    counts = [loads] + [0] * (len(blobs) - 1) if blobs else []  # the batch's model loads, on its first row
    return pa.table({_COLUMN: pa.array(blobs, pa.binary()), _LOADS: pa.array(counts, pa.int64())})


def _node() -> str:
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


def _naming_node(error: NewsMTError) -> NewsMTError:
    """A model error with the node it happened on: each node loads from its own NEWSMT_MODELS_DIR, so "not
    installed" must say where."""
    if not isinstance(error, ModelNotInstalled | ModelLoadError):
        return error
    named = copy.copy(error)
    named.args = (f"on node {_node()}: {error}",)
    return named


def _new_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings, ModelManager(settings), SegmentCache.from_settings(settings))


_worker: list[tuple[_Job, Pipeline]] = []


def _worker_pipeline(job: _Job) -> Pipeline:
    """One pipeline per worker process and run (Ray reuses task processes): models resolved, and a local model's
    files fingerprinted, once; no engine is ever loaded here."""
    if not _worker or _worker[0][0] != job:
        _worker[:] = [(job, _new_pipeline(job.settings))]
    return _worker[0][1]


def _prepare(batch: pa.Table, job: _Job) -> pa.Table:
    """CPU task: read, article-cache lookup, clean + detect + segment, one segment-cache lookup for the batch."""
    started = time.perf_counter()
    pipeline = _worker_pipeline(job)
    articles = _load(batch)
    todo = [a for a in articles if a.readable]
    texts, unreadable = read_sources([a.src for a in todo])
    pending = pipeline.lookup(texts, job.source, ids=[a.src.id for a in todo], beam_size=job.beam_size)
    left = {id(w) for w in pipeline.prepare(pending)}
    works = [w for w in pending.works if id(w) in left]
    found = pipeline.lookup_segments(works).found
    for i, (article, work) in enumerate(zip(todo, pending.works, strict=True)):
        article.readable = i not in unreadable
        article.result = unreadable.get(i, work.result)
        if article.result.error is not None:
            article.result.error = _naming_node(article.result.error)
        if id(work) in left:
            article.work = work
            article.found = {s.key: found[s.key] for s in work.segments if s.key in found}
    elapsed = time.perf_counter() - started
    for article in articles:
        article.seconds += elapsed
    return _dump(articles)


class _Translator:
    """The actor: one pipeline whose model manager loads each task's engine on the first miss (then keeps it)."""

    def __init__(self, job: _Job):
        self.job = job
        self.pipeline = _new_pipeline(job.settings)
        self.summarizer = Summarizer(self.pipeline) if job.summary is not None else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        articles = _load(batch)
        manager = self.pipeline.manager
        loads = manager.load_count
        works = [a.work for a in articles if a.work is not None]
        # The misses looked up again, at the last moment: another batch may have translated them since.
        lookup = self.pipeline.lookup_segments(works, known={k: v for a in articles for k, v in a.found.items()})
        gen = self.pipeline.generation_settings(self.job.beam_size)
        failed = {task: _naming_node(error) for task, error in self.pipeline.translate_misses(lookup, gen).items()}
        self.pipeline.assemble(works, lookup, failed)
        elapsed = time.perf_counter() - started
        for article in articles:
            article.work, article.found = None, {}
            article.seconds += elapsed
            article.result.elapsed_ms = round(article.seconds * 1000, 1)
        if self.summarizer is not None:
            readable = [a for a in articles if a.readable]
            done = self.summarizer.summarize_translations([a.result for a in readable], self.job.summary)
            for article, summarized in zip(readable, done, strict=True):
                article.summary = summarized
        return _dump(articles, manager.load_count - loads)


# -- driver ----------------------------------------------------------------------------------------------------
def absolute_paths(settings: Settings) -> Settings:
    """Workers do not share the driver's working directory: every path setting, and a model given as a local
    folder, made absolute (each node then reads the same path on its own disk, or a shared filesystem)."""
    update: dict[str, Any] = {"models_dir": settings.models_dir.resolve(), "cache_dir": settings.cache_dir.resolve()}
    for task in TASKS:
        source = Path(settings.model_source(task))
        if source.exists():
            update[TASKS[task].model_setting] = str(source.resolve())
    return settings.model_copy(update=update)


def refuse_unshared_cache(cache: SegmentCache, nodes: Sequence[dict[str, Any]]) -> None:
    """The embedded disk cache is SQLite in a local folder: workers on other machines would each write their own
    copy, and a rerun would translate again. One node is fine; more need a shared cache tier."""
    alive = [n for n in nodes if n.get("Alive")]
    if len(alive) > 1 and not cache.shared:
        raise InvalidInput(
            f"this Ray cluster has {len(alive)} nodes, and the embedded disk cache ({cache.backend.location}) "
            "cannot be shared safely across machines: set NEWSMT_CACHE_URL to a shared cache, or run on one node")


def connect(address: str | None) -> None:
    """The cluster at `address` (default: RAY_ADDRESS, else one already running on this machine); with none, or
    with Ray's `local`, a new local one for this run alone."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address == "local":
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        return
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise InvalidInput(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
        return
    try:
        ray.init(address="auto", logging_level=logging.WARNING)
    except ConnectionError:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)


def translate_on_ray(settings: Settings, paths: Sequence[Path], out: Path, *, address: str | None, pool: ActorPool,
                     source_lang: str = "auto", beam_size: int | None = None, progress: bool | None = None,
                     summary_options: SummaryOptions | None = None, write_translations: bool = True,
                     report: Path | None = None) -> tuple[BulkSummary, int]:
    """The bulk run on Ray: the same outputs as `translate_tree`, in input order. Returns the run's statistics and
    how many models the actors loaded. Raises InvalidInput before any work for bad usage."""
    check_summary_options(summary_options is not None, summary_options, write_translations)
    if summary_options is not None and summary_options.strategy == SUMMARIZE_THEN_TRANSLATE:
        raise InvalidInput("--cluster ray runs translate_then_summarize only; run summarize_then_translate locally")
    items, total = plan_inputs(paths, documents=write_translations)
    if not items:
        raise InvalidInput(no_articles_message(paths, documents=write_translations))
    settings = absolute_paths(settings)
    job = _Job(settings, source_lang, beam_size, summary_options)
    connect(address)
    try:
        cache = SegmentCache.from_settings(settings)
        try:
            refuse_unshared_cache(cache, ray.nodes())
        finally:
            cache.close()
        return _run(job, items, total, out, pool, progress, write_translations, report)
    except ray.exceptions.RayError as exc:
        raise RuntimeError(f"the cluster run failed ({exc}); rerun it: finished work is served from the cache") \
            from exc
    finally:
        ray.shutdown()


def _run(job: _Job, items: list[ArticleSource | JsonlRange], total: int, out: Path, pool: ActorPool,
         progress: bool | None, write_translations: bool, report: Path | None) -> tuple[BulkSummary, int]:
    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # outputs and results.jsonl in input order, as locally
    context.enable_progress_bars = False  # ours counts articles and the hit rate
    chunk = job.settings.bulk_chunk_articles
    articles = (
        ray.data.from_items([{"item": pickle.dumps(item)} for item in items],
                            override_num_blocks=max(1, min(len(items), -(-total // chunk))))  # ~one batch a block
        .flat_map(_expand)
        .map_batches(functools.partial(_prepare, job=job), batch_size=chunk, batch_format="pyarrow")
    )
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for actor restarts and retries yet and warns on every remote argument.
        warnings.filterwarnings("ignore", message=r".*ray_remote_args.* is deprecated")
        dataset = articles.map_batches(
            _Translator, fn_constructor_kwargs={"job": job}, batch_size=pool.batch_size or chunk,
            batch_format="pyarrow", compute=ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size),
            num_cpus=pool.num_cpus, num_gpus=pool.num_gpus or None, max_restarts=pool.max_restarts,
            max_task_retries=pool.max_task_retries)
    loads = 0
    seen: set[str] = set()
    with RunOutputs(out, total=total, write_translations=write_translations, report=report,
                    progress=progress, low_confidence=job.settings.low_confidence) as outputs:
        batches: Iterator[pa.Table] = dataset.iter_batches(batch_size=None, batch_format="pyarrow")  # type: ignore[assignment]
        for batch in batches:
            loads += sum(batch.column(_LOADS).to_pylist())
            for article in _load(batch):
                result = article.result
                if article.src.id in seen:  # JSONL ids are only known once read; never overwrite an output
                    result = ArticleResult(id=article.src.id, error=InvalidInput(
                        f"two inputs map to the same article id '{article.src.id}'"))
                    article.summary = None
                seen.add(article.src.id)
                outputs.add(article.src, result, article.summary)
            outputs.advance(batch.num_rows)
        return outputs.finish(), loads

