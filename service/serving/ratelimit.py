"""Per-caller rate limiting: one token bucket per API key (or per client address when the server has no keys).

Why a token bucket: it allows a client's whole minute of requests at once (a newsroom tool translating a page of
headlines) and then meters it to the sustained rate, and it needs two numbers per caller, no timers and no
background task.

Where the buckets live: in process by default; with NEWSMT_CACHE_URL, in the shared Redis, so that a client of
several replicas behind a load balancer gets one budget, not one per replica. There a bucket is a hash
(`newsmt:ratelimit:<caller>`) updated by one Lua script, atomically, on the server's clock (so replicas' clocks never
disagree), and it expires once it would be full again. While Redis is unusable the in-process buckets take over: a
client then gets one budget per replica for a while, never a refusal because of the fault.

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

from service.cache.redis_link import KEY_PREFIX, RedisLink
from service.errors import RateLimited

#: Callers remembered at once; at the default of 10,000 the table stays under a few MB.
MAX_CALLERS = 10_000
#: One shared bucket: refill, spend one token if there is one, and answer 0 (allowed) or the milliseconds until a
#: token is back. ARGV: capacity, tokens per millisecond.
_SHARED_BUCKET = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * per_ms)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / per_ms) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return wait
"""


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
                 clock: Callable[[], float] = time.monotonic, shared: RedisLink | None = None):
        self.per_minute = per_minute
        self._shared = shared
        self._script = shared.client.register_script(_SHARED_BUCKET) if shared is not None else None
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
        wait = self._shared_wait(identity)
        if wait is None:  # no shared store, or it is unusable: this process's own buckets
            wait = self._local_wait(identity)
        if wait:
            raise RateLimited(f"rate limit exceeded: {self.per_minute} requests per minute per "
                              f"{'API key' if identity.startswith('key:') else 'client address'} "
                              f"(NEWSMT_RATE_LIMIT_PER_MINUTE); retry after {wait} s", wait)

    def _shared_wait(self, identity: str) -> int | None:
        """Seconds until `identity` may send again per the shared bucket (0: now, a token was spent); None without
        a usable shared store. Never reconnects: it runs on the event loop."""
        if self._shared is None or self._script is None:
            return None
        script = self._script
        waited = self._shared.call(
            lambda r: script(keys=[f"{KEY_PREFIX}ratelimit:{identity}"],
                             args=[self.capacity, self.refill_per_second / 1000], client=r),
            may_reopen=False)
        return None if waited is None else math.ceil(int(waited) / 1000)

    def _local_wait(self, identity: str) -> int:
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
                return 0
            return math.ceil((1.0 - bucket.tokens) / self.refill_per_second)

    def tracked(self) -> int:
        """How many callers currently have a bucket (for tests and debugging)."""
        return len(self._buckets)
