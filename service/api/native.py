"""Native JSON API under /v1: translate one article or many, with cache and model metadata per article."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.deps import Admitted
from service.pipeline.translate import ArticleResult
from service.serving.state import raise_first_error

router = APIRouter(prefix="/v1", tags=["translate"])

ARABIC_EXAMPLE = ("التقى الأمين العام للأمم المتحدة اليوم بوزير الخارجية في القاهرة لبحث الأوضاع في المنطقة. "
                  "وأكد الجانبان أهمية الحوار.")
HEBREW_EXAMPLE = "ראש הממשלה נפגש היום עם שר החוץ בירושלים כדי לדון במצב באזור. שני הצדדים הדגישו את חשיבות הדיאלוג."


#: Strict: JSON types as the schema states them (no "4" or true for 4), so a request the published schema calls
#: invalid is refused with 422 rather than silently coerced.
_REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True)


class TranslateOptions(BaseModel):
    model_config = _REQUEST_CONFIG

    beam_size: int | None = Field(None, ge=1, le=16, description="Beam width; default NEWSMT_BEAM_SIZE.")
    return_segments: bool = Field(False, description="Also return each paragraph's source, translation and "
                                                     "language (`paragraphs`).")


class TranslateRequest(BaseModel):
    model_config = _REQUEST_CONFIG

    text: str | None = Field(None, description="One article. Give `text` or `texts`, not both.")
    texts: list[str] | None = Field(None, description="Several articles, translated together (shared batches).")
    source: Literal["auto", "ar", "he", "en"] = Field(
        "auto", description="Source language; auto detects it per article (and per paragraph in mixed articles)."
    )
    options: TranslateOptions = Field(default_factory=TranslateOptions)

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> TranslateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` (one article) or `texts` (a list of articles)")
        if self.texts is not None and not self.texts:
            raise ValueError("`texts` is empty")
        return self

    def articles(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class ModelRef(BaseModel):
    task: str
    model_id: str
    revision: str


class Paragraph(BaseModel):
    source: str
    translation: str
    language: str


class Translation(BaseModel):
    translation: str
    detected_language: str | None = Field(description="`ar`, `he` or `en`; the explicit source when one was given.")
    language_confidence: float | None
    source_url: str | None = Field(description="The article's `Source:` URL, kept as metadata, not translated.")
    segments: int = Field(description="Sentences in the article.")
    cached_segments: int = Field(description="Sentences served from the cache (no model work).")
    models: list[ModelRef]
    paragraphs: list[Paragraph] | None = None


class Usage(BaseModel):
    segments: int
    cache_hits: int
    cache_misses: int
    elapsed_ms: float


class TranslateResponse(BaseModel):
    results: list[Translation]
    usage: Usage


def translation_body(result: ArticleResult, with_paragraphs: bool) -> Translation:
    item = Translation(
        translation=result.translation or "",
        detected_language=result.detected_language,
        language_confidence=result.language_confidence,
        source_url=result.source_url,
        segments=result.segments,
        cached_segments=result.cache_hits,
        models=[ModelRef(**m) for m in result.models],
    )
    if with_paragraphs:
        item.paragraphs = [Paragraph(source=p.source, translation=p.translation, language=p.language)
                           for p in result.paragraphs]
    return item


@router.post("/translate")
async def translate(
    state: Admitted,
    request: Annotated[TranslateRequest, Body(openapi_examples={
        "arabic": {"summary": "One Arabic article", "value": {"text": ARABIC_EXAMPLE, "source": "auto"}},
        "hebrew": {"summary": "Hebrew, with paragraphs returned", "value": {
            "text": HEBREW_EXAMPLE, "source": "he", "options": {"return_segments": True}}},
        "many": {"summary": "Several articles at once", "value": {"texts": [ARABIC_EXAMPLE, HEBREW_EXAMPLE]}},
    })],
) -> TranslateResponse:
    """Translate Arabic or Hebrew news into English. Repeated sentences come from the cache; identical concurrent
    requests share one inference. A request with any failing text fails as a whole, naming the text."""
    started = time.perf_counter()
    texts = request.articles()
    field_name = "texts" if request.texts is not None else None
    state.check_request_size(texts, field_name)
    results = await state.translate(texts, request.source, request.options.beam_size)
    raise_first_error(results, field_name)
    return TranslateResponse(
        results=[translation_body(r, request.options.return_segments) for r in results],
        usage=Usage(
            segments=sum(r.segments for r in results),
            cache_hits=sum(r.cache_hits for r in results),
            cache_misses=sum(r.cache_misses for r in results),
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        ),
    )
