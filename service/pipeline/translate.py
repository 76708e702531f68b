"""The one translation pipeline that the HTTP API and the bulk CLI both call.

clean -> detect -> segment -> cache lookup -> batched inference for misses only -> cache store -> join.

Cache units are whole sentences (after normalisation), so one edited sentence re-translates only itself. A
sentence longer than the model's input limit is split into pieces for inference only and cached under the whole
sentence's key, which keeps lookups free of any tokenizer: a fully cached article never loads a model. The whole
article's result is cached too, so a repeated article costs one lookup.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from service.cache.segment_cache import SegmentCache, cache_key
from service.config import SOURCE_LANGUAGES, TARGET_LANGUAGE, Settings, translation_task
from service.engines.base import GenerationSettings
from service.engines.manager import ModelManager
from service.errors import EmptyText, InputTooLarge, InvalidInput, NewsMTError, UnsupportedLanguage
from service.store.model_store import ResolvedModel
from service.text.cleaning import CleanedDocument, clean_document, join_paragraphs, split_sentences, split_to_fit
from service.text.langid import detect_language

log = logging.getLogger(__name__)

#: A paragraph's own detection overrides the document's only when it is this sure and this long (mixed texts).
PARAGRAPH_OVERRIDE_CONFIDENCE = 0.95
PARAGRAPH_OVERRIDE_MIN_CHARS = 40
SOURCE_CHOICES = ("auto", *SOURCE_LANGUAGES, TARGET_LANGUAGE)
#: A Python str holds astral characters as single code points, so any code point in this range is a lone half.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
TRANSLATION_TASKS = tuple(translation_task(lang) for lang in SOURCE_LANGUAGES)


@dataclass(frozen=True)
class ModelRef:
    """Which model translated (part of) an article, as results, the article cache and results.jsonl record it."""

    task: str
    model_id: str
    revision: str
    #: The backend variant that ran it, e.g. "transformers" or "ctranslate2-int8".
    backend: str


@dataclass
class ParagraphResult:
    source: str
    translation: str
    language: str


@dataclass
class ArticleResult:
    """What a user gets back for one article: the translation or an error, with cache and model metadata."""

    id: str
    translation: str | None = None
    paragraphs: list[ParagraphResult] = field(default_factory=list)
    detected_language: str | None = None
    language_confidence: float | None = None
    source_url: str | None = None
    segments: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    models: list[ModelRef] = field(default_factory=list)
    elapsed_ms: float = 0.0
    error: NewsMTError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Segment:
    article: int
    paragraph: int
    task: str
    text: str
    key: str = ""


@dataclass
class ArticleWork:
    """Per-article state while a batch of articles moves through the pipeline."""

    result: ArticleResult
    paragraphs: list[str]
    separator: str
    languages: list[str]
    doc_key: str = ""
    segments: list[Segment] = field(default_factory=list)


@dataclass
class SegmentLookup:
    """The segments of a set of articles after one cache read: translations found so far, misses left to run."""

    found: dict[str, str]
    #: task -> segment key -> text: each distinct miss once, however many articles hold it.
    misses: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    #: The misses' translations, once made: not yet in the cache.
    produced: dict[str, str] = field(default_factory=dict)


@dataclass
class PendingArticles:
    """Articles between `Pipeline.lookup` and `Pipeline.finish`: results filled in where the article cache had them."""

    works: list[ArticleWork]
    texts: list[str]
    source: str
    gen: GenerationSettings
    started: float

    @property
    def complete(self) -> bool:
        """Every article came from the article cache: nothing is left for `finish`."""
        return all(w.result.translation is not None for w in self.works)

    @property
    def results(self) -> list[ArticleResult]:
        return [w.result for w in self.works]

    @property
    def keys(self) -> list[str]:
        """Each article's cache key: a digest of everything its result depends on."""
        return [w.doc_key for w in self.works]

    def stamp_elapsed(self) -> None:
        elapsed = round((time.perf_counter() - self.started) * 1000, 1)
        for work in self.works:
            work.result.elapsed_ms = elapsed


class Pipeline:
    def __init__(self, settings: Settings, manager: ModelManager, cache: SegmentCache):
        self.settings = settings
        self.manager = manager
        self.cache = cache

    def generation_settings(self, beam_size: int | None = None) -> GenerationSettings:
        return GenerationSettings(
            beam_size=beam_size or self.settings.beam_size,
            max_output_tokens=self.settings.max_output_tokens,
            max_input_tokens=self.settings.max_input_tokens,
        )

    # -- public ----------------------------------------------------------------------------------------------
    def translate(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
                  beam_size: int | None = None) -> list[ArticleResult]:
        """Translate many articles together (their misses share batches). Per-article problems come back as
        `ArticleResult.error`; one bad article never fails the others."""
        return self.finish(self.lookup(texts, source, ids=ids, beam_size=beam_size))

    def lookup(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
               beam_size: int | None = None, may_block: bool = True) -> PendingArticles:
        """The first stage alone: one article-cache read for all `texts`. It costs a hash and a lookup per article
        and never cleans, detects or loads a model, so the HTTP server runs it on its event loop (with
        `may_block=False`: a broken disk cache is not retried there) and answers a repeated article without a
        thread; `finish` does the rest for the articles it did not find."""
        if source not in SOURCE_CHOICES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCE_CHOICES)}, got '{source}'")
        started = time.perf_counter()
        gen = self.generation_settings(beam_size)
        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        signature = self.models_signature()
        works = [ArticleWork(ArticleResult(id=article_id), [], "\n", [],
                       doc_key=self._article_key(text, source, gen, signature))
                 for article_id, text in zip(ids, texts, strict=True)]
        cached = self.cache.get_many((w.doc_key for w in works), may_reopen=may_block)  # one read for all of them
        for work in works:
            if work.doc_key in cached:
                self._apply_cached_article(work.result, cached[work.doc_key])
        pending = PendingArticles(works, list(texts), source, gen, started)
        pending.stamp_elapsed()
        return pending

    def finish(self, pending: PendingArticles) -> list[ArticleResult]:
        """Every stage after `lookup`, for the articles it did not answer, with their misses in shared batches."""
        with self.manager.batcher.arriving():  # an idle engine waits for these misses rather than batching without them
            works = self.prepare(pending)
            lookup = self.lookup_segments(works)
            failed = self.translate_misses(lookup, pending.gen)
            self.assemble(works, lookup, failed)
        pending.stamp_elapsed()
        return pending.results

    # -- stages: `finish` runs them in one process; the cluster run (service/bulk/cluster.py) spreads them ------
    def prepare(self, pending: PendingArticles) -> list[ArticleWork]:
        """Clean, detect and segment the articles `lookup` did not find; returns those left to translate (an
        article that fails here carries its error instead)."""
        for work, text in zip(pending.works, pending.texts, strict=True):
            if work.result.translation is not None:
                continue
            try:
                self._prepare(work, text, pending.source, pending.gen)
            except NewsMTError as exc:
                work.result.error = exc
        return [w for w in pending.works if w.result.ok and w.result.translation is None]

    def lookup_segments(self, works: Sequence[ArticleWork], known: Mapping[str, str] | None = None) -> SegmentLookup:
        """One cache read for every segment of `works` (but those in `known`, translations already in hand),
        counting each article's hits and misses."""
        found = dict(known or {})
        found.update(self.cache.get_many(s.key for w in works for s in w.segments if s.key not in found))
        lookup = SegmentLookup(found)
        for work in works:
            work.result.cache_hits = work.result.cache_misses = 0
            for seg in work.segments:
                if seg.key in found:
                    work.result.cache_hits += 1
                else:
                    work.result.cache_misses += 1
                    lookup.misses[seg.task][seg.key] = seg.text
        return lookup

    def translate_misses(self, lookup: SegmentLookup, gen: GenerationSettings) -> dict[str, NewsMTError]:
        """Send the distinct misses to the engines (loaded on first use); their outputs go into `lookup.found` and
        `lookup.produced` (stored by `assemble`). Returns the error of each task whose model could not run."""
        failed: dict[str, NewsMTError] = {}
        for task, by_key in lookup.misses.items():
            try:
                outputs = self._infer(task, list(by_key.values()), gen)
            except NewsMTError as exc:
                failed[task] = exc
                continue
            lookup.produced.update(zip(by_key, outputs, strict=True))
        lookup.found.update(lookup.produced)
        return failed

    def assemble(self, works: Sequence[ArticleWork], lookup: SegmentLookup, failed: dict[str, NewsMTError]) -> None:
        """Join each article's segment translations back into paragraphs, then store every new entry, sentences
        and whole articles, in one cache write."""
        found, produced = lookup.found, dict(lookup.produced)
        for work in works:
            broken = next((failed[s.task] for s in work.segments if s.task in failed), None)
            if broken is not None:
                work.result.error = broken
                continue
            by_paragraph: dict[int, list[str]] = defaultdict(list)
            for seg in work.segments:
                by_paragraph[seg.paragraph].append(found[seg.key])
            translations = [
                " ".join(by_paragraph[p]) if lang != TARGET_LANGUAGE else paragraph
                for p, (paragraph, lang) in enumerate(zip(work.paragraphs, work.languages, strict=True))
            ]
            self._finish(work, translations)
            produced[work.doc_key] = self._cached_article(work.result)
        self.cache.set_many(produced)

    # -- stages ----------------------------------------------------------------------------------------------
    def prepare_document(self, text: str, source: str, result: ArticleResult) -> tuple[CleanedDocument, list[str]]:
        """Validate, clean and detect one article, recording its language and source URL on `result`. Public
        because the summarizer's summarize_then_translate strategy picks source sentences before translating."""
        if len(text) > self.settings.max_input_chars:
            raise InputTooLarge(
                f"text has {len(text)} characters; the limit is {self.settings.max_input_chars} "
                "(NEWSMT_MAX_INPUT_CHARS)"
            )
        if not text.strip():
            raise EmptyText("text is empty")
        surrogate = _LONE_SURROGATE.search(text)
        if surrogate is not None:  # JSON can carry one (`"\ud800"`); no tokenizer or UTF-8 output file takes it
            raise InvalidInput(f"text is not valid Unicode: lone surrogate U+{ord(surrogate.group()):04X} at "
                               f"character {surrogate.start()}")
        doc = clean_document(text)
        if not doc.paragraphs:
            raise EmptyText("text has nothing to translate once boilerplate is removed")
        result.source_url = doc.source_url
        return doc, self._languages(result, doc.paragraphs, source)

    def models_signature(self) -> str:
        """Every translation model's id, revision and backend (or 'missing'): all an article's result can depend on
        before its language is known, so the article-level key needs no cleaning or detection. Memoised by the
        model manager, except a local model's first fingerprint, which hashes its files: the server computes it
        once at start-up, in a thread."""
        parts = []
        for task in TRANSLATION_TASKS:
            try:
                model = self.manager.resolve(task)
                parts.append(f"{task}={model.model_id}@{model.revision}/{self.manager.variant(task)}")
            except NewsMTError:
                parts.append(f"{task}=missing")
        return "|".join(parts)

    def _article_key(self, text: str, source: str, gen: GenerationSettings, signature: str) -> str:
        """Key of a whole article's result: over the raw text as received, so a repeat costs one lookup."""
        return cache_key("article", "translate", signature, "", {**gen.key(), "source": source}, text)

    def _prepare(self, work: ArticleWork, text: str, source: str, gen: GenerationSettings) -> None:
        """Clean, detect, resolve models and segment an article the article-level cache did not have."""
        result = work.result
        doc, languages = self.prepare_document(text, source, result)
        work.paragraphs, work.separator, work.languages = doc.paragraphs, doc.separator, languages
        tasks = sorted({translation_task(lang) for lang in languages if lang != TARGET_LANGUAGE})
        models = {task: self.manager.resolve(task) for task in tasks}
        result.models = [ModelRef(t, m.model_id, m.revision, self.manager.variant(t)) for t, m in models.items()]
        for p, (paragraph, lang) in enumerate(zip(doc.paragraphs, languages, strict=True)):
            if lang == TARGET_LANGUAGE:
                continue
            task = translation_task(lang)
            for sentence in split_sentences(paragraph, lang):
                key = cache_key("segment", task, models[task].model_id, models[task].revision,
                                self._key_settings(gen, {task: models[task]}), sentence)
                work.segments.append(Segment(len(work.segments), p, task, sentence, key))
        result.segments = len(work.segments)

    def _languages(self, result: ArticleResult, paragraphs: list[str], source: str) -> list[str]:
        """One language per paragraph: the explicit source, else the document's detected language, overridden by a
        paragraph's own detection only when it is confident and supported (mixed-language articles)."""
        if source != "auto":
            result.detected_language, result.language_confidence = source, 1.0
            return [source] * len(paragraphs)
        supported = (*SOURCE_LANGUAGES, TARGET_LANGUAGE)
        doc = detect_language("\n".join(paragraphs))
        result.detected_language, result.language_confidence = doc.lang, round(doc.confidence, 4)
        if doc.lang not in supported:
            raise UnsupportedLanguage(doc.lang, supported)
        languages = []
        for paragraph in paragraphs:
            lang = doc.lang
            if len(paragraph) >= PARAGRAPH_OVERRIDE_MIN_CHARS:
                own = detect_language(paragraph)
                if own.lang in supported and own.confidence >= PARAGRAPH_OVERRIDE_CONFIDENCE:
                    lang = own.lang
            languages.append(lang)
        return languages

    def _key_settings(self, gen: GenerationSettings, models: dict[str, ResolvedModel]) -> dict[str, Any]:
        return {**gen.key(), "variants": [self.manager.variant(task) for task in models]}

    def _apply_cached_article(self, result: ArticleResult, cached: str) -> bool:
        """Fill `result` from a cached article; False (recompute) for an entry that does not read back whole."""
        try:
            data = json.loads(cached)
            paragraphs = [ParagraphResult(str(p["source"]), str(p["translation"]), str(p["language"]))
                          for p in data["paragraphs"]]
            result.translation = str(data["translation"])
            result.detected_language, result.language_confidence = data["detected_language"], data["confidence"]
            result.source_url = data["source_url"]
            result.models = [ModelRef(**m) for m in data["models"]]
            result.segments = result.cache_hits = int(data["segments"])
        except (ValueError, KeyError, TypeError):
            result.translation = None
            return False
        result.paragraphs = paragraphs
        return True

    def _cached_article(self, result: ArticleResult) -> str:
        return json.dumps({
            "translation": result.translation,
            "paragraphs": [asdict(p) for p in result.paragraphs],
            "detected_language": result.detected_language,
            "confidence": result.language_confidence,
            "source_url": result.source_url,
            "models": [asdict(m) for m in result.models],
            "segments": result.segments,
        }, ensure_ascii=False)

    def _finish(self, work: ArticleWork, translations: list[str]) -> None:
        work.result.paragraphs = [
            ParagraphResult(src, tgt, lang)
            for src, tgt, lang in zip(work.paragraphs, translations, work.languages, strict=True)
        ]
        work.result.translation = join_paragraphs(translations, work.separator)

    def _infer(self, task: str, texts: list[str], gen: GenerationSettings) -> list[str]:
        """Distinct sentences in, one output each. Over-long sentences are split to fit the model and their
        pieces re-joined; the batcher sorts pieces by length so each batch pads little."""
        pieces_of: list[list[str]] = []
        with self.manager.lease(task) as engine:  # only the tokenizer; the batcher leases the engine per batch
            limit = min(gen.max_input_tokens, engine.max_positions)
            for text in texts:
                # A sentencepiece token covers at least one character, so short sentences need no counting.
                if len(text) + 2 <= limit:
                    pieces_of.append([text])
                else:
                    pieces_of.append(split_to_fit(text, limit, lambda s: engine.count_tokens([s])[0]))
        unique = list(dict.fromkeys(p for pieces in pieces_of for p in pieces))
        translated = dict(zip(unique, self.manager.batcher.generate(task, unique, gen), strict=True))
        return [" ".join(translated[p] for p in pieces) for pieces in pieces_of]
