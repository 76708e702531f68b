"""English summaries of news articles, behind the same model manager and cache as translation.

Engines
    abstractive  the `summarize` task's seq2seq model (a BART CNN/DailyMail checkpoint by default), loaded and
                 unloaded by the ModelManager exactly like the translation models.
    extractive   LexRank over the article's own sentences (service/pipeline/extractive.py); needs no model.
`method=auto` runs the abstractive engine when its model is installed and loads, the extractive one otherwise, and
the result says which ran and why.

Strategies
    translate_then_summarize  (default) Pipeline.translate the whole article, summarize the English.
    summarize_then_translate  pick the key source sentences with LexRank and send only those through
                              Pipeline.translate: a fraction of the translation work on long articles.

Long inputs are never truncated: the text is packed into chunks that fit the model window on sentence boundaries,
each chunk is summarized, and the joined chunk summaries are summarized again (map-reduce, repeated until one input
fits); the result says whether that happened. Length: a word limit (`max_words`, optionally a `ratio` of the
article's words) and whole sentences; only when not even one sentence fits is the best one cut, ending in "…".

Caching: a summary of English text is stored under `cache_key` of (method, model id and revision, or the LexRank
version, the generation and length settings, backend variant, text), so a repeat loads no model. With
summarize_then_translate the sentence picking is recomputed (milliseconds, no model) and its translation comes from
the pipeline's own caches, keyed as every translation is.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from service.cache.segment_cache import cache_key
from service.config import SUMMARIZE_TASK, TARGET_LANGUAGE, Settings, SummaryMethod, SummaryStrategy
from service.engines.base import Engine, GenerationSettings
from service.errors import InvalidInput, ModelLoadError, ModelNotInstalled, NewsMTError, SummarizationFailed
from service.pipeline.extractive import LEXRANK_VERSION, select_sentences, word_count
from service.pipeline.translate import SOURCE_CHOICES, ArticleResult, Pipeline
from service.store.model_store import ResolvedModel
from service.text.cleaning import split_sentences, split_to_fit

METHODS: tuple[str, ...] = get_args(SummaryMethod)
STRATEGIES: tuple[str, ...] = get_args(SummaryStrategy)
TRANSLATE_THEN_SUMMARIZE, SUMMARIZE_THEN_TRANSLATE = STRATEGIES
EXTRACTIVE_ENGINE = "lexrank"

#: The CNN/DailyMail BART checkpoints' own generation settings (length_penalty 2.0, no_repeat_ngram_size 3,
#: min_length 56 of max_length 142), passed explicitly so that they are part of the cache key.
LENGTH_PENALTY = 2.0
NO_REPEAT_NGRAM_SIZE = 3
MIN_LENGTH_FRACTION = 56 / 142
#: BPE tokens generated per English word (about 1.3 on news), rounded up so the token cap rarely cuts a sentence.
TOKENS_PER_WORD = 1.5
#: A chunk summary may use at most this share of the window, so at least two fit in the next round's input and
#: every map-reduce round at least halves the number of inputs.
MAP_SHARE = 3
#: Tokens reserved per sentence when packing: byte-level BPE merges the joining space into the next sentence.
_JOIN_SLACK = 1
_SENTENCE_END = (".", "!", "?", "…", "؟", "。")
_CLOSERS = "\"'”’»)]"
ELLIPSIS = "…"


@dataclass(frozen=True)
class SummaryOptions:
    """What a caller may choose per request; defaults come from the NEWSMT_SUMMARY_* settings."""

    method: str
    strategy: str
    max_words: int
    ratio: float | None
    max_sentences: int

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.strategy == SUMMARIZE_THEN_TRANSLATE and self.method == "abstractive":
            raise InvalidInput("summarize_then_translate picks source sentences extractively; "
                               "use method auto or extractive, or strategy translate_then_summarize")
        if self.max_words < 1 or self.max_sentences < 1:
            raise InvalidInput("max_words and max_sentences must be at least 1")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise InvalidInput(f"ratio must be in (0, 1], got {self.ratio}")

    @classmethod
    def from_settings(cls, settings: Settings, *, method: str | None = None, strategy: str | None = None,
                      max_words: int | None = None, ratio: float | None = None,
                      max_sentences: int | None = None) -> SummaryOptions:
        """Per-request choices; anything left None takes its NEWSMT_SUMMARY_* setting."""
        return cls(
            method=method or settings.summary_method,
            strategy=strategy or settings.summary_strategy,
            max_words=max_words if max_words is not None else settings.summary_max_words,
            ratio=ratio if ratio is not None else settings.summary_ratio,
            max_sentences=max_sentences if max_sentences is not None else settings.summary_max_sentences,
        )

    def word_limit(self, article_words: int) -> int:
        """max_words, tightened by the ratio of the article's length when one is set."""
        if self.ratio is None:
            return self.max_words
        return max(1, min(self.max_words, math.ceil(self.ratio * article_words)))


@dataclass
class SummaryResult:
    """One article's summary, or its error, with what produced it."""

    id: str
    strategy: str
    #: The translation step: the whole article (translate_then_summarize) or only the picked sentences.
    article: ArticleResult
    summary: str | None = None
    #: "abstractive" or "extractive": the engine that actually ran.
    method: str | None = None
    #: The summarization model id, or "lexrank".
    engine: str | None = None
    revision: str | None = None
    #: Why method=auto did not use the abstractive model (it is not installed, or failed to load).
    fallback: str | None = None
    #: Whether the input exceeded the model window and was summarized map-reduce; `chunks` model inputs at first.
    chunked: bool = False
    chunks: int = 1
    cached: bool = False
    words: int = 0
    elapsed_ms: float = 0.0
    error: NewsMTError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.summary is not None

    def describe(self) -> dict[str, Any]:
        """How the summary was made, JSON-ready (results.jsonl and HTTP responses)."""
        return {
            "method": self.method, "engine": self.engine, "revision": self.revision, "strategy": self.strategy,
            "fallback": self.fallback, "chunked": self.chunked, "chunks": self.chunks, "cached": self.cached,
            "words": self.words, "elapsed_ms": self.elapsed_ms,
        }


def _finished(sentence: str) -> bool:
    return sentence.rstrip().rstrip(_CLOSERS).endswith(_SENTENCE_END)


def fit_to_words(units: Sequence[str], max_words: int, *, drop_unfinished: bool) -> str:
    """The leading whole units (sentences) that fit in `max_words`. With `drop_unfinished`, a last sentence without
    closing punctuation (a generation stopped by its token cap) is dropped when a finished one precedes it. If the
    first unit alone is too long, it is cut at a word boundary and ends in "…", so the cut is visible."""
    kept: list[str] = []
    total = 0
    for unit in units:
        total += word_count(unit)
        if total > max_words:
            break
        kept.append(unit.strip())
    if drop_unfinished and len(kept) > 1 and not _finished(kept[-1]):
        kept.pop()
    if kept:
        return " ".join(kept)
    if not units:
        return ""
    return " ".join(units[0].split()[:max_words]).rstrip(",;:،؛ ") + ELLIPSIS


def _read_entry(value: str) -> tuple[str, int] | None:
    """A cached summary and its chunk count, or None for an entry this version cannot read."""
    try:
        data = json.loads(value)
        return str(data["summary"]), int(data["chunks"])
    except (ValueError, KeyError, TypeError):
        return None


def english_sentences(text: str) -> list[str]:
    return [s for paragraph in text.split("\n") for s in split_sentences(paragraph, TARGET_LANGUAGE)]


@dataclass
class SentencePicks:
    """What summarize_then_translate translates: the picked sentences of each article that could be read."""

    started: float
    #: One per article, in order; articles that could not be read or detected already carry their error.
    results: list[SummaryResult] = field(default_factory=list)
    #: For each article without an error: its picked sentences (one per line), its id, its word limit.
    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)


@dataclass
class _Job:
    """One English text waiting for a summary."""

    result: SummaryResult
    text: str
    limit: int
    key: str = ""


class Summarizer:
    """Summaries through the translation pipeline's own manager and cache (they are taken from `pipeline`, so the
    two can never disagree on where models and cached outputs live)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.manager = pipeline.manager
        self.cache = pipeline.cache

    # -- public ----------------------------------------------------------------------------------------------
    def summarize(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
                  beam_size: int | None = None, options: SummaryOptions | None = None) -> list[SummaryResult]:
        """Summarize articles in any supported language (English passes through translation untouched).
        Per-article problems come back as `SummaryResult.error`."""
        options = options or SummaryOptions.from_settings(self.settings)
        if source not in SOURCE_CHOICES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCE_CHOICES)}, got '{source}'")
        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        if options.strategy == SUMMARIZE_THEN_TRANSLATE:
            picks = self.pick_sentences(texts, source, ids=ids, options=options)
            return self.finish_picks(picks, self.pipeline.translate(picks.texts, source, ids=picks.ids,
                                                                    beam_size=beam_size))
        return self.summarize_translations(self.pipeline.translate(texts, source, ids=ids, beam_size=beam_size),
                                           options)

    def summarize_translations(self, articles: Sequence[ArticleResult],
                               options: SummaryOptions | None = None) -> list[SummaryResult]:
        """translate_then_summarize for articles already translated (the bulk CLI has them in hand)."""
        options = options or SummaryOptions.from_settings(self.settings)
        if options.strategy != TRANSLATE_THEN_SUMMARIZE:
            raise InvalidInput("summarize_translations summarizes whole translations (translate_then_summarize)")
        started = time.perf_counter()
        results = [SummaryResult(a.id, options.strategy, a, error=a.error) for a in articles]
        jobs = []
        for result in results:
            text = result.article.translation
            if result.error is None and text is not None:
                jobs.append(_Job(result, text, options.word_limit(word_count(text))))
        try:
            self._summarize_english(jobs, options)
        except NewsMTError as exc:  # explicit method=abstractive with no usable model
            for job in jobs:
                job.result.error = exc
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        for result in results:
            result.elapsed_ms = elapsed
        return results

    # -- translate_then_summarize ----------------------------------------------------------------------------
    def _summarize_english(self, jobs: list[_Job], options: SummaryOptions) -> None:
        """Choose the engine, serve what the cache has, compute the rest, store it."""
        if not jobs:
            return
        method, model, fallback = self._choose(options.method)
        if method == "abstractive" and model is not None:
            try:
                self._run(jobs, options, "abstractive", model)
                return
            except ModelLoadError as exc:  # installed but unusable: auto still owes the user a summary
                if options.method != "auto":
                    raise
                fallback = str(exc)
        self._run(jobs, options, "extractive", None, fallback)

    def _choose(self, method: str) -> tuple[str, ResolvedModel | None, str | None]:
        """The engine to run and, for auto, why it is not the abstractive one. Resolution and the backend plan
        read only the disk, so a fully cached batch never loads the model."""
        if method == "extractive":
            return "extractive", None, None
        try:
            model = self.manager.resolve(SUMMARIZE_TASK)
            self.manager.variant(SUMMARIZE_TASK)  # NEWSMT_BACKEND=ctranslate2 also needs a converted copy
            return "abstractive", model, None
        except (ModelNotInstalled, ModelLoadError) as exc:
            if method == "abstractive":
                raise
            return "extractive", None, str(exc)

    def _run(self, jobs: list[_Job], options: SummaryOptions, method: str, model: ResolvedModel | None,
             fallback: str | None = None) -> None:
        for job in jobs:
            job.key = self._key(job, options, method, model)
        found = {key: entry for key, value in self.cache.get_many(job.key for job in jobs).items()
                 if (entry := _read_entry(value)) is not None}  # an unreadable entry is recomputed
        misses = list({job.key: job for job in jobs if job.key not in found}.values())  # same text: once
        if misses:
            produced = self._abstractive(misses) if method == "abstractive" else self._extractive(misses, options)
            self.cache.set_many({job.key: json.dumps({"summary": summary, "chunks": chunks}, ensure_ascii=False)
                                 for job, (summary, chunks) in zip(misses, produced, strict=True)})
            found.update({job.key: entry for job, entry in zip(misses, produced, strict=True)})
        computed = {job.key for job in misses}
        for job in jobs:
            result = job.result
            result.summary, result.chunks = found[job.key]
            result.chunked, result.cached = result.chunks > 1, job.key not in computed
            result.method, result.fallback = method, fallback
            result.engine = model.model_id if model is not None else EXTRACTIVE_ENGINE
            result.revision = model.revision if model is not None else LEXRANK_VERSION
            result.words = word_count(result.summary)

    def _key(self, job: _Job, options: SummaryOptions, method: str, model: ResolvedModel | None) -> str:
        settings: dict[str, Any] = {"method": method, "strategy": TRANSLATE_THEN_SUMMARIZE, "max_words": job.limit}
        if model is None:
            settings["max_sentences"] = options.max_sentences
            return cache_key("summary", SUMMARIZE_TASK, EXTRACTIVE_ENGINE, LEXRANK_VERSION, settings, job.text)
        settings.update(
            beam_size=self.settings.summary_beam_size,
            max_input_tokens=self.settings.summary_max_input_tokens,
            max_output_tokens=self.settings.max_output_tokens,
            length_penalty=LENGTH_PENALTY,
            no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
            min_length_fraction=MIN_LENGTH_FRACTION,
            tokens_per_word=TOKENS_PER_WORD,
            map_share=MAP_SHARE,
            variant=self.manager.variant(SUMMARIZE_TASK),
        )
        return cache_key("summary", SUMMARIZE_TASK, model.model_id, model.revision, settings, job.text)

    # -- engines ---------------------------------------------------------------------------------------------
    def _extractive(self, jobs: list[_Job], options: SummaryOptions) -> list[tuple[str, int]]:
        produced = []
        for job in jobs:
            sentences = english_sentences(job.text)
            chosen = select_sentences(sentences, max_sentences=options.max_sentences, max_words=job.limit)
            produced.append((fit_to_words([sentences[i] for i in chosen], job.limit, drop_unfinished=False), 1))
        return produced

    def _abstractive(self, jobs: list[_Job]) -> list[tuple[str, int]]:
        """Map-reduce over all jobs at once, round by round, so inputs of different articles share batches. A job
        whose sentences fit one window gets its final summary this round; the others get one summary per chunk,
        which become its sentences for the next round. The engine is leased only for its tokenizer here; the
        generation goes through the manager's batcher, shared with every other caller."""
        with self.manager.lease(SUMMARIZE_TASK) as engine:
            window = min(self.settings.summary_max_input_tokens, engine.max_positions)
            special = engine.count_tokens([""])[0]
            cap = min(self.settings.max_output_tokens, engine.max_positions - 2)
        map_settings = self._generation(min(cap, (window - special) // MAP_SHARE), window)
        summaries: dict[int, str] = {}
        first_chunks = [1] * len(jobs)
        units = {i: english_sentences(job.text) for i, job in enumerate(jobs)}
        level = 0
        while units:
            requests: list[tuple[str, GenerationSettings]] = []
            owners: list[tuple[int, bool]] = []
            for i, sentences in units.items():
                with self.manager.lease(SUMMARIZE_TASK) as engine:
                    chunks = self._pack(sentences, engine, window, special)
                if level > 0 and len(chunks) > 1 and len(chunks) >= len(sentences):  # would never finish
                    raise SummarizationFailed(f"chunk summaries of '{jobs[i].result.id}' do not shrink to fit the "
                                              f"{window}-token window (NEWSMT_SUMMARY_MAX_INPUT_TOKENS)")
                if len(chunks) == 1:
                    final = self._generation(min(cap, math.ceil(jobs[i].limit * TOKENS_PER_WORD)), window)
                    requests.append((chunks[0], final))
                    owners.append((i, True))
                else:
                    if level == 0:
                        first_chunks[i] = len(chunks)
                    requests.extend((chunk, map_settings) for chunk in chunks)
                    owners.extend((i, False) for _ in chunks)
            outputs = self._generate(requests)
            units = defaultdict(list)
            for (i, final_round), output in zip(owners, outputs, strict=True):
                if final_round:
                    summaries[i] = output
                else:
                    units[i].append(output)
            level += 1
        return [
            (fit_to_words(english_sentences(summaries[i]), job.limit, drop_unfinished=True), first_chunks[i])
            for i, job in enumerate(jobs)
        ]

    def _generation(self, max_new_tokens: int, window: int) -> GenerationSettings:
        return GenerationSettings(
            beam_size=self.settings.summary_beam_size,
            max_output_tokens=max_new_tokens,
            max_input_tokens=window,
            min_output_tokens=int(max_new_tokens * MIN_LENGTH_FRACTION),
            length_penalty=LENGTH_PENALTY,
            no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
        )

    def _pack(self, sentences: list[str], engine: Engine, window: int, special: int) -> list[str]:
        """Consecutive sentences joined into as few inputs as fit `window` tokens; a sentence longer than the
        window alone is split at clause or word boundaries first (never truncated)."""
        budget = window - special
        pieces: list[tuple[str, int]] = []
        for sentence, count in zip(sentences, engine.count_tokens(sentences), strict=True):
            if count - special + _JOIN_SLACK <= budget:
                pieces.append((sentence, count - special + _JOIN_SLACK))
                continue
            for piece in split_to_fit(sentence, window - _JOIN_SLACK, lambda s: engine.count_tokens([s])[0]):
                pieces.append((piece, engine.count_tokens([piece])[0] - special + _JOIN_SLACK))
        chunks: list[str] = []
        current: list[str] = []
        size = 0
        for piece, count in pieces:
            if current and size + count > budget:
                chunks.append(" ".join(current))
                current, size = [], 0
            current.append(piece)
            size += count
        if current:
            chunks.append(" ".join(current))
        return chunks

    def _generate(self, requests: list[tuple[str, GenerationSettings]]) -> list[str]:
        """One output per request; requests with the same settings go to the batcher together."""
        outputs = [""] * len(requests)
        groups: dict[GenerationSettings, list[int]] = defaultdict(list)
        for i, (_, gen) in enumerate(requests):
            groups[gen].append(i)
        for gen, members in groups.items():
            texts = [requests[i][0] for i in members]
            for i, output in zip(members, self.manager.batcher.generate(SUMMARIZE_TASK, texts, gen), strict=True):
                outputs[i] = output.best.text
        return outputs

    # -- summarize_then_translate ----------------------------------------------------------------------------
    def pick_sentences(self, texts: Sequence[str], source: str = "auto", *, ids: Sequence[str] | None = None,
                       options: SummaryOptions | None = None) -> SentencePicks:
        """summarize_then_translate, first half: the key source sentences of each article (LexRank on the Arabic
        or Hebrew itself), one per line, for the caller to translate with its own translate (the pipeline's, or
        the HTTP server's bounded one) and hand to `finish_picks`."""
        options = options or SummaryOptions.from_settings(self.settings, strategy=SUMMARIZE_THEN_TRANSLATE)
        picks = SentencePicks(time.perf_counter())
        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        for article_id, text in zip(ids, texts, strict=True):
            result = SummaryResult(article_id, SUMMARIZE_THEN_TRANSLATE, ArticleResult(id=article_id))
            picks.results.append(result)
            try:
                doc, languages = self.pipeline.prepare_document(text, source, result.article)
            except NewsMTError as exc:
                result.error = result.article.error = exc
                continue
            sentences = [s for p, lang in zip(doc.paragraphs, languages, strict=True) for s in split_sentences(p, lang)]
            limit = options.word_limit(sum(word_count(s) for s in sentences))
            chosen = select_sentences(sentences, max_sentences=options.max_sentences, max_words=limit)
            picks.texts.append("\n".join(sentences[i] for i in chosen))
            picks.ids.append(article_id)
            picks.limits.append(limit)
        return picks

    def finish_picks(self, picks: SentencePicks, translations: Sequence[ArticleResult]) -> list[SummaryResult]:
        """summarize_then_translate, second half: the translated picks (in `picks.texts` order) that fit the word
        limit, whole. No model runs here."""
        pending = [r for r in picks.results if r.error is None]
        for result, article, limit in zip(pending, translations, picks.limits, strict=True):
            result.article, result.error = article, article.error
            if article.ok:
                result.summary = fit_to_words([p.translation for p in article.paragraphs], limit,
                                              drop_unfinished=False)
                result.method, result.engine, result.revision = "extractive", EXTRACTIVE_ENGINE, LEXRANK_VERSION
                result.cached = article.cache_misses == 0
                result.words = word_count(result.summary)
        elapsed = round((time.perf_counter() - picks.started) * 1000, 1)
        for result in picks.results:
            result.elapsed_ms = elapsed
        return picks.results
