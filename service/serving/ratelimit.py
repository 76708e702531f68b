"""Per-caller rate limiting: one token bucket per API key (or per client address when the server has no keys).

Why a token bucket: it allows a client's whole minute of requests at once (a newsroom tool translating a page of
headlines) and then meters it to the sustained rate, and it needs two numbers per caller, no timers and no
background task. Why in-process: newsmt is one process per machine (each `--workers` process keeps its own buckets,
as it keeps its own in-flight limit); a shared limiter would need a shared store for no gain at this scale.

Callers are identified by a digest of their key, never the key itself, so no raw key is kept in memory longer than
the request. The table of buckets is bounded: beyond `max_callers` the least recently seen caller is forgotten,
which can only ever give that caller a fresh (full) bucket, never refuse anyone wrongly.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import RateLimited

#: Callers remembered at once; at the default of 10,000 the table stays under a few MB.
MAX_CALLERS = 10_000


def key_identity(api_key: str) -> str:
    """The bucket name for an API key: a digest, so the limiter never holds the key itself."""
    return "key:" + hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def address_identity(host: str | None) -> str:
    return f"ip:{host or 'unknown'}"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` requests per caller per minute, up to `per_minute` at once; 0 switches limiting off."""

    def __init__(self, per_minute: int, max_callers: int = MAX_CALLERS,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()  # native routes check it from threadpool threads

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, identity: str) -> None:
        """Spend one request of `identity`'s allowance, or raise RateLimited with the seconds until one is back."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(identity, None) or _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_second)
            bucket.updated = now
            self._buckets[identity] = bucket  # re-inserted last: the table is ordered by last use
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = math.ceil((1.0 - bucket.tokens) / self.refill_per_second)
        raise RateLimited(f"rate limit exceeded: {self.per_minute} requests per minute per "
                          f"{'API key' if identity.startswith('key:') else 'client address'} "
                          f"(NEWSMT_RATE_LIMIT_PER_MINUTE); retry after {wait} s", wait)

    def tracked(self) -> int:
        """How many callers currently have a bucket (for tests and debugging)."""
        return len(self._buckets)
