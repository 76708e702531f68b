"""Native JSON API under /v1: translate one article or many, with cache and model metadata per article."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import Response

from service.api.deps import Admitted
from service.api.encoding import json_response
from service.api.schemas import (
    ARABIC_EXAMPLE,
    HEBREW_EXAMPLE,
    AlternativeOut,
    GlossaryTermUse,
    LowConfidenceOut,
    ModelRef,
    Paragraph,
    Sentence,
    TermOut,
    TranslateRequest,
    TranslateResponse,
    Translation,
    Usage,
)
from service.pipeline.translate import ArticleResult
from service.serving.state import raise_first_error

router = APIRouter(prefix="/v1", tags=["translate"])


def usage(articles: Sequence[ArticleResult], started: float) -> Usage:
    """The `usage` block of every translating route: the articles' translation work and the request's time."""
    return Usage(segments=sum(a.segments for a in articles), cache_hits=sum(a.cache_hits for a in articles),
                 cache_misses=sum(a.cache_misses for a in articles),
                 elapsed_ms=round((time.perf_counter() - started) * 1000, 1))


def translation_body(result: ArticleResult, with_paragraphs: bool, threshold: float, alternatives: int = 0,
                     glossary: bool = False) -> Translation:
    item = Translation(
        translation=result.translation or "",
        detected_language=result.detected_language,
        language_confidence=result.language_confidence,
        source_url=result.source_url,
        segments=result.segments,
        cached_segments=result.cache_hits,
        models=[ModelRef.model_validate(m) for m in result.models],
        low_confidence=[LowConfidenceOut(**asdict(low)) for low in result.low_confidence(threshold)],
    )
    if with_paragraphs:
        item.paragraphs = [Paragraph(source=p.source, translation=p.translation, language=p.language, sentences=[
            Sentence(source=s.source, translation=s.translation, score=s.score,
                     low_confidence=s.score is not None and s.score < threshold,
                     alternatives=[AlternativeOut(translation=h.text, score=h.score) for h in s.alternatives],
                     terms=[TermOut(**asdict(t)) for t in s.terms]) for s in p.sentences])
            for p in result.paragraphs]
    if alternatives:
        item.alternatives = result.alternatives(alternatives)
    if glossary:
        item.glossary_terms = [GlossaryTermUse(**term) for term in result.terms()]
    return item


@router.post("/translate", response_model=TranslateResponse)
async def translate(
    state: Admitted,
    request: Annotated[TranslateRequest, Body(openapi_examples={
        "arabic": {"summary": "One Arabic article", "value": {"text": ARABIC_EXAMPLE, "source": "auto"}},
        "hebrew": {"summary": "Hebrew, with paragraphs returned", "value": {
            "text": HEBREW_EXAMPLE, "source": "he", "options": {"return_segments": True}}},
        "many": {"summary": "Several articles at once", "value": {"texts": [ARABIC_EXAMPLE, HEBREW_EXAMPLE]}},
        "glossary": {"summary": "Pinned names and two alternatives", "value": {
            "text": ARABIC_EXAMPLE, "glossary": {"الأمين العام للأمم المتحدة": "UN Secretary-General"},
            "options": {"alternatives": 2, "return_segments": True}}},
    })],
) -> Response:
    """Translate Arabic or Hebrew news into English. Repeated sentences come from the cache; identical concurrent
    requests share one inference. A request with any failing text fails as a whole, naming the text."""
    started = time.perf_counter()
    texts = request.articles()
    field_name = "texts" if request.texts is not None else None
    state.check_request_size(texts, field_name)
    glossary = state.glossary(request.glossary)
    options = request.options
    results = await state.translate(texts, request.source, options.beam_size, alternatives=options.alternatives,
                                    glossary=glossary)
    raise_first_error(results, field_name)
    threshold = state.settings.low_confidence
    return json_response(TranslateResponse(
        results=[translation_body(r, options.return_segments, threshold, options.alternatives, glossary is not None)
                 for r in results],
        usage=usage(results, started)))
