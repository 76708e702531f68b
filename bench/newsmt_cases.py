"""Cases that run newsmt itself: the bulk CLI, the HTTP server, and both translation models loaded at once.

newsmt is configured only through NEWSMT_* variables (the runner puts them in the worker's environment), exactly as
a user would configure it; each case only picks its own cache directory.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from .config import OUTPUT_TOKENS
from .http_load import BARE_FACTORY, NEWSMT_FACTORY, drive, serve, timed_drive
from .measure import Context, Outcome, peak_rss_mb
from .servers import PAYLOAD_ENV

BARE_PAYLOAD_FILE = "bare-payload.json"


def _use_cache(ctx: Context, name: str) -> dict[str, str]:
    """Point this process (and the servers it starts) at cache directory `name` under the run's work dir."""
    os.environ["NEWSMT_CACHE_DIR"] = str(ctx.work_dir / name)
    return dict(os.environ)


def corpus_articles(ctx: Context) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(ctx.corpus_dir.glob("*.txt"))]


def _request(text: str) -> bytes:
    return json.dumps({"text": text, "source": "auto"}, ensure_ascii=False).encode()


def _no_http_app() -> str | None:
    """Why the HTTP cases cannot run, if they cannot: the server lives in service/api/app.py."""
    found = importlib.util.find_spec("service.api.app")
    return None if found else "service/api/app.py (the HTTP server) does not exist"


# -- bulk CLI ------------------------------------------------------------------------------------------------------
def bulk(ctx: Context, *, warm: bool) -> Outcome:
    """`newsmt translate CORPUS --out DIR` through the real typer command, timed from after the imports (reported
    apart) to its return: model load, cleaning, language id, cache, inference and writing every output file."""
    _use_cache(ctx, "bulk-cache")
    return run_bulk(ctx, ctx.work_dir / ("bulk-out-warm" if warm else "bulk-out-cold"), warm=warm)


def run_bulk(ctx: Context, out: Path, *, warm: bool) -> Outcome:
    """The bulk command over the corpus into `out`, with whatever cache NEWSMT_* in this process's environment
    names; `warm`: report it as a rerun (articles/s) rather than a first run (tokens/s)."""
    started = time.perf_counter()
    from service.cli import app

    imported = time.perf_counter()
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = app(["translate", str(ctx.corpus_dir), "--out", str(out), "--no-progress"], standalone_mode=False)
    seconds = time.perf_counter() - imported
    if code:
        raise RuntimeError(f"newsmt translate exited with {code}: {printed.getvalue()[-2000:]}")
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} articles failed, e.g. {failed[0].get('error')}")
    loaded = re.search(r"models loaded: (\S+)", printed.getvalue())
    translated = sum(r["cache_misses"] for r in records)
    metrics: dict[str, Any] = {
        "articles": len(records),
        "segments": sum(r["segments"] for r in records),
        "cache_hits": sum(r["cache_hits"] for r in records),
        "cache_misses": translated,
        "models_loaded": loaded.group(1) if loaded else "?",
        "import_s": round(imported - started, 3),
        "seconds": round(seconds, 3),
        "articles_per_s": round(len(records) / seconds, 2),
        "backend": ctx.newsmt_backend,
    }
    if warm:
        summary = (f"{seconds:.2f} s, {metrics['articles_per_s']:,.0f} articles/s, "
                   f"{metrics['cache_hits']}/{metrics['segments']} segments cached, models loaded: "
                   f"{metrics['models_loaded']}")
        return Outcome(metrics, summary)
    metrics["output_tokens"] = translated * OUTPUT_TOKENS
    metrics["tokens_per_s"] = round(translated * OUTPUT_TOKENS / seconds, 1)
    notes = [f"output tokens = {translated} segments translated x {OUTPUT_TOKENS} (length forced by the model's "
             "bias, checked in the raw cases)"]
    if translated != ctx.corpus_segments:
        notes.append(f"the pipeline translated {translated} segments, the corpus split gives {ctx.corpus_segments}")
    summary = (f"{metrics['tokens_per_s']:,.0f} tok/s ({metrics['articles']} articles, {translated} segments, "
               f"{seconds:.1f} s, {ctx.newsmt_backend})")
    return Outcome(metrics, summary, notes)


# -- HTTP ----------------------------------------------------------------------------------------------------------
def http_newsmt(ctx: Context) -> Outcome:
    """32 clients against `newsmt` over loopback: distinct articles once each (cold cache, model already loaded
    by a warm-up request), then the same articles again and again (every one an article-cache hit)."""
    if reason := _no_http_app():
        return Outcome.skip(reason)
    params = ctx.params
    env = _use_cache(ctx, "http-cache")
    articles = corpus_articles(ctx)
    requests = [_request(a) for a in articles[:params.http_cold_articles]]
    with serve(NEWSMT_FACTORY, env, ctx.work_dir / "server-newsmt.log") as server:
        drive(server.url, [_request(articles[-1])], 1)
        cold = drive(server.url, requests, params.http_clients)
        warm, cpu_ms = timed_drive(server, requests, params.http_clients, params.http_warm_seconds)
    # The bare route answers with a real response of median size, so both servers move the same bytes.
    median = sorted(warm.bodies.values(), key=len)[len(warm.bodies) // 2]
    (ctx.work_dir / BARE_PAYLOAD_FILE).write_bytes(median)
    segments = sum(json.loads(body)["usage"]["segments"] for body in cold.bodies.values())
    cold_figures = {**cold.summary(), "segments": segments,
                    "tokens_per_s": round(segments * OUTPUT_TOKENS / cold.seconds, 1)}
    warm_figures = {**warm.summary(), "server_cpu_ms_per_request": cpu_ms}
    metrics = {"cold": cold_figures, "warm": warm_figures, "bare_payload_bytes": len(median),
               "backend": ctx.newsmt_backend}
    summary = (f"cold {cold_figures['req_per_s']:,.1f} req/s (p50 {cold_figures['p50_ms']:,.0f} ms, "
               f"p99 {cold_figures['p99_ms']:,.0f} ms); warm {warm_figures['req_per_s']:,.0f} req/s "
               f"(p50 {warm_figures['p50_ms']:.1f} ms, p99 {warm_figures['p99_ms']:.1f} ms, "
               f"{cpu_ms:.2f} ms server CPU each)")
    return Outcome(metrics, summary, [f"{params.http_clients} clients; peak RSS is the server's"],
                   peak_rss_mb=server.peak_rss_mb)


def http_bare(ctx: Context) -> Outcome:
    """The same warm load against a FastAPI route that returns a stored newsmt response and does nothing else."""
    payload = ctx.work_dir / BARE_PAYLOAD_FILE
    if not payload.is_file():
        return Outcome.skip("the newsmt HTTP case did not run, so there is no response payload to mirror")
    env = {**os.environ, PAYLOAD_ENV: str(payload)}
    requests = [_request(a) for a in corpus_articles(ctx)[:ctx.params.http_cold_articles]]
    with serve(BARE_FACTORY, env, ctx.work_dir / "server-bare.log") as server:
        drive(server.url, requests[:1], 1)
        warm, cpu_ms = timed_drive(server, requests, ctx.params.http_clients, ctx.params.http_warm_seconds)
    metrics = {**warm.summary(), "server_cpu_ms_per_request": cpu_ms, "payload_bytes": payload.stat().st_size}
    summary = (f"{metrics['req_per_s']:,.0f} req/s (p50 {metrics['p50_ms']:.1f} ms, p99 {metrics['p99_ms']:.1f} ms, "
               f"{cpu_ms:.2f} ms server CPU each)")
    return Outcome(metrics, summary, ["peak RSS is the server's"], peak_rss_mb=server.peak_rss_mb)


def http_concurrency(ctx: Context) -> Outcome:
    """N single-article requests one after another, then the same N at once, each against a fresh server and an
    empty cache (the model is loaded first by a warm-up request on another article)."""
    if reason := _no_http_app():
        return Outcome.skip(reason)
    count = ctx.params.concurrent_requests
    articles = corpus_articles(ctx)
    requests = [_request(a) for a in articles[:count]]
    seconds: dict[str, float] = {}
    peaks: list[float] = []
    for mode, clients in (("sequential", 1), ("concurrent", count)):
        env = _use_cache(ctx, f"concurrency-cache-{mode}")
        with serve(NEWSMT_FACTORY, env, ctx.work_dir / f"server-{mode}.log") as server:
            drive(server.url, [_request(articles[-1])], 1)
            seconds[mode] = drive(server.url, requests, clients).seconds
        peaks.append(server.peak_rss_mb or 0.0)
    speedup = seconds["sequential"] / seconds["concurrent"]
    metrics = {"requests": count, "sequential_s": round(seconds["sequential"], 3),
               "concurrent_s": round(seconds["concurrent"], 3), "speedup": round(speedup, 2),
               "backend": ctx.newsmt_backend}
    summary = (f"{count} articles: sequential {seconds['sequential']:.1f} s, concurrent {seconds['concurrent']:.1f} s "
               f"({speedup:.2f}x)")
    return Outcome(metrics, summary, ["peak RSS is the larger server's"], peak_rss_mb=max(peaks))


# -- memory --------------------------------------------------------------------------------------------------------
def both_models(ctx: Context) -> Outcome:
    """One newsmt process translating an Arabic and a Hebrew article, so both models are loaded on CTranslate2:
    the process's peak RSS is what a server holding both costs."""
    if not ctx.newsmt_ct2:
        return Outcome.skip("newsmt's CTranslate2 backend is not available")
    _use_cache(ctx, "both-models-cache")
    from service.cache.segment_cache import SegmentCache
    from service.config import Settings
    from service.engines.manager import ModelManager
    from service.pipeline.translate import Pipeline

    from .corpus import make_articles

    settings = Settings()
    manager = ModelManager(settings)
    cache = SegmentCache.from_settings(settings)
    articles = [corpus_articles(ctx)[0], make_articles(1, "he")[0]]
    results = Pipeline(settings, manager, cache).translate(articles)
    failed = [str(r.error) for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"translation failed: {failed}")
    loaded = {str(m["task"]): str(m["backend"]) for m in manager.loaded()}
    rss = peak_rss_mb()
    summary = f"{rss:,.0f} MB peak RSS with {', '.join(f'{t} on {b}' for t, b in sorted(loaded.items()))}"
    return Outcome({"loaded": loaded, "peak_rss_mb": rss}, summary, peak_rss_mb=rss)
