"""Bounded load test of the HTTP service: many concurrent connections for a fixed time against a real
`uvicorn service.api.app:create_app` on loopback, with cache hits and misses mixed over the native and the
LibreTranslate-compatible routes, and every answer checked.

    .venv/bin/python -m bench.load                                  # 64 connections for 60 s, the configured models
    .venv/bin/python -m bench.load --connections 16 --seconds 10 --json load.json

The server runs on the models NEWSMT_* configures, with a fresh cache of its own. The run fails (exit 1) when:

* any response is a 5xx, or a request times out or loses its connection: overload must be answered with 429 and
  Retry-After (clients here wait as told, then carry on);
* the same text is ever answered with two different translations: every 200, from either kind of route, hit or
  miss, must repeat the first answer the server gave for that text, and after the load every cold text is asked
  for once more (a cache hit by then) and must come back unchanged;
* more than `--max-reference-diff` of the distinct texts differ from the reference, an in-process pipeline over a
  cache of its own that translates every text first. Not zero, because batched fp32 inference can flip a near-tied
  token when a sentence is padded differently (batched with other neighbours); the tiny random-weight test models,
  whose logits are nearly tied everywhere, show it for about 1 sentence in 2,000. A result handed to the wrong
  request, or a corrupted one, would show as differences by the hundred;
* the server's RSS grows by more than `--max-rss-growth-mb` between the end of the warm-up and the end of the load.

Texts are the seed articles' paragraphs: a hot set, translated during the warm-up (cache hits afterwards), and a
cold pool of the same paragraphs with a number appended (one sentence, and the article, miss the cache). Cold texts
are used once each; when the pool runs out, picks fall back to hot texts. The figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.cache.segment_cache import SegmentCache
from service.config import Settings
from service.engines.manager import ModelManager
from service.pipeline.translate import Pipeline
from service.text.cleaning import clean_document

from .config import REPO_DIR
from .http_load import NEWSMT_FACTORY, serve
from .measure import percentile

SEEDS = REPO_DIR / "seeds"
HOT_TEXTS = 24
ROUTES = ("native", "native_batch", "libre_json", "libre_form")
CLIENT_TIMEOUT_S = 120.0
RSS_SAMPLE_S = 0.5
RSS_TIMELINE_S = 10.0  # the report keeps one RSS sample per this many seconds, to show growth levelling off


@dataclass
class LoadReport:
    connections: int
    seconds: float
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    cold_sent: int = 0
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    unexpected: list[str] = field(default_factory=list)  # answers other than 200 and 429
    transport_errors: list[str] = field(default_factory=list)
    inconsistencies: list[str] = field(default_factory=list)
    reference_differences: list[str] = field(default_factory=list)
    texts_checked: int = 0
    max_reference_diff: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    rss_after_warmup_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_timeline_mb: list[float] = field(default_factory=list)
    anon_after_warmup_mb: float = 0.0
    anon_after_mb: float = 0.0
    max_rss_growth_mb: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def ok(self) -> bool:
        return (not self.server_errors and not self.unexpected and not self.transport_errors
                and not self.inconsistencies and self.statuses[200] > 0
                and len(self.reference_differences) <= self.max_reference_diff * self.texts_checked
                and self.rss_after_mb - self.rss_after_warmup_mb <= self.max_rss_growth_mb)

    def summary(self) -> dict[str, Any]:
        ok = sorted(self.latencies_ms) or [0.0]
        return {
            "ok": self.ok, "connections": self.connections, "seconds": round(self.seconds, 1),
            "requests": self.requests, "requests_per_s": round(self.requests / self.seconds, 1),
            "statuses": dict(sorted(self.statuses.items())), "routes": dict(self.by_route),
            "cold_texts_answered": self.cold_sent,
            "server_cache_hits": int(self.cache_hits), "server_cache_misses": int(self.cache_misses),
            "p50_ms": round(percentile(ok, 50), 1), "p95_ms": round(percentile(ok, 95), 1),
            "p99_ms": round(percentile(ok, 99), 1), "max_ms": round(ok[-1], 1),
            "texts_checked": self.texts_checked, "inconsistencies": len(self.inconsistencies),
            "reference_differences": len(self.reference_differences), "unexpected": self.unexpected[:5],
            "transport_errors": self.transport_errors[:5], "examples": (self.inconsistencies
                                                                          + self.reference_differences)[:3],
            "rss_after_warmup_mb": self.rss_after_warmup_mb, "rss_peak_mb": self.rss_peak_mb,
            "rss_after_mb": self.rss_after_mb, "rss_growth_mb": round(self.rss_after_mb - self.rss_after_warmup_mb, 1),
            "rss_every_10s_mb": self.rss_timeline_mb,
            "anon_after_warmup_mb": self.anon_after_warmup_mb, "anon_after_mb": self.anon_after_mb,
        }


def paragraphs() -> list[str]:
    return [p for path in sorted(SEEDS.glob("*.txt")) for p in clean_document(path.read_text("utf-8")).paragraphs]


def workload(cold: int) -> tuple[list[str], list[str]]:
    """Hot texts (warmed up, then hits) and cold texts (each a paragraph with a number: new to the cache)."""
    source = paragraphs()
    return source[:HOT_TEXTS], [f"{source[i % len(source)]} {1000 + i}" for i in range(cold)]


def reference_translations(settings: Settings, texts: list[str]) -> dict[str, str]:
    """What an in-process pipeline with its own, empty cache makes of every text: the answers to expect."""
    with tempfile.TemporaryDirectory(prefix="newsmt-load-ref-") as scratch:
        reference = settings.model_copy(update={"cache_dir": Path(scratch)})
        cache = SegmentCache.on_disk(reference.cache_dir, reference.cache_size_limit)
        manager = ModelManager(reference)
        try:
            results = Pipeline(reference, manager, cache).translate(texts)
        finally:
            manager.close()
            cache.close()
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"the reference pipeline failed: {failed[0]}")
    return {text: str(r.translation) for text, r in zip(texts, results, strict=True)}


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1024**2, 1)


def anon_mb(pid: int) -> float:
    """Resident memory that is not file-backed: RSS also counts the cache database's pages, which SQLite maps into
    every connection (one per server thread) and which the kernel can drop at will."""
    memory = psutil.Process(pid).memory_info()
    return round((memory.rss - memory.shared) / 1024**2, 1)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


class Driver:
    """`connections` clients, each on its own keep-alive connection, looping until the deadline."""

    def __init__(self, url: str, reference: dict[str, str], hot: list[str], cold: list[str], miss_ratio: float,
                 report: LoadReport, seed: int):
        self.url, self.reference, self.hot, self.report = url, reference, hot, report
        self.cold = list(reversed(cold))  # popped from the end
        self.miss_ratio = miss_ratio
        self.rng = random.Random(seed)
        self.answers: dict[str, str] = {}  # the first translation the server gave for each text

    def check(self, where: str, text: str, translation: str) -> None:
        first = self.answers.get(text)
        if first is not None:
            if translation != first:
                self.report.inconsistencies.append(
                    f"{where}: {text[:60]!r} -> {translation[:60]!r}, first {first[:60]!r}")
            return
        self.answers[text] = translation  # answered for the first time: compare it with the reference
        self.report.texts_checked += 1
        self.report.cold_sent += text not in self.hot
        if translation != self.reference[text]:
            self.report.reference_differences.append(
                f"{where}: {text[:60]!r} -> {translation[:60]!r}, reference {self.reference[text][:60]!r}")

    def pick(self) -> str:
        if self.cold and self.rng.random() < self.miss_ratio:
            return self.cold.pop()
        return self.rng.choice(self.hot)

    async def one_request(self, client: httpx.AsyncClient) -> float:
        """Send one request of a random kind; returns how long to back off (Retry-After of a 429) or 0."""
        route = self.rng.choice(ROUTES)
        texts = [self.pick() for _ in range(3 if route == "native_batch" else 1)]
        if route.startswith("native"):
            body: dict[str, Any] = {"texts": texts} if route == "native_batch" else {"text": texts[0]}
            request = client.post("/v1/translate", json=body)
        elif route == "libre_json":
            request = client.post("/translate", json={"q": texts[0], "source": "auto", "target": "en"})
        else:
            request = client.post("/translate", data={"q": texts[0], "source": "auto", "target": "en"})
        sent = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError as exc:  # time-outs and dropped connections: never acceptable
            self.report.transport_errors.append(f"{route}: {type(exc).__name__}: {exc}")
            return 0.0
        self.report.requests += 1
        self.report.statuses[response.status_code] += 1
        self.report.by_route[route] += 1
        if response.status_code == 429:  # not served: cold texts go back to the pool
            self.cold.extend(text for text in texts if text not in self.hot)
            return float(response.headers.get("Retry-After", "1"))
        if response.status_code != 200:
            self.report.unexpected.append(f"{route}: {response.status_code} {response.text[:200]}")
            return 0.0
        self.report.latencies_ms.append((time.perf_counter() - sent) * 1000)
        body = response.json()
        got = [r["translation"] for r in body["results"]] if route.startswith("native") else [body["translatedText"]]
        for text, translation in zip(texts, got, strict=True):
            self.check(route, text, translation)
        return 0.0

    def recheck(self, texts: list[str]) -> None:
        """Ask for `texts` again, 16 to a request: each must come back exactly as first answered."""
        for first in range(0, len(texts), 16):
            chunk = texts[first:first + 16]
            response = httpx.post(f"{self.url}/v1/translate", json={"texts": chunk}, timeout=CLIENT_TIMEOUT_S)
            if response.status_code != 200:
                self.report.unexpected.append(f"recheck: {response.status_code} {response.text[:200]}")
                continue
            for text, result in zip(chunk, response.json()["results"], strict=True):
                self.check("recheck", text, result["translation"])

    async def client_loop(self, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=CLIENT_TIMEOUT_S,
                                     limits=httpx.Limits(max_connections=1)) as client:
            while time.perf_counter() < deadline:
                backoff = await self.one_request(client)
                if backoff:
                    await asyncio.sleep(min(backoff, max(0.0, deadline - time.perf_counter())))

    async def run(self, connections: int, seconds: float, pid: int) -> None:
        deadline = time.perf_counter() + seconds

        async def sample_rss() -> None:
            started = time.perf_counter()
            while time.perf_counter() < deadline:
                rss = rss_mb(pid)
                self.report.rss_peak_mb = max(self.report.rss_peak_mb, rss)
                if time.perf_counter() - started >= RSS_TIMELINE_S * len(self.report.rss_timeline_mb):
                    self.report.rss_timeline_mb.append(rss)
                await asyncio.sleep(RSS_SAMPLE_S)

        await asyncio.gather(sample_rss(), *(self.client_loop(deadline) for _ in range(connections)))


def run_load(settings: Settings, env: dict[str, str], *, connections: int = 64, seconds: float = 60.0,
             miss_ratio: float = 0.3, cold: int = 512, max_rss_growth_mb: float = 200.0,
             max_reference_diff: float = 0.005, seed: int = 0, log: Path | None = None) -> LoadReport:
    """Start the server on `env` (whose NEWSMT_* must describe `settings`), warm it up, load it, report."""
    hot, cold_texts = workload(cold)
    reference = reference_translations(settings, hot + cold_texts)
    report = LoadReport(connections=connections, seconds=seconds, max_rss_growth_mb=max_rss_growth_mb,
                        max_reference_diff=max_reference_diff)
    with tempfile.TemporaryDirectory(prefix="newsmt-load-") as scratch, \
            serve(NEWSMT_FACTORY, env, log or Path(scratch) / "server.log") as server:
        driver = Driver(server.url, reference, hot, cold_texts, miss_ratio, report, seed)
        driver.recheck(hot)  # warm-up: models loaded, the hot set cached (and checked)
        report.rss_after_warmup_mb = report.rss_peak_mb = rss_mb(server.process.pid)
        report.anon_after_warmup_mb = anon_mb(server.process.pid)
        hits, misses = metric(server.url, "newsmt_cache_hits_total"), metric(server.url, "newsmt_cache_misses_total")
        started = time.perf_counter()
        asyncio.run(driver.run(connections, seconds, server.process.pid))
        report.seconds = time.perf_counter() - started
        report.rss_after_mb, report.anon_after_mb = rss_mb(server.process.pid), anon_mb(server.process.pid)
        report.cache_hits = metric(server.url, "newsmt_cache_hits_total") - hits
        report.cache_misses = metric(server.url, "newsmt_cache_misses_total") - misses
        driver.recheck([text for text in cold_texts if text in driver.answers])  # hits now: unchanged?
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--miss-ratio", type=float, default=0.3, help="share of picks that are cold texts")
    parser.add_argument("--cold", type=int, default=512, help="cold texts available (each is sent once)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=200.0)
    parser.add_argument("--max-reference-diff", type=float, default=0.005,
                        help="share of distinct texts allowed to differ from the in-process reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsmt-load-cache-") as cache_dir:
        # The server's own fresh cache, and a short Retry-After so that clients told to wait come back soon.
        overrides = {"cache_dir": cache_dir, "overload_retry_after_seconds": "1"}
        env = {**os.environ, **{f"NEWSMT_{k.upper()}": v for k, v in overrides.items()}}
        settings = Settings(**overrides)  # type: ignore[arg-type]
        report = run_load(settings, env, connections=args.connections, seconds=args.seconds,
                          miss_ratio=args.miss_ratio, cold=args.cold, max_rss_growth_mb=args.max_rss_growth_mb,
                          max_reference_diff=args.max_reference_diff, seed=args.seed)
    figures = json.dumps(report.summary(), indent=2)
    print(figures)
    if args.json:
        args.json.write_text(figures + "\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
