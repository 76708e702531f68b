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

import orjson

from service.cache.segment_cache import SegmentCache, cache_key
from service.config import SOURCE_LANGUAGES, TARGET_LANGUAGE, Settings, translation_task
from service.engines.base import Generation, GenerationSettings, Hypothesis
from service.engines.manager import ModelManager
from service.errors import EmptyText, InputTooLarge, InvalidInput, NewsMTError, UnsupportedLanguage
from service.pipeline.sentences import SentenceResult, TermResult, join_generations
from service.store.model_store import ResolvedModel
from service.text.cleaning import CleanedDocument, clean_document, join_paragraphs, split_sentences, split_to_fit
from service.text.glossary import Glossary, Protected, restore
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
    #: The translated sentences, in order (none for a paragraph already in English).
    sentences: list[SentenceResult] = field(default_factory=list)


@dataclass(frozen=True)
class LowConfidence:
    """A sentence scored below the low-confidence threshold: where a reader should check the source."""

    paragraph: int
    sentence: int
    source: str
    translation: str
    score: float


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
    #: The paragraph separator of the source, to join alternatives the way the translation is joined.
    separator: str = "\n"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sentences(self) -> list[SentenceResult]:
        return [s for p in self.paragraphs for s in p.sentences]

    def low_confidence(self, threshold: float) -> list[LowConfidence]:
        """Sentences whose score is below `threshold` (sentences cached before scores existed have none)."""
        return [LowConfidence(p, i, s.source, s.translation, s.score)
                for p, paragraph in enumerate(self.paragraphs) for i, s in enumerate(paragraph.sentences)
                if s.score is not None and s.score < threshold]

    def alternatives(self, count: int) -> list[str]:
        """Whole-text alternatives as LibreTranslate builds them: the k-th takes every sentence's k-th hypothesis
        (its best where the beam gave fewer); duplicates and copies of the translation are left out."""
        deepest = max((len(s.alternatives) for s in self.sentences), default=0)
        texts: list[str] = []
        for rank in range(1, min(count, deepest) + 1):
            paragraphs = [" ".join(s.option(rank) for s in p.sentences) if p.sentences else p.translation
                          for p in self.paragraphs]
            text = join_paragraphs(paragraphs, self.separator)
            if text != self.translation and text not in texts:
                texts.append(text)
        return texts

    def terms(self) -> list[dict[str, Any]]:
        """Glossary terms applied in the article: how often each was matched and how often it is in the output."""
        counts: dict[tuple[str, str], dict[str, Any]] = {}
        for sentence in self.sentences:
            for term in sentence.terms:
                entry = counts.setdefault((term.source, term.target), {
                    "source": term.source, "target": term.target, "matched": [], "applied": 0, "found": 0})
                if term.matched not in entry["matched"]:
                    entry["matched"].append(term.matched)
                entry["applied"] += 1
                entry["found"] += term.found
        return list(counts.values())


@dataclass
class Segment:
    article: int
    paragraph: int
    task: str
    text: str
    key: str = ""
    protected: Protected | None = None  # the text sent to the model: glossary terms replaced

    @property
    def model_input(self) -> str:
        return self.protected.text if self.protected is not None else self.text


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

    found: dict[str, SentenceResult]
    #: task -> segment key -> segment: each distinct miss once, however many articles hold it.
    misses: dict[str, dict[str, Segment]] = field(default_factory=lambda: defaultdict(dict))
    #: The misses' sentences as cache values, once made: not yet in the cache.
    produced: dict[str, str] = field(default_factory=dict)


@dataclass
class PendingArticles:
    """Articles between `Pipeline.lookup` and `Pipeline.finish`: results filled in where the article cache had them."""

    works: list[ArticleWork]
    texts: list[str]
    source: str
    gen: GenerationSettings
    started: float
    glossary: Glossary | None = None

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

    def generation_settings(self, beam_size: int | None = None, alternatives: int = 0) -> GenerationSettings:
        """Alternatives need that many hypotheses besides the best, so the beam is widened to hold them."""
        if alternatives > self.settings.alternatives_limit:
            raise InvalidInput(f"{alternatives} alternatives asked for; the limit is "
                               f"{self.settings.alternatives_limit} (NEWSMT_ALTERNATIVES_LIMIT)")
        beam = beam_size or self.settings.beam_size
        return GenerationSettings(
            beam_size=max(beam, alternatives + 1) if alternatives else beam,
            max_output_tokens=self.settings.max_output_tokens,
            max_input_tokens=self.settings.max_input_tokens,
            num_hypotheses=alternatives + 1 if alternatives else None,
        )

    # -- public ----------------------------------------------------------------------------------------------
    def translate(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
                  beam_size: int | None = None, alternatives: int = 0,
                  glossary: Glossary | None = None) -> list[ArticleResult]:
        """Translate many articles together (their misses share batches). Per-article problems come back as
        `ArticleResult.error`; one bad article never fails the others. `alternatives`: that many next-best
        hypotheses per sentence too; `glossary`: terms to pin (service/text/glossary.py)."""
        return self.finish(self.lookup(texts, source, ids=ids, beam_size=beam_size, alternatives=alternatives,
                                       glossary=glossary))

    def lookup(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
               beam_size: int | None = None, alternatives: int = 0, glossary: Glossary | None = None,
               may_block: bool = True) -> PendingArticles:
        """The first stage alone: one article-cache read for all `texts`. It costs a hash and a lookup per article
        and never cleans, detects or loads a model, so the HTTP server runs it on its event loop (with
        `may_block=False`: a broken disk cache is not retried there) and answers a repeated article without a
        thread; `finish` does the rest for the articles it did not find."""
        if source not in SOURCE_CHOICES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCE_CHOICES)}, got '{source}'")
        started = time.perf_counter()
        gen = self.generation_settings(beam_size, alternatives)
        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        signature = self.models_signature()
        extra = {"glossary": glossary.digest} if glossary is not None else {}
        works = [ArticleWork(ArticleResult(id=article_id), [], "\n", [],
                             doc_key=self._article_key(text, source, gen, signature, extra))
                 for article_id, text in zip(ids, texts, strict=True)]
        cached = self.cache.get_many((w.doc_key for w in works), may_reopen=may_block)  # one read for all of them
        for work in works:
            if work.doc_key in cached:
                self._apply_cached_article(work.result, cached[work.doc_key])
        pending = PendingArticles(works, list(texts), source, gen, started, glossary)
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
                self._prepare(work, text, pending.source, pending.gen, pending.glossary)
            except NewsMTError as exc:
                work.result.error = exc
        return [w for w in pending.works if w.result.ok and w.result.translation is None]

    def lookup_segments(self, works: Sequence[ArticleWork],
                        known: Mapping[str, SentenceResult] | None = None) -> SegmentLookup:
        """One cache read for every segment of `works` (but those in `known`, sentences already in hand),
        counting each article's hits and misses. A cached entry that does not read back is a miss."""
        found: dict[str, SentenceResult] = dict(known or {})
        segments = [s for w in works for s in w.segments if s.key not in found]
        cached = self.cache.get_many(s.key for s in segments)
        for seg in segments:
            if seg.key in cached and seg.key not in found and \
                    (sentence := SentenceResult.from_cache(seg.text, cached[seg.key])) is not None:
                found[seg.key] = sentence
        lookup = SegmentLookup(found)
        for work in works:
            work.result.cache_hits = work.result.cache_misses = 0
            for seg in work.segments:
                if seg.key in found:
                    work.result.cache_hits += 1
                else:
                    work.result.cache_misses += 1
                    lookup.misses[seg.task].setdefault(seg.key, seg)
        return lookup

    def translate_misses(self, lookup: SegmentLookup, gen: GenerationSettings) -> dict[str, NewsMTError]:
        """Send the distinct misses (their model input: glossary terms replaced) to the engines (loaded on first
        use); their sentences go into `lookup.found`, and their cache values into `lookup.produced` (stored by
        `assemble`). Returns the error of each task whose model could not run."""
        failed: dict[str, NewsMTError] = {}
        for task, by_key in lookup.misses.items():
            try:
                outputs = self._infer(task, [seg.model_input for seg in by_key.values()], gen)
            except NewsMTError as exc:
                failed[task] = exc
                continue
            sentences = {key: _sentence(seg, output)
                         for (key, seg), output in zip(by_key.items(), outputs, strict=True)}
            lookup.produced.update((key, sentence.cache_value()) for key, sentence in sentences.items())
            lookup.found.update(sentences)
        return failed

    def assemble(self, works: Sequence[ArticleWork], lookup: SegmentLookup, failed: dict[str, NewsMTError]) -> None:
        """Join each article's sentences back into paragraphs, then store every new entry, sentences and whole
        articles, in one cache write."""
        found, produced = lookup.found, dict(lookup.produced)
        for work in works:
            broken = next((failed[s.task] for s in work.segments if s.task in failed), None)
            if broken is not None:
                work.result.error = broken
                continue
            by_paragraph: dict[int, list[SentenceResult]] = defaultdict(list)
            for seg in work.segments:
                sentence = found[seg.key]
                by_paragraph[seg.paragraph].append(sentence if sentence.source == seg.text else
                                                   SentenceResult(seg.text, sentence.translation, sentence.score,
                                                                  sentence.alternatives, sentence.terms))
            self._finish(work, by_paragraph)
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

    def _article_key(self, text: str, source: str, gen: GenerationSettings, signature: str,
                     extra: dict[str, str]) -> str:
        """Key of a whole article's result: over the raw text as received, so a repeat costs one lookup."""
        return cache_key("article", "translate", signature, "", {**gen.key(), "source": source, **extra}, text)

    def _prepare(self, work: ArticleWork, text: str, source: str, gen: GenerationSettings,
                 glossary: Glossary | None = None) -> None:
        """Clean, detect, resolve models and segment an article the article-level cache did not have."""
        result = work.result
        doc, languages = self.prepare_document(text, source, result)
        work.paragraphs, work.separator, work.languages = doc.paragraphs, doc.separator, languages
        result.separator = doc.separator
        tasks = sorted({translation_task(lang) for lang in languages if lang != TARGET_LANGUAGE})
        models = {task: self.manager.resolve(task) for task in tasks}
        result.models = [ModelRef(t, m.model_id, m.revision, self.manager.variant(t)) for t, m in models.items()]
        for p, (paragraph, lang) in enumerate(zip(doc.paragraphs, languages, strict=True)):
            if lang == TARGET_LANGUAGE:
                continue
            task = translation_task(lang)
            key_settings = self._key_settings(gen, {task: models[task]})
            for sentence in split_sentences(paragraph, lang):
                # Only a sentence a glossary changed is keyed on the glossary: editing a glossary re-translates
                # the sentences holding its terms and no others.
                protected = glossary.protect(sentence, lang) if glossary is not None else None
                if glossary is not None and protected is not None and protected.applied:
                    settings, model_input = {**key_settings, "glossary": glossary.digest}, protected.text
                else:
                    protected, settings, model_input = None, key_settings, sentence
                key = cache_key("segment", task, models[task].model_id, models[task].revision, settings, model_input)
                work.segments.append(Segment(len(work.segments), p, task, sentence, key, protected))
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
        """Fill `result` from a cached article; False (recompute) for an entry that does not read back whole,
        such as one written before sentences were kept (its sentences still come from the segment cache)."""
        try:
            data = orjson.loads(cached)
            paragraphs = []
            for p in data["paragraphs"]:
                sentences = [SentenceResult.from_cache(str(s["source"]), str(s["value"])) for s in p["sentences"]]
                if None in sentences:
                    raise ValueError("unreadable sentence")
                paragraphs.append(ParagraphResult(str(p["source"]), str(p["translation"]), str(p["language"]),
                                                  [s for s in sentences if s is not None]))
            result.translation = str(data["translation"])
            result.detected_language, result.language_confidence = data["detected_language"], data["confidence"]
            result.source_url = data["source_url"]
            result.models = [ModelRef(**m) for m in data["models"]]
            result.segments = result.cache_hits = int(data["segments"])
            result.separator = str(data["separator"])
        except (ValueError, KeyError, TypeError):
            result.translation = None
            return False
        result.paragraphs = paragraphs
        return True

    def _cached_article(self, result: ArticleResult) -> str:
        return json.dumps({
            "translation": result.translation,
            "paragraphs": [{"source": p.source, "translation": p.translation, "language": p.language,
                            "sentences": [{"source": s.source, "value": s.cache_value()} for s in p.sentences]}
                           for p in result.paragraphs],
            "detected_language": result.detected_language,
            "confidence": result.language_confidence,
            "source_url": result.source_url,
            "models": [asdict(m) for m in result.models],
            "segments": result.segments,
            "separator": result.separator,
        }, ensure_ascii=False)

    def _finish(self, work: ArticleWork, by_paragraph: dict[int, list[SentenceResult]]) -> None:
        paragraphs = []
        for p, (source, lang) in enumerate(zip(work.paragraphs, work.languages, strict=True)):
            sentences = by_paragraph.get(p, []) if lang != TARGET_LANGUAGE else []
            translation = " ".join(s.translation for s in sentences) if lang != TARGET_LANGUAGE else source
            paragraphs.append(ParagraphResult(source, translation, lang, sentences))
        work.result.paragraphs = paragraphs
        work.result.translation = join_paragraphs([p.translation for p in paragraphs], work.separator)

    def _infer(self, task: str, texts: list[str], gen: GenerationSettings) -> list[Generation]:
        """Distinct sentences in, one generation each. Over-long sentences are split to fit the model and their
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
        generated = dict(zip(unique, self.manager.batcher.generate(task, unique, gen), strict=True))
        return [join_generations([generated[p] for p in pieces], [len(p) for p in pieces]) for pieces in pieces_of]


def _sentence(segment: Segment, generation: Generation) -> SentenceResult:
    """A segment's translation from its generation, with its glossary terms restored and checked (each hypothesis
    restored alike, so alternatives keep the pinned terms too)."""
    applied = segment.protected.applied if segment.protected is not None else ()
    best, found = restore(generation.best.text, applied)
    alternatives = [Hypothesis(restore(h.text, applied)[0], h.score) for h in generation.hypotheses[1:]]
    terms = [TermResult(a.matched, a.source, a.target, ok) for a, ok in zip(applied, found, strict=True)]
    return SentenceResult(segment.text, best, generation.best.score, alternatives, terms)
