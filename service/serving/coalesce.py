"""Coalescing of identical in-flight work: N simultaneous identical requests cause one inference.

The disk cache only helps once the first request has finished; identical requests that arrive while it is still
running would each miss and run the same model work (a newsroom refreshing a breaking story does exactly that).
So the first request starts the work and later identical ones await the same future. Keys are digests of
everything that changes the result (`service.cache.segment_cache.digest`, as for cache keys), so only truly
identical work is shared.

The map lives on the event loop and is touched only from it, so it needs no lock; the work itself runs wherever
`start` puts it (the HTTP layer uses a worker thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """An in-flight map from work key to the future of that work."""

    def __init__(self, on_join: Callable[[], None] | None = None):
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self._on_join = on_join  # called for each request that joins instead of starting (metrics)

    def run(self, key: str, start: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """The future of the work for `key`, calling `start()` only when nothing identical is in flight.

        Await it through `asyncio.shield`: one caller giving up (a timeout, a disconnect) must not cancel the work
        the others are waiting for."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._inflight[key] = future
            future.add_done_callback(partial(self._finished, key))
        elif self._on_join is not None:
            self._on_join()
        return future

    def _finished(self, key: str, future: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # retrieved here: when every waiter timed out nobody else would, and asyncio warns
