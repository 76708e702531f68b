"""Content-hash segment cache over `diskcache`.

Why diskcache: it is SQLite plus files, safe across threads *and processes* (the bulk CLI and a running server
share one directory), has LRU size limits and atomic counters, and needs no server.

Keys are sha256 digests over everything that can change an output: the cache schema version, the task, the model
id and its revision (a hub commit or a fingerprint of a local model's files), the generation settings and the
normalised text. One edited sentence therefore misses only itself, and a model upgrade misses everything, which
is what a user expects.

A cache that cannot be opened or used (missing, corrupt, read-only, disk full) never fails a request: operations
degrade to misses with one warning, and the cache is reopened after `retry_seconds`. SQLite by itself notices none
of the faults that happen to an open cache (it keeps writing into a deleted database file, its page cache and WAL
hide garbage written over the file, and its open file handles keep writing after the volume turns read-only), so
an open cache also checks its own file, cheaply and at most once per `HEALTH_CHECK_SECONDS`: that way /readyz and
`cache stats` tell the truth within a second of the fault.

A small in-process LRU tier (`cachetools.LRUCache`, bounded in bytes) sits in front of the disk: a hot article, one
that many clients request again and again, is then answered without touching SQLite at all. Entries are never
stale, since a key names the exact model, settings and text; the memory tier also keeps serving what it holds
while the disk cache is broken.

Hit and miss counts are kept in memory and added to the shared counters at most once per `HEALTH_CHECK_SECONDS`
(and on `stats` and `close`). Writing them per lookup turned every cache hit into a write transaction, and under
32 concurrent clients those writers queued on SQLite's lock for hundreds of milliseconds; another process's
`cache stats` now lags by up to a second instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cachetools
import diskcache

if TYPE_CHECKING:  # pragma: no cover
    from service.config import Settings

log = logging.getLogger(__name__)

#: Bump when the meaning of cached values changes; old entries then simply miss.
CACHE_SCHEMA_VERSION = 1

_HITS_KEY = "__newsmt_stats__:hits"
_MISSES_KEY = "__newsmt_stats__:misses"
_CACHE_ERRORS = (sqlite3.Error, OSError, diskcache.Timeout, ValueError, TypeError, KeyError, EOFError)
#: SQLite's page cache, per connection. diskcache opens one connection per thread and lets each cache 8,192 pages
#: (32 MB); a server runs up to 40 worker threads, so that alone could grow it by 1.3 GB as the database grows.
#: 1,024 pages (4 MB) each bounds it at a tenth of that; lookups are by primary key and the OS caches the file.
SQLITE_CACHE_PAGES = 1024
#: How often, at most, an open cache checks that its database file is still there, intact and writable, and writes
#: the hit and miss counts gathered in memory since the last time.
HEALTH_CHECK_SECONDS = 1.0
_SQLITE_HEADER = b"SQLite format 3\x00"
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


@dataclass(frozen=True)
class CacheStats:
    directory: str
    available: bool
    entries: int
    size_bytes: int
    size_limit: int
    hits: int
    misses: int
    error: str | None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class SegmentCache:
    """Thread- and process-safe string cache that degrades to 'always miss' instead of failing."""

    def __init__(self, directory: Path, size_limit: int, retry_seconds: float = 30.0, memory_limit: int = 0):
        self.directory = Path(directory)
        self.size_limit = size_limit
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()  # opening, checking and closing the database
        self._memory_lock = threading.Lock()  # the memory tier and the counts: held for microseconds only
        self._cache: diskcache.Cache | None = None
        self._error: str | None = None
        self._next_retry = 0.0
        self._identity: tuple[int, int] | None = None  # (device, inode) of the database file that was opened
        self._next_check = 0.0
        self._pending = [0, 0]  # hits and misses counted since the last write to the shared counters
        self._memory: cachetools.LRUCache[str, str] | None = (
            cachetools.LRUCache(memory_limit, getsizeof=_entry_bytes) if memory_limit > 0 else None)
        self._open()

    @classmethod
    def from_settings(cls, settings: Settings) -> SegmentCache:
        return cls(settings.cache_dir, settings.cache_size_limit, settings.cache_retry_seconds,
                   settings.cache_memory_limit)

    @property
    def database(self) -> Path:
        return self.directory / diskcache.core.DBNAME

    # -- lifecycle -----------------------------------------------------------------------------------------
    def _open(self) -> diskcache.Cache | None:
        fault = self._fault()  # first: a failed open leaves SQLite handles behind until the garbage collector runs
        if fault is not None:
            self._degrade(f"cannot open cache at {self.directory}: {fault}")
            return None
        try:
            cache = diskcache.Cache(str(self.directory), size_limit=self.size_limit, timeout=5,
                                    sqlite_cache_size=SQLITE_CACHE_PAGES)
            cache.get(_HITS_KEY)  # touch the database: a corrupt file fails here, not on first real use
            stat = os.stat(self.database)
        except _CACHE_ERRORS as exc:
            self._degrade(f"cannot open cache at {self.directory}: {exc}")
            return None
        self._cache = cache
        self._identity = (stat.st_dev, stat.st_ino)
        self._next_check = time.monotonic() + HEALTH_CHECK_SECONDS
        if self._error is not None:
            log.warning("cache at %s is usable again", self.directory)
        self._error = None
        return cache

    def _degrade(self, reason: str) -> None:
        if self._error is None:
            log.warning("%s; continuing without cache (retrying every %.0fs)", reason, self.retry_seconds)
        self._error = reason
        broken, self._cache = self._cache, None
        if broken is not None:
            with contextlib.suppress(*_CACHE_ERRORS):
                broken.close()
        self._next_retry = time.monotonic() + self.retry_seconds

    def _fault(self) -> str | None:
        """Why the database file cannot be used, or None: one stat, one 16-byte read and one access(). Checked before
        opening and, while open, at most once per HEALTH_CHECK_SECONDS."""
        try:
            stat = os.stat(self.database)
            with self.database.open("rb") as fh:
                header = fh.read(len(_SQLITE_HEADER))
        except NotADirectoryError:
            return f"cache directory {self.directory} is not a directory"
        except FileNotFoundError:  # before opening, a missing file is simply a cache yet to be created
            return None if self._cache is None else f"cache database {self.database} was deleted"
        except OSError as exc:
            return f"cache database {self.database} cannot be read: {exc}"
        if self._cache is not None and (stat.st_dev, stat.st_ino) != self._identity:
            return f"cache database {self.database} was replaced by another file"
        if header not in (b"", _SQLITE_HEADER):  # empty: SQLite has not written its first page yet
            return f"cache database {self.database} is corrupt: it does not start with an SQLite header"
        if not os.access(self.directory, os.W_OK):  # EROFS even for root, unlike permission bits
            return f"cache directory {self.directory} is read-only"
        return None

    def _usable(self, may_reopen: bool = True) -> diskcache.Cache | None:
        """The open cache, after its periodic check; None while it is broken. `may_reopen=False` skips the retry of
        a broken one, which can wait on the disk: for callers that must not block (the server's event loop)."""
        flush = False
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now >= self._next_check:
                self._next_check = now + HEALTH_CHECK_SECONDS
                fault = self._fault()
                if fault is not None:
                    self._degrade(fault)
                else:
                    flush = True
            if self._cache is None and may_reopen and now >= self._next_retry:
                self._open()
            cache = self._cache
        if flush:  # outside the lock: an SQLite write may wait on another writer, lookups must not wait with it
            self._flush_counts(cache)
        return cache

    def _flush_counts(self, cache: diskcache.Cache | None) -> None:
        """Add the counts gathered in memory to the shared ones. Counts that cannot be written are dropped: they are
        statistics, not data."""
        with self._memory_lock:
            (hits, misses), self._pending = self._pending, [0, 0]
        if cache is None:
            return
        try:
            if hits:
                cache.incr(_HITS_KEY, hits)
            if misses:
                cache.incr(_MISSES_KEY, misses)
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache write failed: {exc}")

    def close(self) -> None:
        self._flush_counts(self._cache)
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    @property
    def available(self) -> bool:
        return self._usable() is not None

    @property
    def error(self) -> str | None:
        return self._error

    # -- operations ----------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str], *, may_reopen: bool = True) -> dict[str, str]:
        """Cached values for the keys that hit, from memory first, then from disk; counts hits and misses.
        Non-string values count as misses. `may_reopen`: see `_usable`."""
        keys = list(dict.fromkeys(keys))
        found = self._remembered(keys)
        wanted = [key for key in keys if key not in found]
        cache = self._usable(may_reopen)  # even when memory answered all: its periodic check writes the counts
        if cache is not None and wanted:
            try:
                from_disk = {key: value for key in wanted if isinstance(value := cache.get(key), str)}
            except _CACHE_ERRORS as exc:
                self._degrade(f"cache read failed: {exc}")
                from_disk = {}
            self._remember(from_disk)
            found.update(from_disk)
        with self._memory_lock:
            self._pending[0] += len(found)
            self._pending[1] += len(keys) - len(found)
        return found

    def _remembered(self, keys: list[str]) -> dict[str, str]:
        if self._memory is None:
            return {}
        with self._memory_lock:  # an LRU read reorders it: not thread-safe by itself
            return {key: value for key in keys if (value := self._memory.get(key)) is not None}

    def _remember(self, items: Mapping[str, str]) -> None:
        if self._memory is None or not items:
            return
        with self._memory_lock:
            for key, value in items.items():
                with contextlib.suppress(ValueError):  # one value larger than the whole tier: disk only
                    self._memory[key] = value

    def set_many(self, items: Mapping[str, str]) -> None:
        self._remember(items)
        cache = self._usable()
        if cache is None or not items:
            return
        try:
            with cache.transact():
                for key, value in items.items():
                    cache.set(key, value)
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache write failed: {exc}")

    def stats(self) -> CacheStats:
        cache = self._usable()
        self._flush_counts(cache)
        if cache is None:
            return CacheStats(str(self.directory), False, 0, 0, self.size_limit, 0, 0, self._error)
        try:
            return CacheStats(
                directory=str(self.directory),
                available=True,
                entries=max(0, len(cache) - sum(1 for k in (_HITS_KEY, _MISSES_KEY) if k in cache)),
                size_bytes=int(cache.volume()),
                size_limit=self.size_limit,
                hits=int(cache.get(_HITS_KEY, 0)),
                misses=int(cache.get(_MISSES_KEY, 0)),
                error=None,
            )
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache stats failed: {exc}")
            return self.stats()

    def clear(self) -> int:
        """Remove every entry and reset the counters; returns how many entries were removed."""
        cache = self._usable()
        if cache is None:
            raise OSError(f"cache at {self.directory} is unavailable: {self._error}")
        if self._memory is not None:
            with self._memory_lock:
                self._memory.clear()
        return int(cache.clear())
