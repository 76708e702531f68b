"""What the app's lifespan builds and every route uses: the pipeline, the summarizer and their parts, plus the rules
for running them.

`ServiceState.translate` and `ServiceState.summarize` are the only ways a route reaches a model, so every
translation (native or LibreTranslate-compatible) and every summary gets the same treatment: identical concurrent
work coalesced (translations across replicas too, with the shared Redis tier: see claims.py), a bounded number of
requests in flight (429 beyond it), a per-request time limit (504), and the work run in a worker thread so inference
never blocks the loop. Repeated articles are answered from the article cache on the event loop before any of that.

Why the cache hit is answered on the loop: it costs one hash per article and one SQLite read or Redis MGET for all
of them (tens of microseconds), less than handing work to a thread and back, and under many concurrent clients
those hand-offs (and the threads' fight for the GIL with the loop) made up most of a cached request's latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import anyio

from service.cache.segment_cache import SegmentCache, digest
from service.config import Settings
from service.engines.batcher import background_priority
from service.engines.manager import ModelManager
from service.errors import InputTooLarge, ItemFailed, NewsMTError, Overloaded, RequestTimedOut
from service.pipeline.documents import TranslatedDocument, assemble, document_language
from service.pipeline.summarize import Summarizer, SummaryOptions, SummaryResult
from service.pipeline.translate import ArticleResult, PendingArticles, Pipeline
from service.serving.claims import ClaimBoard
from service.serving.coalesce import Coalescer
from service.serving.documents import DocumentStore
from service.serving.metrics import Metrics
from service.serving.ratelimit import RateLimiter
from service.store.glossaries import GlossaryStore
from service.text.documents import Document
from service.text.glossary import Glossary, parse_terms

R = TypeVar("R")


class Outcome(Protocol):
    """A per-text result that may carry its error (ArticleResult, SummaryResult)."""

    error: NewsMTError | None


@dataclass
class ServiceState:
    settings: Settings
    manager: ModelManager
    cache: SegmentCache
    pipeline: Pipeline
    metrics: Metrics
    summarizer: Summarizer = field(init=False)
    #: One in-flight map for all work; keys start with the kind of work, so results of different kinds never mix.
    coalescer: Coalescer[Any] = field(init=False)
    claims: ClaimBoard | None = field(init=False)  # with the shared Redis tier: coalescing across replicas
    rate_limiter: RateLimiter = field(init=False)
    glossaries: GlossaryStore = field(init=False)
    documents: DocumentStore = field(init=False)
    _inflight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.summarizer = Summarizer(self.pipeline)
        self.glossaries = GlossaryStore(self.settings.glossaries_dir)
        self.coalescer = Coalescer(on_join=self.metrics.coalesced.inc)
        link = self.cache.link
        self.claims = None if link is None else ClaimBoard(
            link, self.settings.coalesce_claim_seconds, self.settings.coalesce_wait_seconds,
            on_wait=self.metrics.count_replica_wait)
        self.rate_limiter = RateLimiter(self.settings.rate_limit_per_minute, shared=link)
        self.documents = DocumentStore(self.settings.documents_dir, self.settings.document_ttl_seconds)

    def glossary(self, given: str | dict[str, str] | None) -> Glossary | None:
        """A request's `glossary`: a stored glossary's name, or terms sent inline."""
        if given is None:
            return None
        if isinstance(given, str):
            return self.glossaries.get(given)
        return Glossary(parse_terms(given.items()))

    def check_request_size(self, texts: list[str], field_name: str | None) -> None:
        """Refuse an oversized request before any work, stating the limit it broke. `field_name` names the list
        field of a multi-text request (None for a single text), as in `raise_first_error`."""
        max_texts, max_chars = self.settings.max_texts_per_request, self.settings.max_input_chars
        if len(texts) > max_texts:
            raise InputTooLarge(f"{len(texts)} texts in one request; the limit is {max_texts} "
                                "(NEWSMT_MAX_TEXTS_PER_REQUEST)")
        for index, text in enumerate(texts):
            if len(text) > max_chars:
                label = f"{field_name}[{index}]" if field_name else "text"
                raise InputTooLarge(f"{label} has {len(text)} characters; the limit is {max_chars} per text "
                                    "(NEWSMT_MAX_INPUT_CHARS)")

    async def translate(self, texts: list[str], source: str, beam_size: int | None = None, *, alternatives: int = 0,
                        glossary: Glossary | None = None) -> list[ArticleResult]:
        """Pipeline results for `texts`, shared with any identical request already in flight. Per-text errors are
        left in the results for the caller to report in its own shape."""
        pending = self.pipeline.lookup(texts, source, beam_size=beam_size or self.settings.beam_size,
                                       alternatives=alternatives, glossary=glossary, may_block=False)
        if pending.complete:
            self.metrics.count_cache(pending.results)
            return pending.results
        # The article keys already digest texts, source, settings and models: identical work, identical keys.
        return await self._serve("translation", digest(["translate", pending.keys]),
                                 partial(self._finish_translation, pending), settled=partial(self._settled, pending))

    async def summarize(self, texts: list[str], source: str, options: SummaryOptions,
                        beam_size: int | None = None) -> list[SummaryResult]:
        """Summaries of `texts` (and the translations they need), shared with any identical request in flight and
        bounded and timed exactly as translations are. Per-text errors are left in the results."""
        beam = beam_size or self.settings.beam_size
        key = digest(["summarize", self.pipeline.models_signature(), source, beam, asdict(options), texts])
        return await self._serve("summary", key, partial(self._summarize_now, texts, source, options, beam))

    def _finish_translation(self, pending: PendingArticles) -> list[ArticleResult]:
        results = self.pipeline.finish(pending)
        self.metrics.count_cache(results)
        return results

    def _summarize_now(self, texts: list[str], source: str, options: SummaryOptions,
                       beam_size: int) -> list[SummaryResult]:
        results = self.summarizer.summarize(texts, source, beam_size=beam_size, options=options)
        self.metrics.count_cache(r.article for r in results)
        return results

    async def _serve(self, what: str, key: str, work: Callable[[], R],
                     settled: Callable[[], R | None] | None = None) -> R:
        """`work()` in a worker thread, or the future of identical work already in flight, within the time limit.
        `settled` (a cache lookup, None while incomplete) lets a replica sharing the Redis tier wait for another one
        that claimed the same work instead of repeating it."""
        start = partial(self._run_bounded, work)
        if self.claims is not None and settled is not None:
            start = partial(self.claims.run, key, start, settled)
        future = self.coalescer.run(key, start)
        limit = self.settings.request_timeout_seconds
        try:
            return cast(R, await asyncio.wait_for(asyncio.shield(future), limit))
        except TimeoutError:
            raise RequestTimedOut(
                f"{what} did not finish within {limit:g} s (NEWSMT_REQUEST_TIMEOUT_SECONDS); it goes on in the "
                "background, so a retry is served from the cache once it is done"
            ) from None

    def _settled(self, pending: PendingArticles) -> list[ArticleResult] | None:
        """The results once the cache holds them all (another replica translated them), else None."""
        again = self.pipeline.lookup(pending.texts, pending.source, ids=[w.result.id for w in pending.works],
                                     beam_size=pending.gen.beam_size, may_block=False)
        if not again.complete:
            return None
        self.metrics.count_cache(again.results)
        return again.results

    async def _run_bounded(self, work: Callable[[], R]) -> R:
        """Run `work` in a worker thread, holding one in-flight slot until the thread is done, even when every
        waiter has already timed out: the slot bounds work, not waiting."""
        limit = self.settings.max_inflight_requests
        if self._inflight >= limit:  # check and increment run on the event loop with no await between: no race
            retry = self.settings.overload_retry_after_seconds
            raise Overloaded(f"server busy: {self._inflight} translations or summaries in flight, the limit is "
                             f"{limit} (NEWSMT_MAX_INFLIGHT_REQUESTS); retry after {retry} s", retry)
        self._inflight += 1
        self.metrics.inflight.inc()
        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            self._inflight -= 1
            self.metrics.inflight.dec()

    async def unload_idle_models(self) -> None:
        """For the server's life, with NEWSMT_MODEL_IDLE_UNLOAD_SECONDS set: unload the models no batch has used
        for that long, checking twice per period so none stays loaded much past it."""
        idle = self.settings.model_idle_unload_seconds
        if idle is None:
            return
        while True:
            await asyncio.sleep(idle / 2)
            await anyio.to_thread.run_sync(self.manager.unload_idle)

    async def translate_document(self, doc: Document, source: str) -> TranslatedDocument:
        """Translate a parsed file through `translate`, so a document gets the same cache, coalescing, in-flight
        limit and time-out as the texts it is made of."""
        lang, detection = await anyio.to_thread.run_sync(document_language, doc, source)
        return assemble(doc, await self.translate(doc.texts, lang), detection)

    async def translate_background(self, texts: list[str], source: str, ids: list[str]) -> list[ArticleResult]:
        """For jobs: the same lookup and pipeline as `translate`, with the misses queued behind every interactive
        request's (see the batcher). No in-flight slot and no time-out: a job never makes an interactive request
        see 429, and it waits for its turn instead of failing."""
        pending = self.pipeline.lookup(texts, source, ids=ids, may_block=False)
        if not pending.complete:
            await anyio.to_thread.run_sync(self._finish_in_background, pending)
        self.metrics.count_cache(pending.results)
        return pending.results

    def _finish_in_background(self, pending: PendingArticles) -> list[ArticleResult]:
        with background_priority():
            return self.pipeline.finish(pending)

    def close(self) -> None:
        self.manager.close()
        self.cache.close()


def raise_first_error(results: Sequence[Outcome], field_name: str | None) -> None:
    """A request fails as a whole with its first failed text's error; `field_name` (for multi-text requests) makes
    the message say which item it was, e.g. `texts[2]: unsupported language ...`."""
    for index, result in enumerate(results):
        if result.error is not None:
            raise result.error if field_name is None else ItemFailed(field_name, index, result.error)
