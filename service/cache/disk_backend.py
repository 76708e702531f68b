"""The embedded cache backend: `diskcache`, SQLite plus files in one directory.

Why diskcache: it is safe across threads *and processes* (the bulk CLI and a running server share one directory),
has LRU size limits and atomic counters, and needs no server.

A cache that cannot be opened or used (missing, corrupt, read-only, disk full) never fails a request: operations
degrade to misses with one warning, and the cache is reopened after `retry_seconds`. SQLite by itself notices none
of the faults that happen to an open cache (it keeps writing into a deleted database file, its page cache and WAL
hide garbage written over the file, and its open file handles keep writing after the volume turns read-only), so
an open cache also checks its own file, cheaply and at most once per `check_seconds`: that way /readyz and
`cache stats` tell the truth within a second of the fault.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import diskcache

from service.cache.backend import CacheStats

log = logging.getLogger(__name__)

_HITS_KEY = "__newsmt_stats__:hits"
_MISSES_KEY = "__newsmt_stats__:misses"
_CACHE_ERRORS = (sqlite3.Error, OSError, diskcache.Timeout, ValueError, TypeError, KeyError, EOFError)
#: SQLite's page cache, per connection. diskcache opens one connection per thread and lets each cache 8,192 pages
#: (32 MB); a server runs up to 40 worker threads, so that alone could grow it by 1.3 GB as the database grows.
#: 1,024 pages (4 MB) each bounds it at a tenth of that; lookups are by primary key and the OS caches the file.
SQLITE_CACHE_PAGES = 1024
_SQLITE_HEADER = b"SQLite format 3\x00"


class DiskCache:
    """Thread- and process-safe string store over one diskcache directory."""

    name = "diskcache"

    def __init__(self, directory: Path, size_limit: int, retry_seconds: float = 30.0, check_seconds: float = 1.0,
                 ttl_seconds: float | None = None):
        self.directory = Path(directory)
        self.location = str(self.directory)
        self.size_limit = size_limit
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()  # opening, checking and closing the database
        self._cache: diskcache.Cache | None = None
        self._error: str | None = None
        self._next_retry = 0.0
        self._identity: tuple[int, int] | None = None  # (device, inode) of the database file that was opened
        self._next_check = 0.0
        self._open()

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
        self._next_check = time.monotonic() + self.check_seconds
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
        opening and, while open, at most once per `check_seconds`."""
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
        a broken one, which can wait on the disk."""
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now >= self._next_check:
                self._next_check = now + self.check_seconds
                fault = self._fault()
                if fault is not None:
                    self._degrade(fault)
            if self._cache is None and may_reopen and now >= self._next_retry:
                self._open()
            return self._cache

    def close(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    # -- operations ----------------------------------------------------------------------------------------
    def health(self) -> str | None:
        return None if self._usable() is not None else self._error

    @property
    def error(self) -> str | None:
        return self._error

    def get_many(self, keys: list[str], *, may_reopen: bool = True) -> dict[str, str]:
        cache = self._usable(may_reopen)
        if cache is None:
            return {}
        try:
            return {key: value for key in keys if isinstance(value := cache.get(key), str)}
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache read failed: {exc}")
            return {}

    def set_many(self, items: Mapping[str, str]) -> None:
        cache = self._usable()
        if cache is None or not items:
            return
        try:
            with cache.transact():
                for key, value in items.items():
                    cache.set(key, value, expire=self.ttl_seconds)
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache write failed: {exc}")

    def add_counts(self, hits: int, misses: int, *, may_reopen: bool = True) -> None:
        """Outside the lock: an SQLite write may wait on another writer, and lookups must not wait with it."""
        cache = self._usable(may_reopen)
        if cache is None:
            return
        try:
            if hits:
                cache.incr(_HITS_KEY, hits)
            if misses:
                cache.incr(_MISSES_KEY, misses)
        except _CACHE_ERRORS as exc:
            self._degrade(f"cache write failed: {exc}")

    def stats(self) -> CacheStats:
        cache = self._usable()
        if cache is None:
            return CacheStats(self.name, self.location, False, 0, 0, self.size_limit, 0, 0, self._error)
        try:
            return CacheStats(
                backend=self.name,
                location=self.location,
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
        cache = self._usable()
        if cache is None:
            raise OSError(f"cache at {self.directory} is unavailable: {self._error}")
        return int(cache.clear())
