"""Coalescing across replicas: identical misses in flight on several replicas cause one inference.

The in-process `Coalescer` shares work between identical requests on one replica. Replicas behind a load balancer
share the Redis tier, and through it this: the first replica to start a piece of work claims it with a short-lived
key (`SET newsmt:claim:<work key> <token> NX PX`), renewed while the work runs. Another replica that finds the claim
taken waits, polling the claim, and once the claimant has let it go (after storing its results) answers from its own
cache lookup.

Never a wrong or missing answer because of a claim: a waiter only ever answers what its own cache lookup found under
its own keys, and it translates the work itself when the claim goes away without results (the claimant failed or
died: an unrenewed claim expires), when it has waited `wait_seconds`, or when Redis is unusable. The worst case is
the duplicate work there would have been without claims.

All of it runs on the event loop with `may_reopen=False`: a call to a broken Redis returns at once, and one to a
hung Redis returns after the short socket time-out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.cache.redis_link import KEY_PREFIX, RedisLink

T = TypeVar("T")

#: How often a waiting replica looks for the claimant's results.
POLL_SECONDS = 0.05
#: Renew or release a claim only while it is still ours (it may have expired and been taken by another replica).
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class ClaimBoard:
    """Claims on work in the shared Redis."""

    def __init__(self, link: RedisLink, claim_seconds: float, wait_seconds: float,
                 on_wait: Callable[[bool], None] | None = None):
        self._link = link
        self._claim_ms = max(1, int(claim_seconds * 1000))
        self._wait_seconds = wait_seconds
        self._on_wait = on_wait  # called once per wait: True when another replica's result answered it (metrics)
        self._renew = link.client.register_script(_RENEW)
        self._release = link.client.register_script(_RELEASE)

    async def run(self, key: str, start: Callable[[], Awaitable[T]], settled: Callable[[], T | None]) -> T:
        """The result of the work `key` names: `settled()` (a cache lookup, None while incomplete) once another
        replica has produced it, else `start()` run here, under a claim when one can be had."""
        claim = f"{KEY_PREFIX}claim:{key}"
        token = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + self._wait_seconds
        waited = False
        while True:
            claimed = self._call(lambda r: bool(r.set(claim, token, nx=True, px=self._claim_ms)))
            if claimed is None:  # Redis unusable: as if there were no other replica
                return await self._own(start, waited)
            if claimed:
                return await self._as_claimant(claim, token, start, settled, waited)
            waited = True
            result = await self._wait(claim, settled, deadline)
            if result is not None:
                self._note(answered=True)
                return result
            if asyncio.get_running_loop().time() >= deadline:
                return await self._own(start, waited)
            # The claim went away without results (the claimant failed or died): claim it ourselves.

    async def _wait(self, claim: str, settled: Callable[[], T | None], deadline: float) -> T | None:
        """Poll the claim (one EXISTS, which counts no cache miss) until it is gone, then look the results up once:
        the claimant stores its results before it releases the claim, so a lookup that misses then means there is
        nothing to wait for. None when the deadline passed, the claim went without results, or Redis failed."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))
            held = self._call(lambda r: bool(r.exists(claim)))
            if held is None:
                return None
            if not held:
                return settled()
        return None

    async def _as_claimant(self, claim: str, token: str, start: Callable[[], Awaitable[T]],
                           settled: Callable[[], T | None], waited: bool) -> T:
        try:
            # The previous claimant may have finished between our first lookup and our claim.
            result = settled()
            if result is not None:
                if waited:
                    self._note(answered=True)
                return result
            renewing = asyncio.ensure_future(self._keep(claim, token))
            try:
                return await self._own(start, waited)
            finally:
                renewing.cancel()
        finally:
            self._call(lambda r: self._release(keys=[claim], args=[token], client=r))

    async def _keep(self, claim: str, token: str) -> None:
        """Renew the claim every third of its lifetime while the work runs, so that only a dead claimant's lapses."""
        while True:
            await asyncio.sleep(self._claim_ms / 3000)
            self._call(lambda r: self._renew(keys=[claim], args=[token, self._claim_ms], client=r))

    async def _own(self, start: Callable[[], Awaitable[T]], waited: bool) -> T:
        if waited:
            self._note(answered=False)
        return await start()

    def _note(self, *, answered: bool) -> None:
        if self._on_wait is not None:
            self._on_wait(answered)

    def _call(self, operation: Callable[..., object]) -> object | None:
        return self._link.call(operation, may_reopen=False)
