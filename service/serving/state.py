"""What the app's lifespan builds and every route uses: the pipeline and its parts, plus the rules for running it.

`ServiceState.translate` is the only way a route reaches the pipeline, so every translation, native or
LibreTranslate-compatible, gets the same treatment: repeated articles answered from the article cache on the event
loop, and for the rest identical concurrent work coalesced, a bounded number of translations in flight (429 beyond
it), a per-request time limit (504), and the pipeline run in a worker thread so inference never blocks the loop.

Why the cache hit is answered on the loop: it costs one hash and one SQLite read per article (tens of
microseconds), less than handing work to a thread and back, and under many concurrent clients those hand-offs
(and the threads' fight for the GIL with the loop) made up most of a cached request's latency.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial

import anyio

from service.cache.segment_cache import SegmentCache
from service.config import Settings
from service.engines.batcher import background_priority
from service.engines.manager import ModelManager
from service.errors import InputTooLarge, ItemFailed, Overloaded, RequestTimedOut
from service.pipeline.documents import TranslatedDocument, assemble, document_language
from service.pipeline.translate import ArticleResult, PendingArticles, Pipeline
from service.serving.coalesce import Coalescer, work_key
from service.serving.documents import DocumentStore
from service.serving.metrics import Metrics
from service.serving.ratelimit import RateLimiter
from service.text.documents import Document


@dataclass
class ServiceState:
    settings: Settings
    manager: ModelManager
    cache: SegmentCache
    pipeline: Pipeline
    metrics: Metrics
    coalescer: Coalescer[list[ArticleResult]] = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    documents: DocumentStore = field(init=False)
    _inflight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.coalescer = Coalescer(on_join=self.metrics.coalesced.inc)
        self.rate_limiter = RateLimiter(self.settings.rate_limit_per_minute)
        self.documents = DocumentStore(self.settings.documents_dir, self.settings.document_ttl_seconds)

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

    async def translate(self, texts: list[str], source: str, beam_size: int | None = None) -> list[ArticleResult]:
        """Pipeline results for `texts`, shared with any identical request already in flight. Per-text errors are
        left in the results for the caller to report in its own shape."""
        pending = self.pipeline.lookup(texts, source, beam_size=beam_size or self.settings.beam_size,
                                       may_block=False)
        if pending.complete:
            self.metrics.count_cache(pending.results)
            return pending.results
        # The article keys already digest texts, source, settings and models: identical work, identical keys.
        future = self.coalescer.run(work_key("translate", pending.keys), partial(self._run_bounded, pending))
        limit = self.settings.request_timeout_seconds
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            raise RequestTimedOut(
                f"translation did not finish within {limit:g} s (NEWSMT_REQUEST_TIMEOUT_SECONDS); it goes on in the "
                "background, so a retry is served from the cache once it is done"
            ) from None

    async def _run_bounded(self, pending: PendingArticles) -> list[ArticleResult]:
        """Run the pipeline in a worker thread, holding one in-flight slot until the thread is done, even when every
        waiter has already timed out: the slot bounds work, not waiting."""
        limit = self.settings.max_inflight_requests
        if self._inflight >= limit:  # check and increment run on the event loop with no await between: no race
            retry = self.settings.overload_retry_after_seconds
            raise Overloaded(f"server busy: {self._inflight} translations in flight, the limit is {limit} "
                             f"(NEWSMT_MAX_INFLIGHT_REQUESTS); retry after {retry} s", retry)
        self._inflight += 1
        self.metrics.inflight.inc()
        try:
            results = await anyio.to_thread.run_sync(self.pipeline.finish, pending)
        finally:
            self._inflight -= 1
            self.metrics.inflight.dec()
        self.metrics.count_cache(results)
        return results

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


def raise_first_error(results: list[ArticleResult], field_name: str | None) -> None:
    """A request fails as a whole with its first failed text's error; `field_name` (for multi-text requests) makes
    the message say which item it was, e.g. `texts[2]: unsupported language ...`."""
    for index, result in enumerate(results):
        if result.error is not None:
            raise result.error if field_name is None else ItemFailed(field_name, index, result.error)
