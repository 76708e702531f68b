"""Smoke test of the benchmark's own machinery (bench/), not a benchmark: no model is built and nothing is timed
against a threshold. It checks what the figures rest on: the corpus sentences are single, distinct segments, the
HTTP load client and the bare route work over a real uvicorn, and targets get the right verdicts."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from bench.corpus import SentenceSampler, article_segments, make_articles
from bench.http_load import BARE_FACTORY, drive, serve
from bench.prepare import worker_env
from bench.redis_cases import _seed
from bench.report import evaluate
from bench.servers import PAYLOAD_ENV
from service.cache.redis_backend import RedisCache
from service.cache.redis_link import RedisLink
from service.cache.segment_cache import SegmentCache
from service.testing.redis_server import RedisServer
from service.text.cleaning import split_sentences


def test_corpus_sentences_are_distinct_single_segments() -> None:
    sample = SentenceSampler("ar", random.Random(0))
    sentences = [sample() for _ in range(200)]
    assert len(set(sentences)) == len(sentences)
    assert all(split_sentences(s, "ar") == [s] for s in sentences)
    articles = make_articles(5)
    assert articles == make_articles(5)  # deterministic
    assert len(article_segments(articles)) == sum(a.count(".") for a in articles)


def test_load_client_against_bare_route(tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_bytes(b'{"results": [{"translation": "' + b"x" * 500 + b'"}]}')
    env = {**worker_env({}), PAYLOAD_ENV: str(payload)}
    with serve(BARE_FACTORY, env, tmp_path / "server.log") as server:
        once = drive(server.url, [b'{"text": "a"}', b'{"text": "b"}'], clients=2)
        timed = drive(server.url, [b'{"text": "a"}'], clients=4, seconds=0.3)
    assert once.requests == 2 and set(once.sizes) == {payload.stat().st_size}
    assert timed.requests > 4 and timed.summary()["p99_ms"] >= timed.summary()["p50_ms"]
    assert server.peak_rss_mb and server.peak_rss_mb > 10


def test_target_verdicts() -> None:
    results = {
        "naive": {"metrics": {"tokens_per_s": 100.0}},
        "ct2_b16": {"metrics": {"tokens_per_s": 800.0}},
        "ct2_b64": {"metrics": {"tokens_per_s": 1000.0}},
        "bulk_cold": {"metrics": {"tokens_per_s": 900.0, "seconds": 50.0}},
        "bulk_warm": {"metrics": {"seconds": 1.0}},
        "both_models": {"metrics": {"peak_rss_mb": 1000.0}},
        "bulk_warm_redis": {"metrics": {"seconds": 1.5}},
        "http_redis": {"metrics": {"diskcache": {"req_per_s": 1000.0, "p99_ms": 20.0},
                                   "redis": {"req_per_s": 900.0, "p99_ms": 30.0}}},
    }
    verdicts = {row["target"]: (row["verdict"], row["measured"], row["margin"]) for row in evaluate(results)}
    assert verdicts["bulk end to end / best raw engine call"] == ("PASS", 0.9, round(0.9 / 0.85, 3))
    assert verdicts["bulk end to end / naive loop"][0] == "MISS"
    assert verdicts["warm rerun speed-up over cold"] == ("MISS", 50.0, 0.5)
    assert verdicts["both models on CTranslate2: peak RSS"] == ("MISS", 1000.0, 0.8)
    assert verdicts["HTTP p99, warm clients"] == ("n/a", None, None)
    assert verdicts["cache-hit HTTP req/s: Redis / diskcache"] == ("PASS", 0.9, round(0.9 / 0.8, 3))
    assert verdicts["cache-hit HTTP p99: diskcache / Redis"][:2] == ("MISS", 0.667)
    assert verdicts["bulk warm rerun speed: Redis / diskcache"][:2] == ("MISS", 0.667)


def test_redis_cases_copy_diskcache_entries_and_size_them(redis_server: Callable[..., RedisServer],
                                                          tmp_path: Path) -> None:
    cache = SegmentCache.on_disk(tmp_path / "disk", 10**8)
    cache.set_many({"a" * 64: "a sentence", "b" * 64: '{"translation": "a sentence", "paragraphs": []}'})
    cache.get_many(["a" * 64])
    cache.close()  # writes the counters, which are not entries
    redis = redis_server()
    sizing = _seed(redis, tmp_path / "disk")
    assert (sizing["entries"], sizing["articles"], sizing["segments"]) == (2, 1, 1)
    assert sizing["used_memory_bytes"] > 0 and sizing["memory_usage_mean"]["segment"] > len("a sentence")
    shared = SegmentCache(RedisCache(RedisLink(redis.url, 1.0, 1.0)))
    assert shared.get_many(["a" * 64]) == {"a" * 64: "a sentence"}  # the same key and value through Redis


def test_peer_workload_and_segment_counts(tmp_path: Path) -> None:
    """The LibreTranslate comparison's texts (8, of at least 3 sentences each) and the segments each side decodes:
    newsmt's splitter and the regex the bench gives argos count nearly the same sentences."""
    import json

    from bench.peer import libretranslate_segments, newsmt_segments, peer_texts

    data = json.loads(peer_texts(tmp_path / "texts.json", 8).read_text(encoding="utf-8"))
    texts = data["texts"]
    assert len(texts) == 8 and all(newsmt_segments(t) >= 3 for t in texts)
    assert newsmt_segments(data["probe"]) == 1
    ours, theirs = sum(map(newsmt_segments, texts)), sum(map(libretranslate_segments, texts))
    assert 25 <= ours <= 35 and abs(ours - theirs) <= 3
