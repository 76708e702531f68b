"""Every wire schema of the HTTP API in one place: request and response bodies of the native, summary,
LibreTranslate-compatible and operations routes, the error bodies, and the Arabic and Hebrew examples shown in /docs.

Kept apart from the routes so a reader (or a client generator) sees the whole contract at once, and routes stay
thin: parse a schema, call the serving layer, build a schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.pipeline.summarize import SummaryOptions
from service.serving.state import ServiceState

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
                                                     "language, and its sentences with their scores (`paragraphs`).")
    alternatives: int = Field(0, ge=0, le=15, description="Also return this many other translations of each text "
                              "(`alternatives`), from the beam's next-best hypotheses; the beam is widened to hold "
                              "them. At most NEWSMT_ALTERNATIVES_LIMIT.")


class TranslateRequest(BaseModel):
    model_config = _REQUEST_CONFIG

    text: str | None = Field(None, description="One article. Give `text` or `texts`, not both.")
    texts: list[str] | None = Field(None, description="Several articles, translated together (shared batches).")
    source: Literal["auto", "ar", "he", "en"] = Field(
        "auto", description="Source language; auto detects it per article (and per paragraph in mixed articles)."
    )
    options: TranslateOptions = Field(default_factory=TranslateOptions)
    glossary: str | dict[str, str] | None = Field(
        None, description="Terms to pin: the name of a stored glossary (GET /v1/glossaries), or the terms inline "
        "as {source term: English term}. Each result then lists the terms applied and whether each made it "
        "into the translation.")

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
    model_config = ConfigDict(from_attributes=True)  # read from the pipeline's own ModelRef

    task: str
    model_id: str
    revision: str


class AlternativeOut(BaseModel):
    translation: str
    score: float


class TermOut(BaseModel):
    matched: str = Field(description="The term as written in the source (prefixes such as ال or ב excluded).")
    source: str
    target: str
    found: bool = Field(description="Whether the English term is in the translation.")


class Sentence(BaseModel):
    source: str
    translation: str
    score: float | None = Field(description="Mean log-probability per token of the translation (0 is certainty); "
                                            "null for a sentence cached before newsmt kept scores.")
    low_confidence: bool = Field(description="score below NEWSMT_LOW_CONFIDENCE: check this one against the source.")
    alternatives: list[AlternativeOut] = Field(description="Next-best hypotheses, best first (with `alternatives`).")
    terms: list[TermOut] = Field(description="Glossary terms applied to this sentence.")


class Paragraph(BaseModel):
    source: str
    translation: str
    language: str
    sentences: list[Sentence] = Field(description="Translated sentences; empty for a paragraph already in English.")


class LowConfidenceOut(BaseModel):
    paragraph: int
    sentence: int
    source: str
    translation: str
    score: float


class GlossaryTermUse(BaseModel):
    source: str
    target: str
    matched: list[str] = Field(description="How the term was written where it was found.")
    applied: int = Field(description="Sentences it was applied to.")
    found: int = Field(description="Of those, how many have the English term in their translation.")


class Translation(BaseModel):
    translation: str
    detected_language: str | None = Field(description="`ar`, `he` or `en`; the explicit source when one was given.")
    language_confidence: float | None
    source_url: str | None = Field(description="The article's `Source:` URL, kept as metadata, not translated.")
    segments: int = Field(description="Sentences in the article.")
    cached_segments: int = Field(description="Sentences served from the cache (no model work).")
    models: list[ModelRef]
    paragraphs: list[Paragraph] | None = None
    low_confidence: list[LowConfidenceOut] = Field(
        description="Sentences scored below NEWSMT_LOW_CONFIDENCE, where a reader should check the source.")
    alternatives: list[str] | None = Field(
        None, description="With options.alternatives: other whole translations, best first; the k-th takes every "
        "sentence's k-th hypothesis (LibreTranslate's way). Fewer when the beam had fewer distinct ones.")
    glossary_terms: list[GlossaryTermUse] | None = Field(None, description="With a glossary: the terms applied.")


class Usage(BaseModel):
    segments: int
    cache_hits: int
    cache_misses: int
    elapsed_ms: float


class TranslateResponse(BaseModel):
    results: list[Translation]
    usage: Usage


class ArticlesRequest(TranslateRequest):
    """/v1/translate's request (text or texts, source, options) plus the summary's choices."""

    method: Literal["auto", "abstractive", "extractive"] | None = Field(
        None, description="auto: the summary model when installed, else LexRank. Default NEWSMT_SUMMARY_METHOD.")
    max_words: int | None = Field(None, ge=1, description="Longest summary in words; default "
                                                          "NEWSMT_SUMMARY_MAX_WORDS. It ends on a whole sentence.")
    ratio: float | None = Field(None, gt=0, le=1, description="Also cap at this fraction of the article's words.")
    max_sentences: int | None = Field(None, ge=1, description="Most sentences LexRank picks.")

    @model_validator(mode="after")
    def _translate_only(self) -> ArticlesRequest:
        """Say so rather than ignore them: summaries are made without glossaries or alternatives."""
        if self.glossary is not None or self.options.alternatives:
            raise ValueError("`glossary` and `options.alternatives` are taken by /v1/translate only")
        return self

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


class DetectedLanguage(BaseModel):
    confidence: float = Field(description="0-100, as LibreTranslate reports it.")
    language: str


class LibreTranslation(BaseModel):
    """A string per string sent, a list per list; `detectedLanguage` only with source=auto, `alternatives` only when
    asked for (the beam's other hypotheses; empty for HTML, where newsmt has none to give)."""

    translatedText: str | list[str]
    detectedLanguage: DetectedLanguage | list[DetectedLanguage] | None = None
    alternatives: list[str] | list[list[str]] | None = None


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    reasons: list[str] = Field(description="Why not ready: the cache (diskcache or Redis) is unusable and why, a "
                               "model is missing.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable name, e.g. `input_too_large` (see the README's table).")
    message: str = Field(description="What went wrong, stating the limit broken or the command that fixes it.")


class NativeError(BaseModel):
    """Error body of the native routes."""

    error: ErrorDetail


class LibreTranslateError(BaseModel):
    """Error body of the LibreTranslate-compatible routes, as LibreTranslate shapes it."""

    error: str


# -- documents and jobs -----------------------------------------------------------------------------------------
Source = Literal["auto", "ar", "he", "en"]


class TranslatedFileUrl(BaseModel):
    translatedFileUrl: str = Field(description="Where to download the translated file (until it expires).")


class DocumentInfo(BaseModel):
    id: str
    filename: str = Field(description="The translated file's name: `NAME.en.EXT`.")
    media_type: str
    download_url: str = Field(description="GET it for the translated file; the URL itself is the permission.")
    expires_at: str = Field(description="When the file is deleted (ISO 8601, UTC).")
    detected_language: str | None
    language_confidence: float | None
    segments: int = Field(description="Sentences translated or served from the cache.")
    cached_segments: int
    models: list[ModelRef]


class JobArticle(BaseModel):
    model_config = _REQUEST_CONFIG

    id: str | None = Field(None, description="Your id for the article; default: its position (1, 2, ...).")
    text: str


class JobRequest(BaseModel):
    model_config = _REQUEST_CONFIG

    articles: list[JobArticle] = Field(min_length=1)
    source: Source = "auto"
    name: str = Field("articles", min_length=1, max_length=200,
                      description="A label for the job, shown in listings and in each record's `source_path`.")


class JobInfo(BaseModel):
    id: str
    name: str
    status: Literal["queued", "running", "done", "cancelled", "failed"]
    source: str
    total: int = Field(description="Articles in the job.")
    done: int = Field(description="Articles finished (translated or failed); their records are in the results.")
    failed: int
    segments: int
    cache_hits: int
    cache_hit_rate: float | None = Field(description="Share of finished articles' sentences served from the cache.")
    eta_seconds: float | None = Field(description="Estimated time left at this run's pace; null until measured.")
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None = Field(description="Why the job failed (status `failed`); articles' errors are in records.")
    results_url: str
