"""Dynamic batching across concurrent requests, on the tiny real models: shared batches, unchanged results,
fairness to small requests, budgets, and failures that reach their callers without hanging anyone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.config import Settings
from service.engines.base import Engine, GenerationSettings
from service.engines.batcher import DynamicBatcher, _Group, _Request, background_priority
from service.pipeline.translate import ArticleResult
from service.text.cleaning import clean_document, split_sentences
from tests.conftest import BatchLog, make_pipeline, seed, settings_for

AR = "translate:ar-en"
GEN = GenerationSettings(beam_size=1, max_output_tokens=8, max_input_tokens=100)


def _articles() -> list[str]:
    """Eight different articles: paragraphs of the seed articles with at least two sentences."""
    paragraphs = [
        p for name in ("000", "001", "002", "003", "004") for p in clean_document(seed(name)).paragraphs
        if len(split_sentences(p, "ar")) >= 2
    ]
    return paragraphs[:8]


def _in_threads(count: int, work: Callable[[int], object]) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_concurrent_requests_share_batches_and_get_sequential_results(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    articles = _articles()
    assert len(articles) == 8
    sequential, seq_batches = make_pipeline(settings_for(tmp_path / "seq", tiny_models))
    expected = [sequential.translate([text])[0] for text in articles]
    assert all(r.ok for r in expected)

    settings = settings_for(tmp_path / "conc", tiny_models, batch_max_wait_ms=200)
    concurrent, batches = make_pipeline(settings)
    concurrent.manager.engine(AR)
    concurrent.manager.engine("translate:he-en")
    got: dict[int, ArticleResult] = {}
    _in_threads(len(articles), lambda i: got.__setitem__(i, concurrent.translate([articles[i]])[0]))

    results = [got[i] for i in range(len(articles))]
    assert [r.translation for r in results] == [r.translation for r in expected]
    assert batches.total == seq_batches.total  # every segment inferred once either way...
    assert batches.batches < seq_batches.batches  # ...in fewer, fuller engine calls


def _engine_and_texts(settings: Settings) -> tuple[Engine, list[str]]:
    pipeline, _ = make_pipeline(settings)
    words = " ".join(clean_document(seed("001")).paragraphs).split()
    texts = [" ".join(words[i:i + 6]) for i in range(0, len(words) - 6)]  # many distinct short pieces
    return pipeline.manager.engine(AR), texts


def test_a_small_request_is_not_starved_by_a_huge_one(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    huge, small = texts[:120], texts[120:123]
    log = BatchLog()
    first_batch_done = threading.Event()

    def on_batch(task: str, segments: int, tokens: int) -> None:
        log(task, segments, tokens)
        first_batch_done.set()

    batcher = DynamicBatcher(max_batch=8, max_tokens=10_000, max_wait_seconds=0, on_batch=on_batch)
    outputs: dict[str, list[str]] = {}
    progress: dict[str, int] = {}

    def run_huge() -> None:
        outputs["huge"] = batcher.generate(AR, engine, huge, GEN)

    def run_small() -> None:
        first_batch_done.wait(timeout=60)
        progress["small_submitted"] = log.batches
        outputs["small"] = batcher.generate(AR, engine, small, GEN)
        progress["small"] = log.batches

    threads = [threading.Thread(target=run_huge), threading.Thread(target=run_small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert log.batches >= 120 // 8 + 1 and log.total == len(huge) + len(small)
    # The small request rides in the batch after the one running when it arrived, not after all 15 of the huge one.
    assert progress["small"] - progress["small_submitted"] <= 2
    assert outputs["small"] == engine.generate(small, GEN)
    assert outputs["huge"][:8] == engine.generate(huge[:8], GEN)


def test_a_lone_caller_gets_batches_of_the_configured_size_and_token_budget(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    texts = texts[:20]
    budget = 2 * max(engine.count_tokens(texts))  # room for two of the longest pieces
    for max_tokens in (100_000, budget):
        batches: list[tuple[int, int]] = []
        batcher = DynamicBatcher(max_batch=8, max_tokens=max_tokens, max_wait_seconds=0,
                                 on_batch=lambda task, n, tokens, batches=batches: batches.append((n, tokens)))
        assert batcher.generate(AR, engine, texts, GEN) == engine.generate(texts, GEN)
        assert sum(n for n, _ in batches) == len(texts)
        if max_tokens == budget:
            assert all(tokens <= budget for _, tokens in batches) and len(batches) >= len(texts) // 4
        else:
            assert [n for n, _ in batches] == [8, 8, 4]  # unchanged: batch_size pieces, shortest first


def test_a_failing_batch_fails_its_callers_and_the_next_request_still_runs(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    batcher = DynamicBatcher(max_batch=8, max_tokens=10_000, max_wait_seconds=0.05)
    broken = GenerationSettings(beam_size=1, max_output_tokens=0, max_input_tokens=100)  # generate rejects it
    failures: list[BaseException] = []

    def run(i: int) -> None:
        with pytest.raises(ValueError, match="max_new_tokens") as caught:
            batcher.generate(AR, engine, texts[i * 3:i * 3 + 3], broken)
        failures.append(caught.value)

    _in_threads(3, run)
    assert len(failures) == 3
    assert batcher.generate(AR, engine, texts[:3], GEN) == engine.generate(texts[:3], GEN)


def test_a_lone_request_never_waits_for_company(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    batcher = DynamicBatcher(max_batch=8, max_tokens=10_000, max_wait_seconds=30)  # would be felt if it waited
    started = time.monotonic()
    assert batcher.generate(AR, engine, texts[:3], GEN) == engine.generate(texts[:3], GEN)
    assert time.monotonic() - started < 15


def test_an_idle_engine_waits_for_a_request_still_being_prepared(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    log = BatchLog()
    batcher = DynamicBatcher(max_batch=8, max_tokens=10_000, max_wait_seconds=30, on_batch=log)
    preparing, outputs = threading.Event(), {}

    def late() -> None:
        with batcher.arriving():  # what the pipeline holds while it cleans, detects and looks an article up
            preparing.set()
            time.sleep(0.5)
            outputs["late"] = batcher.generate(AR, engine, texts[3:6], GEN)

    thread = threading.Thread(target=late)
    thread.start()
    preparing.wait(timeout=30)
    outputs["early"] = batcher.generate(AR, engine, texts[:3], GEN)
    thread.join(timeout=60)
    assert (log.batches, log.total) == (1, 6)  # one shared batch, not one each
    assert outputs == {"early": engine.generate(texts[:3], GEN), "late": engine.generate(texts[3:6], GEN)}


def test_interactive_pieces_go_first_and_background_ones_fill_the_rest(settings: Settings) -> None:
    engine, texts = _engine_and_texts(settings)
    batcher = DynamicBatcher(max_batch=8, max_tokens=10_000, max_wait_seconds=0)
    job, first, second = texts[:40], texts[40:43], texts[43:46]
    pieces: dict[str, list[str]] = {}
    job_started = threading.Event()

    def background() -> None:
        with background_priority():
            job_started.set()
            pieces["job"] = batcher.generate(AR, engine, job, GEN)

    def interactive(name: str, texts: list[str]) -> None:
        job_started.wait(timeout=60)
        pieces[name] = batcher.generate(AR, engine, texts, GEN)

    # Forming batches by hand (what the leader does) shows the order without racing the engine.
    group = _Group(AR)
    for request, is_background in ((job, True), (first, False), (second, False)):
        tokens = engine.count_tokens(request)
        group.requests.append(_Request(request, tokens, 0.0, order=sorted(range(len(request)),
                                       key=tokens.__getitem__), background=is_background))
    batch = batcher._take(group)
    assert set(first) | set(second) <= set(batch) and len(batch) == 8  # all six interactive pieces, then two
    assert len(set(batch) & set(job)) == 2  # of the job's: it fills the room they leave

    threads = [threading.Thread(target=background), threading.Thread(target=interactive, args=("first", first)),
               threading.Thread(target=interactive, args=("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert pieces == {"job": engine.generate(job, GEN), "first": engine.generate(first, GEN),
                      "second": engine.generate(second, GEN)}  # same outputs whatever the priority
