"""Prometheus metrics for the HTTP service, fed by the pipeline's and the model manager's hooks.

Each app gets its own `CollectorRegistry` instead of the process-global default, so several apps in one process
(tests, or an embedding application) never collide on metric names. With `newsmt serve --workers N` every worker
process has its own registry: a scrape sees the worker that answered it.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.pipeline.translate import ArticleResult

#: Translation requests range from a cached lookup (milliseconds) to a long uncached article (minutes on a CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LOAD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's counters and histograms; `on_batch` and `on_load` plug into the ModelManager."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("newsmt_http_requests", "HTTP requests by route template, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("newsmt_http_request_duration_seconds", "HTTP request latency by route template.",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache_hits = Counter("newsmt_cache_hits", "Segments served from the translation cache.", registry=r)
        self.cache_misses = Counter("newsmt_cache_misses", "Segments that had to be translated.", registry=r)
        self.batch_segments = Histogram("newsmt_inference_batch_segments", "Segments per inference batch "
                                        "(the count is the number of model generate calls).", ["task"],
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_tokens = Counter("newsmt_inference_tokens", "Source tokens sent to the models.", ["task"],
                                    registry=r)
        self.model_load = Histogram("newsmt_model_load_seconds", "Time to load a model.", ["task"],
                                    buckets=LOAD_BUCKETS, registry=r)
        self.inflight = Gauge("newsmt_inflight_translations", "Translations and summaries running or queued now.",
                              registry=r)
        self.coalesced = Counter("newsmt_coalesced_requests", "Requests answered by joining an identical "
                                 "translation or summary already in flight.", registry=r)
        self.replica_waits = Counter("newsmt_replica_waits", "Translations this replica waited for while another "
                                     "replica (sharing NEWSMT_CACHE_URL) ran them; outcome=answered: its result "
                                     "came from the cache, own: translated here after all.", ["outcome"], registry=r)

    def on_batch(self, task: str, segments: int, tokens: int) -> None:
        self.batch_segments.labels(task).observe(segments)
        self.batch_tokens.labels(task).inc(tokens)

    def count_replica_wait(self, answered: bool) -> None:
        self.replica_waits.labels("answered" if answered else "own").inc()

    def on_load(self, task: str, seconds: float) -> None:
        self.model_load.labels(task).observe(seconds)

    def count_cache(self, results: Iterable[ArticleResult]) -> None:
        for result in results:
            self.cache_hits.inc(result.cache_hits)
            self.cache_misses.inc(result.cache_misses)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
