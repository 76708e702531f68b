"""The shared cache backend: Redis >= 6 or Valkey, reached through a `RedisLink`.

The same content-hash keys as diskcache, under the prefix `newsmt:<schema>:`, holding the same UTF-8 strings. A
lookup is one `MGET` (however many keys), a store one pipelined batch of `SET`s (with `PX` when a TTL is set), and
the hit and miss counters are two `INCRBY`s in one round trip, about once a second. Every fault of the server is the
link's business: here a failed call is simply a miss, or a write not made.

Stats and clear walk the prefix with `SCAN` (never `KEYS`, which blocks the server) and clear removes keys with
`UNLINK` (freed in the background): never `FLUSHDB`, since the database may hold other applications' keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import redis

from service.cache.backend import CACHE_SCHEMA_VERSION, CacheStats
from service.cache.redis_link import KEY_PREFIX, RedisLink

#: Keys fetched or deleted per SCAN step and per UNLINK.
SCAN_BATCH = 1000


class RedisCache:
    """A string store over Redis that degrades to 'always miss' through its link's breaker."""

    name = "redis"

    def __init__(self, link: RedisLink, ttl_seconds: float | None = None):
        self.link = link
        self.location = link.location
        self.prefix = f"{KEY_PREFIX}{CACHE_SCHEMA_VERSION}:"
        self._counters = (f"{self.prefix}stats:hits", f"{self.prefix}stats:misses")
        self._ttl_ms = int(ttl_seconds * 1000) if ttl_seconds else None

    def get_many(self, keys: list[str], *, may_reopen: bool = True) -> dict[str, str]:
        if not keys:
            return {}
        values = self.link.call(lambda r: r.mget([self.prefix + key for key in keys]), may_reopen=may_reopen)
        found: dict[str, str] = {}
        for key, value in zip(keys, values or (), strict=False):
            if not isinstance(value, bytes):  # None: a miss
                continue
            try:
                found[key] = value.decode("utf-8")
            except UnicodeDecodeError:  # written by something else, or damaged: a miss, never a wrong value
                continue
        return found

    def set_many(self, items: Mapping[str, str]) -> None:
        if not items:
            return

        def write(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(self.prefix + key, value.encode("utf-8"), px=self._ttl_ms)
            pipe.execute()

        self.link.call(write)

    def add_counts(self, hits: int, misses: int, *, may_reopen: bool = True) -> None:
        if not (hits or misses):
            return

        def add(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.incrby(self._counters[0], hits)
            pipe.incrby(self._counters[1], misses)
            pipe.execute()

        self.link.call(add, may_reopen=may_reopen)

    def health(self) -> str | None:
        return self.link.check()

    @property
    def error(self) -> str | None:
        return self.link.error

    def _entries(self, r: redis.Redis) -> Iterator[bytes]:
        counters = {c.encode() for c in self._counters}
        for key in r.scan_iter(match=self.prefix + "*", count=SCAN_BATCH):
            if key not in counters:
                yield key

    def stats(self) -> CacheStats:
        def read(r: redis.Redis) -> CacheStats:
            entries = sum(1 for _ in self._entries(r))
            memory = r.info("memory")
            hits, misses = (int(v or 0) for v in r.mget(self._counters))
            return CacheStats(self.name, self.location, True, entries, int(memory.get("used_memory", 0)),
                              int(memory.get("maxmemory", 0)), hits, misses, None)

        stats = self.link.call(read)
        return stats or CacheStats(self.name, self.location, False, 0, 0, 0, 0, 0, self.link.error)

    def clear(self) -> int:
        def remove(r: redis.Redis) -> int:
            removed, batch = 0, []
            for key in self._entries(r):
                batch.append(key)
                if len(batch) == SCAN_BATCH:
                    removed += r.unlink(*batch)
                    batch = []
            if batch:
                removed += r.unlink(*batch)
            r.unlink(*self._counters)
            return removed

        removed = self.link.call(remove)
        if removed is None:
            raise OSError(f"cache at {self.location} is unavailable: {self.link.error}")
        return removed

    def close(self) -> None:
        self.link.close()
