"""Translating a parsed document: which language its texts are in, and the translated file with one combined result.

The steps around the translation itself are shared; the translation in between is the caller's: the bulk CLI calls
`Pipeline.translate`, the HTTP server its serving layer (coalescing, in-flight limit, time-out). Both therefore treat
a document exactly like the `format=html` path treats an HTML fragment.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.config import SOURCE_LANGUAGES, TARGET_LANGUAGE
from service.errors import EmptyText, UnsupportedLanguage
from service.pipeline.translate import ArticleResult, Pipeline
from service.text.cleaning import clean_document
from service.text.documents import Document
from service.text.langid import Detection, detect_language

_SUPPORTED = (*SOURCE_LANGUAGES, TARGET_LANGUAGE)


@dataclass
class TranslatedDocument:
    """The translated file and one result for the whole document (its units' counts summed, its plain text)."""

    filename: str
    media_type: str
    content: bytes
    result: ArticleResult


def detect_text(text: str) -> Detection:
    """What newsmt would detect for `text`: the language of its cleaned article body, as the pipeline sees it."""
    paragraphs = clean_document(text).paragraphs
    return detect_language("\n".join(paragraphs) if paragraphs else text)


def document_language(doc: Document, source: str) -> tuple[str, Detection]:
    """The source to translate `doc`'s texts with, and the detection to report. Units of a file are often too short
    to detect one by one, so a segmented file is detected once over all its text; a whole article is left to the
    pipeline, which detects it per paragraph as it does any article."""
    if source != "auto" or doc.whole_article:
        return source, Detection(source, 1.0)
    detection = detect_text(doc.plain_text())
    if detection.lang not in _SUPPORTED:
        raise UnsupportedLanguage(detection.lang, _SUPPORTED)
    return detection.lang, detection


def assemble(doc: Document, results: list[ArticleResult], detection: Detection,
             article_id: str = "") -> TranslatedDocument:
    """Render the translated file, or raise the first unit's error. A unit the cleaner removes entirely (an `[ad_1]`
    marker, a comment counter) is boilerplate and renders empty, as in an HTML fragment."""
    kept = results if doc.whole_article else [r for r in results if not isinstance(r.error, EmptyText)]
    error = next((r.error for r in kept if r.error is not None), None)
    if error is not None:
        raise error
    translations = [r.translation or "" for r in results]
    combined = ArticleResult(
        id=article_id,
        translation="\n".join(t for t in translations if t),
        paragraphs=[p for r in kept for p in r.paragraphs],
        detected_language=kept[0].detected_language if doc.whole_article else detection.lang,
        language_confidence=kept[0].language_confidence if doc.whole_article else round(detection.confidence, 4),
        source_url=kept[0].source_url if doc.whole_article else None,
        segments=sum(r.segments for r in kept),
        cache_hits=sum(r.cache_hits for r in kept),
        cache_misses=sum(r.cache_misses for r in kept),
        models=list({str(m): m for r in kept for m in r.models}.values()),
        elapsed_ms=max((r.elapsed_ms for r in kept), default=0.0),
    )
    return TranslatedDocument(doc.translated_filename, doc.media_type, doc.render(translations), combined)


def translate_document(pipeline: Pipeline, doc: Document, source: str, *, beam_size: int | None = None,
                       article_id: str = "") -> TranslatedDocument:
    """The document's texts through `Pipeline.translate` in one call (the bulk CLI's path; the server's is
    `ServiceState.translate_document`)."""
    lang, detection = document_language(doc, source)
    return assemble(doc, pipeline.translate(doc.texts, lang, beam_size=beam_size), detection, article_id)
