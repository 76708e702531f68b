"""Summaries end to end on tiny real models: a BART summarizer through the real manager, LexRank, the shared cache,
and the CLI as a subprocess on a machine that has only the translation models."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from service.cache.segment_cache import SegmentCache
from service.config import SUMMARIZE_TASK, Settings
from service.engines.manager import ModelManager
from service.errors import InvalidInput, ModelNotInstalled
from service.pipeline.extractive import word_count
from service.pipeline.summarize import ELLIPSIS, Summarizer, SummaryOptions
from service.pipeline.translate import Pipeline
from service.testing.tiny_models import MAX_POSITIONS, english_corpus
from tests.conftest import SEEDS, BatchLog, seed, settings_for
from tests.test_cli import SEED_IDS, newsmt, records

INSTALL_HINT = "newsmt models pull summarize"
SHORT_ENGLISH = "The minister met his counterpart in Moscow on Monday.\n\nBoth sides discussed trade and energy."


def summarizer_for(settings: Settings) -> tuple[Summarizer, BatchLog, BatchLog]:
    """A summarizer over a fresh pipeline (as a new process would build it), with its translation and
    summarization batches recorded."""
    translations, summaries = BatchLog(), BatchLog()

    def on_batch(task: str, segments: int, tokens: int) -> None:
        (summaries if task == SUMMARIZE_TASK else translations)(task, segments, tokens)

    manager = ModelManager(settings, on_batch=on_batch)
    return Summarizer(Pipeline(settings, manager, SegmentCache.from_settings(settings))), translations, summaries


@pytest.fixture
def with_bart(tmp_path: Path, tiny_models: dict[str, Path], tiny_bart: Path) -> Settings:
    return settings_for(tmp_path, tiny_models, summary_model=str(tiny_bart), summary_beam_size=1)


def options(settings: Settings, **overrides: object) -> SummaryOptions:
    return SummaryOptions.from_settings(settings, **overrides)  # type: ignore[arg-type]


def test_abstractive_summary_of_an_arabic_article_through_the_manager(with_bart: Settings, tiny_bart: Path) -> None:
    summarizer, _, summaries = summarizer_for(with_bart)
    [result] = summarizer.summarize([seed("001")])
    assert result.ok, result.error
    assert (result.method, result.fallback) == ("abstractive", None)
    assert Path(str(result.engine)) == tiny_bart.resolve() and str(result.revision).startswith("sha256:")
    assert result.article.detected_language == "ar" and result.article.translation
    assert result.summary and result.summary not in result.article.translation  # generated, not copied
    assert result.words == word_count(result.summary) <= with_bart.summary_max_words
    assert summaries.segments["summarize"] > 0
    assert {m["task"] for m in summarizer.manager.loaded()} == {"translate:ar-en", "summarize"}


def test_short_input_is_one_model_call(with_bart: Settings) -> None:
    summarizer, translations, summaries = summarizer_for(with_bart)
    [result] = summarizer.summarize([SHORT_ENGLISH], source="en")
    assert result.ok and (result.chunked, result.chunks) == (False, 1)
    assert (summaries.batches, summaries.total, translations.total) == (1, 1, 0)


def test_input_longer_than_the_window_is_summarized_map_reduce(with_bart: Settings, tiny_bart: Path) -> None:
    text = " ".join(english_corpus())
    tokens = len(AutoTokenizer.from_pretrained(tiny_bart)(text)["input_ids"])
    assert tokens > 3 * MAX_POSITIONS
    summarizer, _, summaries = summarizer_for(with_bart)
    [result] = summarizer.summarize([text], source="en")
    assert result.ok, result.error
    assert result.chunked and result.chunks >= math.ceil(tokens / MAX_POSITIONS)
    assert summaries.total > result.chunks  # every chunk, then the summary of their summaries
    assert result.summary and word_count(result.summary) <= with_bart.summary_max_words


def test_summary_batches_go_through_the_shared_batcher_and_obey_its_token_budget(
    tmp_path: Path, tiny_models: dict[str, Path], tiny_bart: Path
) -> None:
    budget = 2 * MAX_POSITIONS  # two full windows: a map round of four or more chunks needs two batches or more
    settings = settings_for(tmp_path, tiny_models, summary_model=str(tiny_bart), summary_beam_size=1,
                            batch_max_tokens=budget)
    summarizer, _, summaries = summarizer_for(settings)
    [result] = summarizer.summarize([" ".join(english_corpus())], source="en")
    assert result.ok and result.chunks >= 4, result.error
    assert summaries.batches >= 3  # with the default budget: one batch for the chunks, one for the final summary
    assert all(texts == 1 or tokens <= budget for _, texts, tokens in summaries.log)


def test_one_sentence_longer_than_the_window_is_split_not_truncated(with_bart: Settings) -> None:
    run_on = ", ".join(s.rstrip(".") for s in english_corpus()) + "."  # one 400-word sentence
    summarizer, _, _ = summarizer_for(with_bart)
    [result] = summarizer.summarize([run_on], source="en")
    assert result.ok and result.chunked, result.error


def test_repeat_is_served_from_cache_with_zero_model_calls(with_bart: Settings) -> None:
    texts = [seed("002"), SHORT_ENGLISH]
    first, _, _ = summarizer_for(with_bart)
    cold = first.summarize(texts)
    assert not any(r.cached for r in cold)
    second, translations, summaries = summarizer_for(with_bart)
    warm = second.summarize(texts)
    assert [r.summary for r in warm] == [r.summary for r in cold]
    assert all(r.cached and r.method == "abstractive" for r in warm)
    assert (second.manager.load_count, summaries.total, translations.total) == (0, 0, 0)
    [shorter] = second.summarize(texts[:1], options=options(with_bart, max_words=10))
    assert not shorter.cached and summaries.total > 0  # the length settings are part of the key
    assert shorter.summary is not None and word_count(shorter.summary) <= 10


def test_auto_falls_back_to_extractive_when_the_model_is_missing(settings: Settings) -> None:
    summarizer, _, summaries = summarizer_for(settings)
    [result] = summarizer.summarize([seed("003")])
    assert result.ok, result.error
    assert (result.method, result.engine) == ("extractive", "lexrank")
    assert result.fallback is not None and INSTALL_HINT in result.fallback
    assert result.summary and result.article.translation
    words = set(result.summary.removesuffix(ELLIPSIS).split())
    assert words <= set(result.article.translation.split())  # sentences of the translation, nothing invented
    assert result.words <= settings.summary_max_words
    assert summaries.total == 0 and "summarize" not in {m["task"] for m in summarizer.manager.loaded()}
    [again] = summarizer.summarize([seed("003")])
    assert again.cached and again.summary == result.summary


def test_explicit_abstractive_without_the_model_names_the_install_command(settings: Settings) -> None:
    summarizer, _, _ = summarizer_for(settings)
    [result] = summarizer.summarize([seed("004")], options=options(settings, method="abstractive"))
    assert isinstance(result.error, ModelNotInstalled) and INSTALL_HINT in str(result.error)
    assert result.summary is None and result.article.ok  # the translation itself never needs the summarizer


def test_auto_falls_back_when_the_model_cannot_load(tmp_path: Path, tiny_models: dict[str, Path],
                                                    tiny_bart: Path) -> None:
    broken = shutil.copytree(tiny_bart, tmp_path / "broken-bart")
    (broken / "model.safetensors").write_bytes(b"not weights")
    settings = settings_for(tmp_path, tiny_models, summary_model=str(broken))
    summarizer, _, _ = summarizer_for(settings)
    [result] = summarizer.summarize([SHORT_ENGLISH], source="en")
    assert result.ok and result.method == "extractive"
    assert result.fallback is not None and "cannot load" in result.fallback


def test_summarize_then_translate_translates_only_the_picked_sentences(settings: Settings) -> None:
    summarizer, translations, _ = summarizer_for(settings)
    chosen = options(settings, strategy="summarize_then_translate", max_sentences=2, max_words=60)
    [result] = summarizer.summarize([seed("002")], options=chosen)
    assert result.ok, result.error
    assert (result.method, result.strategy) == ("extractive", "summarize_then_translate")
    assert result.article.detected_language == "ar"
    assert 1 <= result.article.segments <= 2 and result.article.cache_misses == result.article.segments
    assert result.summary and result.words <= 60
    assert result.summary in " ".join(p.translation for p in result.article.paragraphs)
    picked_work = translations.total  # pieces: a sentence over max_input_tokens is sent in parts
    [full] = summarizer.summarize([seed("002")])  # the whole article: 20 sentences, the picked ones cached
    assert full.article.segments == 20 and full.article.cache_hits == result.article.segments
    assert translations.total - picked_work > 4 * picked_work


def test_ratio_tightens_the_word_limit(settings: Settings) -> None:
    summarizer, _, _ = summarizer_for(settings)
    [result] = summarizer.summarize([seed("001")], options=options(settings, method="extractive", ratio=0.05))
    assert result.ok and result.article.translation
    assert result.words <= math.ceil(0.05 * word_count(result.article.translation))


def test_invalid_choices_are_refused(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="method must be one of"):
        options(settings, method="magic")
    with pytest.raises(InvalidInput, match="summarize_then_translate"):
        options(settings, method="abstractive", strategy="summarize_then_translate")
    with pytest.raises(InvalidInput, match="ratio"):
        options(settings, ratio=1.5)


def test_cli_translate_summarizes_every_seed_with_only_translation_models(settings: Settings,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = newsmt(["translate", str(SEEDS), "--out", str(out), "--summarize"], settings)
    assert run.returncode == 0, run.stderr
    assert "translated 5/5 articles" in run.stdout and "summaries by: lexrank 5" in run.stdout
    results = records(out)
    assert sorted(results) == SEED_IDS
    for article_id, record in results.items():
        summary = (out / f"{article_id}.summary.txt").read_text(encoding="utf-8")
        assert summary == record["summary"] + "\n" and summary.strip()
        assert (out / f"{article_id}.en.txt").is_file() and record["summary_output"] == f"{article_id}.summary.txt"
        info = record["summarizer"]
        assert (info["method"], info["engine"], info["cached"]) == ("extractive", "lexrank", False)
        assert INSTALL_HINT in info["fallback"] and info["words"] <= settings.summary_max_words
    again = newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "again"), "--summarize"], settings)
    assert again.returncode == 0 and "models loaded: none" in again.stdout, again.stderr
    assert all(r["summarizer"]["cached"] for r in records(tmp_path / "again").values())


def test_cli_summarize_writes_only_summaries(tmp_path: Path, tiny_models: dict[str, Path], tiny_bart: Path) -> None:
    settings = settings_for(tmp_path, tiny_models, summary_model=str(tiny_bart), summary_beam_size=1)
    out = tmp_path / "out"
    run = newsmt(["summarize", str(SEEDS / f"{SEED_IDS[1]}.txt"), str(SEEDS / f"{SEED_IDS[0]}.txt"),
                  "--out", str(out), "--max-words", "40"], settings)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{SEED_IDS[0]}.summary.txt", f"{SEED_IDS[1]}.summary.txt", "results.jsonl"])
    for record in records(out).values():
        assert record["summarizer"]["method"] == "abstractive" and record["summary"]
        assert Path(record["summarizer"]["engine"]) == tiny_bart.resolve()
    bad = newsmt(["summarize", str(SEEDS), "--out", str(out), "--strategy", "nope"], settings)
    assert bad.returncode == 2 and "strategy must be one of" in bad.stderr


def test_cli_models_list_shows_the_optional_summarizer(settings: Settings) -> None:
    listing = newsmt(["models", "list", "--json"], settings)
    rows = {row["task"]: row for row in json.loads(listing.stdout)}
    assert rows["summarize"]["installed"] is False and INSTALL_HINT in rows["summarize"]["problem"]
    assert rows["translate:ar-en"]["installed"] and rows["translate:he-en"]["installed"]
