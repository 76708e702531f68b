"""The shared cache tier (NEWSMT_CACHE_URL) against the embedded diskcache, on the same workloads in the same run.

Each case starts a real redis-server on loopback (Debian's package, as the tests do) and fills it with the entries
the matching diskcache case already made: the same keys and the same values, so nothing is translated again and
the cases time lookups only. The copy also gives the sizing figures: bytes of Redis memory per cached entry and per
article.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import diskcache

from service.cache.backend import CACHE_SCHEMA_VERSION
from service.testing.redis_server import REDIS_SERVER, RedisServer

from .http_load import NEWSMT_FACTORY, LoadResult, drive, serve
from .measure import Context, Outcome
from .newsmt_cases import _request, _use_cache, corpus_articles, run_bulk

PREFIX = f"newsmt:{CACHE_SCHEMA_VERSION}:"
COPY_BATCH = 1000
#: Turns each HTTP server takes under the warm load (its share of `http_warm_seconds` split into this many windows).
ROUNDS = 5
#: The HTTP warm load is run against four servers taking turns, each on the same entries.
HTTP_SETUPS: dict[str, dict[str, str]] = {
    "diskcache": {},
    "redis": {"NEWSMT_CACHE_URL": "{url}"},
    "redis_no_memory_tier": {"NEWSMT_CACHE_URL": "{url}", "NEWSMT_CACHE_MEMORY_LIMIT": "0"},
    "diskcache_no_memory_tier": {"NEWSMT_CACHE_MEMORY_LIMIT": "0"},
}


@contextmanager
def _redis(ctx: Context, name: str) -> Iterator[RedisServer]:
    server = RedisServer(ctx.work_dir / name).start()
    try:
        yield server
    finally:
        server.stop()


def _seed(redis: RedisServer, directory: Path) -> dict[str, Any]:
    """Copy every newsmt entry of a diskcache directory into Redis; what they cost there."""
    client = redis.client()
    before = int(client.info("memory")["used_memory"])
    cache = diskcache.Cache(str(directory))
    sizes: dict[str, list[int]] = {"article": [], "segment": []}
    kinds: dict[str, str] = {}
    try:
        pipe = client.pipeline(transaction=False)
        for key in cache.iterkeys():
            value = cache.get(key)
            if not isinstance(value, str) or key.startswith("__newsmt_stats__"):
                continue
            pipe.set(PREFIX + key, value.encode("utf-8"))
            kinds[key] = "article" if value.startswith('{"translation"') else "segment"
            sizes[kinds[key]].append(len(value.encode("utf-8")))
            if len(pipe) >= COPY_BATCH:
                pipe.execute()
        pipe.execute()
    finally:
        cache.close()
    used = int(client.info("memory")["used_memory"]) - before
    usage: dict[str, list[int]] = {kind: [] for kind in sizes}
    for key, kind in kinds.items():
        usage[kind].append(int(client.memory_usage(PREFIX + key) or 0))
    articles = len(sizes["article"])
    return {
        "entries": len(kinds),
        "articles": articles,
        "segments": len(sizes["segment"]),
        "used_memory_bytes": used,
        "bytes_per_entry": round(used / len(kinds)),
        "bytes_per_article_with_its_segments": round(used / articles) if articles else None,
        "memory_usage_mean": {kind: round(statistics.fmean(v)) for kind, v in usage.items() if v},
        "value_bytes_mean": {kind: round(statistics.fmean(v)) for kind, v in sizes.items() if v},
    }


def _no_redis() -> str | None:
    return None if Path(REDIS_SERVER).is_file() else f"{REDIS_SERVER} is missing (apt-get install redis-server)"


def http_redis(ctx: Context) -> Outcome:
    """32 clients, warm (every request an article-cache hit), against four servers: diskcache and Redis, each with
    and without the in-process memory tier. The memory tier is on by default, so that pair is what users get;
    without it every hit is a lookup in the backend (SQLite, or one MGET over loopback). The four run side by side
    and take turns in short windows, `ROUNDS` times over, so that a change in what else the machine is doing falls
    on all of them alike."""
    if reason := _no_redis():
        return Outcome.skip(reason)
    source = ctx.work_dir / "http-cache"
    if not source.is_dir():
        return Outcome.skip("the http case did not run, so there is no cache to serve from")
    params = ctx.params
    requests = [_request(a) for a in corpus_articles(ctx)[:params.http_cold_articles]]
    loads: dict[str, list[LoadResult]] = {label: [] for label in HTTP_SETUPS}
    with _redis(ctx, "redis-http") as redis, ExitStack() as servers:
        sizing = _seed(redis, source)
        running = {}
        for label, extra in HTTP_SETUPS.items():
            env = {**_use_cache(ctx, "http-cache"), **{k: v.format(url=redis.url) for k, v in extra.items()}}
            server = servers.enter_context(serve(NEWSMT_FACTORY, env, ctx.work_dir / f"server-{label}.log"))
            running[label] = server
            drive(server.url, requests, params.http_clients)  # every article once: the memory tier is warm
        for _ in range(ROUNDS):
            for label, server in running.items():
                loads[label].append(drive(server.url, requests, params.http_clients,
                                          params.http_warm_seconds / ROUNDS))
    phases = {label: {**_pooled(runs), "peak_rss_mb": running[label].peak_rss_mb} for label, runs in loads.items()}
    redis_, disk = phases["redis"], phases["diskcache"]
    summary = (f"Redis {redis_['req_per_s']:,.0f} req/s p99 {redis_['p99_ms']:.1f} ms vs diskcache "
               f"{disk['req_per_s']:,.0f} req/s p99 {disk['p99_ms']:.1f} ms; no memory tier: Redis "
               f"{phases['redis_no_memory_tier']['req_per_s']:,.0f}, diskcache "
               f"{phases['diskcache_no_memory_tier']['req_per_s']:,.0f} req/s")
    notes = [f"{params.http_clients} clients; {ROUNDS} turns of {params.http_warm_seconds / ROUNDS:g} s per server; "
             "Redis on loopback; peak RSS is the Redis-backed server's (memory tier on)"]
    return Outcome({**phases, "sizing": sizing}, summary, notes, peak_rss_mb=redis_["peak_rss_mb"])


def _pooled(runs: list[LoadResult]) -> dict[str, float]:
    """One summary over several timed windows: all their requests over all their seconds."""
    pooled = LoadResult()
    for run in runs:
        pooled.latencies_ms += run.latencies_ms
        pooled.sizes += run.sizes
        pooled.seconds += run.seconds
    return pooled.summary()


def bulk_warm_redis(ctx: Context) -> Outcome:
    """`newsmt translate CORPUS --out DIR` again, every article a hit, with NEWSMT_CACHE_URL set: the rerun on
    another machine that shares the cache (an empty cache directory of its own, never read)."""
    if reason := _no_redis():
        return Outcome.skip(reason)
    source = ctx.work_dir / "bulk-cache"
    if not source.is_dir():
        return Outcome.skip("the bulk_cold case did not run, so there is no cache to copy")
    with _redis(ctx, "redis-bulk") as redis:
        sizing = _seed(redis, source)
        os.environ["NEWSMT_CACHE_URL"] = redis.url
        _use_cache(ctx, "bulk-cache-unused")
        outcome = run_bulk(ctx, ctx.work_dir / "bulk-out-warm-redis", warm=True)
    outcome.metrics["sizing"] = sizing
    outcome.notes.append(f"Redis memory: {sizing['bytes_per_entry']:,} bytes per entry, "
                         f"{sizing['bytes_per_article_with_its_segments']:,} per article with its sentences")
    return outcome
