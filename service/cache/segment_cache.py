"""The content-hash segment cache: keys, an in-process memory tier, and one of two backends behind it.

Keys are sha256 digests over everything that can change an output: the cache schema version, the task, the model
id and its revision (a hub commit or a fingerprint of a local model's files), the generation settings and the
normalised text. One edited sentence therefore misses only itself, and a model upgrade misses everything, which
is what a user expects.

The backend is diskcache (`disk_backend.py`, the embedded default that needs no server) or, when NEWSMT_CACHE_URL is
set, Redis/Valkey (`redis_backend.py`), which replicas on many machines share. Either one degrades to "always miss"
instead of failing a request.

A small in-process LRU tier (`cachetools.LRUCache`, bounded in bytes) sits in front of either backend: a hot article,
one that many clients request again and again, is then answered without touching SQLite or the network at all.
Entries are never stale, since a key names the exact model, settings and text; the memory tier also keeps serving
what it holds while the backend is broken.

Hit and miss counts are kept in memory and added to the backend's shared counters at most once per
`HEALTH_CHECK_SECONDS` (and on `stats` and `close`). Writing them per lookup turned every cache hit into a write
transaction, and under 32 concurrent clients those writers queued on SQLite's lock for hundreds of milliseconds;
another process's `cache stats` now lags by up to a second instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cachetools

from service.cache.backend import CACHE_SCHEMA_VERSION, CacheBackend, CacheStats
from service.cache.disk_backend import DiskCache
from service.cache.redis_backend import RedisCache
from service.cache.redis_link import RedisLink

if TYPE_CHECKING:  # pragma: no cover
    from service.config import Settings

__all__ = ["CACHE_SCHEMA_VERSION", "HEALTH_CHECK_SECONDS", "CacheStats", "SegmentCache", "cache_key"]

#: How often, at most, the counts gathered in memory are written to the backend; the disk backend checks its
#: database file on the same period.
HEALTH_CHECK_SECONDS = 1.0
_KEY_AND_SLOT_BYTES = 200


def digest(value: object) -> str:
    """The one digest of the project's keys (cache entries and in-flight work alike): sha256 over canonical JSON of
    `value`, whose sorted keys make it independent of dict order, so equal inputs give equal keys."""
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a key over text holding a lone surrogate (which the pipeline then refuses) must not crash.
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(kind: str, task: str, model_id: str, revision: str, settings: Mapping[str, Any], text: str) -> str:
    """Stable key for one cached output."""
    return digest([CACHE_SCHEMA_VERSION, kind, task, model_id, revision, dict(settings), text])


def _entry_bytes(value: str) -> int:
    """What an entry of the memory tier costs: its value's size plus its key (a 64-character digest) and slot."""
    return sys.getsizeof(value) + _KEY_AND_SLOT_BYTES


class SegmentCache:
    """The memory tier and the batched counters in front of a backend; what the pipeline and the server use."""

    def __init__(self, backend: CacheBackend, memory_limit: int = 0):
        self.backend = backend
        #: The shared Redis tier's link when that is the backend: the server's rate limits and claims use it too.
        self.link: RedisLink | None = backend.link if isinstance(backend, RedisCache) else None
        self._lock = threading.Lock()  # the memory tier and the counts: held for microseconds only
        self._pending = [0, 0]  # hits and misses counted since the last write to the shared counters
        self._next_flush = time.monotonic() + HEALTH_CHECK_SECONDS
        self._memory: cachetools.LRUCache[str, str] | None = (
            cachetools.LRUCache(memory_limit, getsizeof=_entry_bytes) if memory_limit > 0 else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> SegmentCache:
        """Redis when NEWSMT_CACHE_URL is set, else diskcache at NEWSMT_CACHE_DIR; the memory tier in front."""
        link = RedisLink.from_settings(settings)
        if link is not None:
            return cls(RedisCache(link, settings.cache_ttl_seconds), settings.cache_memory_limit)
        return cls.on_disk(settings.cache_dir, settings.cache_size_limit, settings.cache_retry_seconds,
                           settings.cache_memory_limit, settings.cache_ttl_seconds)

    @classmethod
    def on_disk(cls, directory: Path, size_limit: int, retry_seconds: float = 30.0, memory_limit: int = 0,
                ttl_seconds: float | None = None) -> SegmentCache:
        return cls(DiskCache(directory, size_limit, retry_seconds, HEALTH_CHECK_SECONDS, ttl_seconds), memory_limit)

    @property
    def shared(self) -> bool:
        """Whether processes on other machines may use this cache at once: the Redis tier may, a local diskcache
        folder may not, so a cluster run with more than one node refuses it (service/bulk/cluster.py)."""
        return self.link is not None

    # -- health and counts -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.backend.health() is None

    @property
    def error(self) -> str | None:
        """Why the backend was unusable when last used (after `available`: now)."""
        return self.backend.error

    def _flush_counts(self, *, may_reopen: bool = True, due_only: bool = False) -> None:
        """Add the counts gathered in memory to the shared ones (with `due_only`, only once per period). Counts
        that cannot be written are dropped: they are statistics, not data."""
        with self._lock:
            now = time.monotonic()
            if due_only and now < self._next_flush:
                return
            self._next_flush = now + HEALTH_CHECK_SECONDS
            (hits, misses), self._pending = self._pending, [0, 0]
        self.backend.add_counts(hits, misses, may_reopen=may_reopen)

    def close(self) -> None:
        self._flush_counts()
        self.backend.close()

    # -- operations ----------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str], *, may_reopen: bool = True) -> dict[str, str]:
        """Cached values for the keys that hit, from memory first, then from the backend in one read; counts hits
        and misses. `may_reopen=False` (the server's event loop): a broken backend is not retried now."""
        keys = list(dict.fromkeys(keys))
        found = self._remembered(keys)
        self._flush_counts(may_reopen=may_reopen, due_only=True)  # even when memory answered all
        wanted = [key for key in keys if key not in found]
        if wanted:
            from_backend = self.backend.get_many(wanted, may_reopen=may_reopen)
            self._remember(from_backend)
            found.update(from_backend)
        with self._lock:
            self._pending[0] += len(found)
            self._pending[1] += len(keys) - len(found)
        return found

    def _remembered(self, keys: list[str]) -> dict[str, str]:
        if self._memory is None:
            return {}
        with self._lock:  # an LRU read reorders it: not thread-safe by itself
            return {key: value for key in keys if (value := self._memory.get(key)) is not None}

    def _remember(self, items: Mapping[str, str]) -> None:
        if self._memory is None or not items:
            return
        with self._lock:
            for key, value in items.items():
                with contextlib.suppress(ValueError):  # one value larger than the whole tier: backend only
                    self._memory[key] = value

    def set_many(self, items: Mapping[str, str]) -> None:
        self._remember(items)
        self.backend.set_many(items)

    def stats(self) -> CacheStats:
        self._flush_counts()
        return self.backend.stats()

    def clear(self) -> int:
        """Remove every entry and reset the counters; returns how many entries were removed. (Other processes'
        memory tiers keep what they hold: their keys are still right, only no longer shared.)"""
        if self._memory is not None:
            with self._lock:
                self._memory.clear()
        return self.backend.clear()
