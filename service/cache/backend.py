"""The small interface both cache backends implement, and what they report.

Two backends sit behind `SegmentCache`: diskcache (embedded, the default, needs no server) and Redis/Valkey
(shared by replicas and machines). Keys and values are the same in both: content-hash keys (hex digests) and UTF-8
strings, so an entry written through one means the same through the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: Bump when the meaning of cached values changes; old entries then simply miss (and, on Redis, sit under another
#: key prefix, `newsmt:<schema>:`).
CACHE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CacheStats:
    backend: str  # "diskcache" or "redis"
    location: str  # the directory, or the Redis URL without its password
    available: bool
    entries: int
    size_bytes: int  # diskcache: the cache's volume; Redis: the server's used_memory
    size_limit: int  # diskcache: NEWSMT_CACHE_SIZE_LIMIT; Redis: the server's maxmemory (0: none)
    hits: int
    misses: int
    error: str | None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CacheBackend(Protocol):
    """A store that degrades to 'always miss' instead of failing: no method raises for a broken store except
    `clear`, which the user asked for by name."""

    name: str
    location: str

    def get_many(self, keys: list[str], *, may_reopen: bool = True) -> dict[str, str]:
        """Values of the keys found; a value that does not decode is left out (a miss). `may_reopen=False`: do not
        retry a broken store now, since that can block (the server's event loop passes it)."""
        ...

    def set_many(self, items: Mapping[str, str]) -> None:
        """Store every item, in one write."""
        ...

    def add_counts(self, hits: int, misses: int, *, may_reopen: bool = True) -> None:
        """Add to the shared hit and miss counters. Called about once a second (it doubles as the backend's
        periodic look at its own health), and on `stats` and `close`."""
        ...

    def health(self) -> str | None:
        """Why the store is unusable now, checking (or reconnecting) first; None when it is usable."""
        ...

    @property
    def error(self) -> str | None:
        """Why the store was unusable when last used, without checking again; None when it was usable."""
        ...

    def stats(self) -> CacheStats: ...

    def clear(self) -> int:
        """Remove every newsmt entry and reset the counters; how many entries were removed. OSError when the store
        is unusable."""
        ...

    def close(self) -> None: ...
