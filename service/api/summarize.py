"""Summaries over HTTP: `POST /v1/summarize` (a summary of each article) and `POST /v1/articles` (detect, translate
and summarize in one call, returning both).

Translation goes through `ServiceState.translate` like every other route (coalescing, in-flight bound, time limit);
the summarizing itself (LexRank, or the summary model behind the same manager and cache) runs in a worker thread so
it never blocks the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Body

from service.api.deps import Admitted
from service.api.native import translation_body
from service.api.schemas import (
    ARABIC_EXAMPLE,
    HEBREW_EXAMPLE,
    ArticleItem,
    ArticlesRequest,
    ArticlesResponse,
    ModelRef,
    SummarizeRequest,
    SummarizeResponse,
    SummaryInfo,
    SummaryItem,
    Usage,
)
from service.errors import ItemFailed
from service.pipeline.summarize import (
    SUMMARIZE_THEN_TRANSLATE,
    TRANSLATE_THEN_SUMMARIZE,
    Summarizer,
    SummaryOptions,
    SummaryResult,
)
from service.pipeline.translate import ArticleResult
from service.serving.state import ServiceState, raise_first_error

router = APIRouter(prefix="/v1", tags=["summarize"])


def _usage(articles: Sequence[ArticleResult], started: float) -> Usage:
    return Usage(segments=sum(a.segments for a in articles), cache_hits=sum(a.cache_hits for a in articles),
                 cache_misses=sum(a.cache_misses for a in articles),
                 elapsed_ms=round((time.perf_counter() - started) * 1000, 1))


async def _summarize(state: ServiceState, texts: list[str], source: str, field_name: str | None,
                     options: SummaryOptions, beam_size: int | None) -> list[SummaryResult]:
    """Either strategy, with translation through the server's own translate. Fails as a whole with the first
    failed article's error, naming it in multi-text requests."""
    state.check_request_size(texts, field_name)
    summarizer = Summarizer(state.pipeline, on_batch=state.metrics.on_batch)
    if options.strategy == SUMMARIZE_THEN_TRANSLATE:
        picks = await anyio.to_thread.run_sync(partial(summarizer.pick_sentences, texts, source, options=options))
        translated = await state.translate(picks.texts, source, beam_size) if picks.texts else []
        summaries = summarizer.finish_picks(picks, translated)
    else:
        translations = await state.translate(texts, source, beam_size)
        raise_first_error(translations, field_name)
        summaries = await anyio.to_thread.run_sync(partial(summarizer.summarize_translations, translations, options))
    for index, result in enumerate(summaries):
        if result.error is not None:
            raise result.error if field_name is None else ItemFailed(field_name, index, result.error)
    return summaries


@router.post("/summarize")
async def summarize(
    state: Admitted,
    request: Annotated[SummarizeRequest, Body(openapi_examples={
        "arabic": {"summary": "An Arabic article, summarized in English", "value": {"text": ARABIC_EXAMPLE}},
        "picked": {"summary": "Translate only the key Hebrew sentences", "value": {
            "text": HEBREW_EXAMPLE, "strategy": "summarize_then_translate", "max_words": 40}},
        "english": {"summary": "English text, extractive", "value": {
            "text": "The minister met his counterpart on Monday. They discussed trade.", "source": "en",
            "method": "extractive"}},
    })],
) -> SummarizeResponse:
    """An English summary of each article (Arabic, Hebrew or English in). `summarizer` says which engine ran,
    whether the input was chunked, and whether the summary came from the cache."""
    started = time.perf_counter()
    options = request.summary_options(state, request.strategy)
    summaries = await _summarize(state, request.articles(), request.source, request.field_name(), options,
                                 request.options.beam_size)
    return SummarizeResponse(
        results=[SummaryItem(summary=s.summary or "", summarizer=SummaryInfo.model_validate(s.describe()),
                             detected_language=s.article.detected_language,
                             language_confidence=s.article.language_confidence, source_url=s.article.source_url,
                             models=[ModelRef.model_validate(m) for m in s.article.models]) for s in summaries],
        usage=_usage([s.article for s in summaries], started),
    )


@router.post("/articles")
async def articles(
    state: Admitted,
    request: Annotated[ArticlesRequest, Body(openapi_examples={
        "arabic": {"summary": "Translate and summarize an Arabic article", "value": {"text": ARABIC_EXAMPLE}},
        "many": {"summary": "Several articles, paragraphs returned", "value": {
            "texts": [ARABIC_EXAMPLE, HEBREW_EXAMPLE], "max_words": 30, "options": {"return_segments": True}}},
    })],
) -> ArticlesResponse:
    """Detect, translate and summarize in one call: each article's /v1/translate result (cache metadata
    included) with a summary of its translation."""
    started = time.perf_counter()
    options = request.summary_options(state, TRANSLATE_THEN_SUMMARIZE)
    summaries = await _summarize(state, request.articles(), request.source, request.field_name(), options,
                                 request.options.beam_size)
    return ArticlesResponse(
        results=[ArticleItem(**dict(translation_body(s.article, request.options.return_segments,
                                                               state.settings.low_confidence)),
                             summary=s.summary or "", summarizer=SummaryInfo.model_validate(s.describe()))
                 for s in summaries],
        usage=_usage([s.article for s in summaries], started),
    )
