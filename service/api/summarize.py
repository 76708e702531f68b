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
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from service.api.deps import Admitted
from service.api.native import (
    ARABIC_EXAMPLE,
    HEBREW_EXAMPLE,
    ModelRef,
    TranslateRequest,
    Translation,
    Usage,
    translation_body,
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


class ArticlesRequest(TranslateRequest):
    """/v1/translate's request (text or texts, source, options) plus the summary's choices."""

    method: Literal["auto", "abstractive", "extractive"] | None = Field(
        None, description="auto: the summary model when installed, else LexRank. Default NEWSMT_SUMMARY_METHOD.")
    max_words: int | None = Field(None, ge=1, description="Longest summary in words; default "
                                                          "NEWSMT_SUMMARY_MAX_WORDS. It ends on a whole sentence.")
    ratio: float | None = Field(None, gt=0, le=1, description="Also cap at this fraction of the article's words.")
    max_sentences: int | None = Field(None, ge=1, description="Most sentences LexRank picks.")

    def field_name(self) -> str | None:
        return "texts" if self.texts is not None else None

    def summary_options(self, state: ServiceState, strategy: str | None) -> SummaryOptions:
        return SummaryOptions.from_settings(state.settings, method=self.method, strategy=strategy,
                                            max_words=self.max_words, ratio=self.ratio,
                                            max_sentences=self.max_sentences)


class SummarizeRequest(ArticlesRequest):
    strategy: Literal["translate_then_summarize", "summarize_then_translate"] | None = Field(
        None, description="translate_then_summarize summarizes the whole translation; summarize_then_translate "
                          "translates only the key source sentences. Default NEWSMT_SUMMARY_STRATEGY.")


class SummaryInfo(BaseModel):
    """How a summary was made (the same fields as `summarizer` in results.jsonl)."""

    method: str = Field(description="`abstractive` or `extractive`: the engine that ran.")
    engine: str = Field(description="The summary model id, or `lexrank`.")
    revision: str | None
    strategy: str
    fallback: str | None = Field(description="Why method=auto did not use the summary model (not installed: the "
                                             "message names the install command).")
    chunked: bool = Field(description="The input exceeded the model window and was summarized map-reduce.")
    chunks: int
    cached: bool = Field(description="Served from the cache: no model ran for this summary.")
    words: int
    elapsed_ms: float


class SummaryItem(BaseModel):
    summary: str
    summarizer: SummaryInfo
    detected_language: str | None
    language_confidence: float | None
    source_url: str | None
    models: list[ModelRef] = Field(description="The translation models used (none for English).")


class SummarizeResponse(BaseModel):
    results: list[SummaryItem]
    usage: Usage = Field(description="Translation work (sentences, cache) and the whole request's time.")


class ArticleItem(Translation):
    """/v1/translate's result for the article, plus its summary."""

    summary: str
    summarizer: SummaryInfo


class ArticlesResponse(BaseModel):
    results: list[ArticleItem]
    usage: Usage


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
        results=[ArticleItem(**dict(translation_body(s.article, request.options.return_segments)),
                             summary=s.summary or "", summarizer=SummaryInfo.model_validate(s.describe()))
                 for s in summaries],
        usage=_usage([s.article for s in summaries], started),
    )
