"""Summaries over HTTP: `POST /v1/summarize` (a summary of each article) and `POST /v1/articles` (detect, translate
and summarize in one call, returning both).

Both go through `ServiceState.summarize`, so a summary, the translation it needs included, gets what every
translation gets: coalescing, the in-flight bound (429), the time limit (504), a worker thread off the event loop,
and the model manager's shared batcher for the summary model.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body

from service.api.deps import Admitted
from service.api.native import translation_body, usage
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
)
from service.pipeline.summarize import (
    TRANSLATE_THEN_SUMMARIZE,
    SummaryOptions,
    SummaryResult,
)
from service.serving.state import ServiceState, raise_first_error

router = APIRouter(prefix="/v1", tags=["summarize"])


async def _summarize(state: ServiceState, request: ArticlesRequest, options: SummaryOptions) -> list[SummaryResult]:
    """Either strategy through the serving layer. Fails as a whole with the first failed article's error, naming it
    in multi-text requests."""
    texts, field_name = request.articles(), request.field_name()
    state.check_request_size(texts, field_name)
    summaries = await state.summarize(texts, request.source, options, request.options.beam_size)
    raise_first_error(summaries, field_name)
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
    summaries = await _summarize(state, request, options)
    return SummarizeResponse(
        results=[SummaryItem(summary=s.summary or "", summarizer=SummaryInfo.model_validate(s.describe()),
                             detected_language=s.article.detected_language,
                             language_confidence=s.article.language_confidence, source_url=s.article.source_url,
                             models=[ModelRef.model_validate(m) for m in s.article.models]) for s in summaries],
        usage=usage([s.article for s in summaries], started),
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
    summaries = await _summarize(state, request, options)
    return ArticlesResponse(
        results=[ArticleItem(**dict(translation_body(s.article, request.options.return_segments,
                                                               state.settings.low_confidence)),
                             summary=s.summary or "", summarizer=SummaryInfo.model_validate(s.describe()))
                 for s in summaries],
        usage=usage([s.article for s in summaries], started),
    )
