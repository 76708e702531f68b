"""The shared cache tier over a real redis-server: keys, one round trip, TTL, counters, stats and clear, every fault
the issue names (unreachable, slow, out of memory, read-only replica, wrong password, restarted), shared rate limits
and cross-replica claims. Each server is started by the `redis_server` fixture on a free loopback port."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.cache.backend import CACHE_SCHEMA_VERSION
from service.cache.redis_link import RedisLink, redacted
from service.cache.segment_cache import HEALTH_CHECK_SECONDS, SegmentCache
from service.config import Settings
from service.errors import RateLimited
from service.serving.claims import ClaimBoard
from service.serving.ratelimit import RateLimiter
from service.testing.redis_server import RedisServer, free_port
from tests.conftest import wait_until

PREFIX = f"newsmt:{CACHE_SCHEMA_VERSION}:"
RETRY_SECONDS = 0.5


def shared(url: str, tmp_path: Path, **overrides: object) -> SegmentCache:
    values: dict = {"cache_url": url, "cache_dir": tmp_path / "unused", "cache_retry_seconds": RETRY_SECONDS,
                    "cache_memory_limit": 0, "cache_timeout_seconds": 0.3, **overrides}
    return SegmentCache.from_settings(Settings(_env_file=None, **values))  # type: ignore[call-arg]


def test_entries_live_under_the_prefix_and_a_lookup_is_one_mget(redis_server: Callable[..., RedisServer],
                                                              tmp_path: Path) -> None:
    server = redis_server()
    cache = shared(server.url, tmp_path)
    assert cache.link is not None and cache.stats().backend == "redis"
    cache.set_many({"a" * 64: "שלום → peace", "b" * 64: "two"})
    client = server.client()
    assert client.get(PREFIX + "a" * 64) == "שלום → peace".encode()
    before = client.info("commandstats")
    assert cache.get_many(["a" * 64, "b" * 64, "c" * 64]) == {"a" * 64: "שלום → peace", "b" * 64: "two"}
    after = client.info("commandstats")
    calls = {name: after[name]["calls"] - before.get(name, {"calls": 0})["calls"] for name in after}
    assert {name: n for name, n in calls.items() if n and name != "cmdstat_info"} == {"cmdstat_mget": 1}
    # The same entries through diskcache would be the same strings under the same keys: nothing backend-specific.
    assert client.ttl(PREFIX + "a" * 64) == -1  # no TTL unless asked for


def test_ttl_and_a_value_that_does_not_decode_is_a_miss(redis_server: Callable[..., RedisServer],
                                                       tmp_path: Path) -> None:
    server = redis_server()
    cache = shared(server.url, tmp_path, cache_ttl_seconds=0.3)
    cache.set_many({"k": "v"})
    client = server.client()
    assert 0 < client.pttl(PREFIX + "k") <= 300
    client.set(PREFIX + "broken", b"\xff\xfe not utf-8")  # written by something else, or damaged
    assert cache.get_many(["k", "broken"]) == {"k": "v"}
    time.sleep(0.4)
    assert cache.get_many(["k"]) == {}


def test_counters_flushed_with_incrby_about_once_a_second(redis_server: Callable[..., RedisServer],
                                                          tmp_path: Path) -> None:
    server = redis_server()
    cache = shared(server.url, tmp_path)
    cache.set_many({"a": "x"})
    client = server.client()
    for _ in range(50):
        cache.get_many(["a", "b"])
    assert client.get(PREFIX + "stats:hits") is None  # counted in memory, not per lookup
    time.sleep(HEALTH_CHECK_SECONDS + 0.1)
    cache.get_many(["a"])  # the first lookup after the period writes what came before it
    assert int(client.get(PREFIX + "stats:hits")) == 50 and int(client.get(PREFIX + "stats:misses")) == 50
    assert client.info("commandstats")["cmdstat_incrby"]["calls"] == 2
    cache.get_many(["b"])
    cache.close()  # and closing writes the rest
    stats = shared(server.url, tmp_path).stats()  # as `newsmt cache stats` in another process sees them
    assert (stats.hits, stats.misses, stats.entries, stats.available) == (51, 51, 1, True)
    assert stats.size_bytes > 0 and stats.location == server.url


def test_clear_removes_only_newsmt_entries(redis_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    server = redis_server()
    cache = shared(server.url, tmp_path)
    cache.set_many({f"{i:064x}": f"value {i}" for i in range(2500)})  # more than one SCAN / UNLINK batch
    cache.get_many(["0" * 64])
    client = server.client()
    client.set("someone-else:key", "theirs")
    client.set("newsmt:0:older-schema", "kept")
    assert cache.stats().entries == 2500
    assert cache.clear() == 2500
    assert client.get("someone-else:key") == b"theirs" and client.get("newsmt:0:older-schema") == b"kept"
    assert client.get(PREFIX + "stats:hits") is None
    assert cache.stats().entries == 0
    assert "cmdstat_flushdb" not in client.info("commandstats") and "cmdstat_keys" not in client.info("commandstats")


def test_password_is_never_shown() -> None:
    assert redacted("redis://user:s3cret@host:6380/2") == "redis://user:***@host:6380/2"
    assert redacted("redis://:s3cret@host/0") == "redis://:***@host/0"
    assert redacted("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_unreachable_server_is_a_miss_with_one_log_line_then_reconnects(
        redis_server: Callable[..., RedisServer], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.cache.redis_link")
    server = redis_server()
    cache = shared(server.url, tmp_path)
    cache.set_many({"a": "x"})
    server.kill()
    for _ in range(20):  # many requests while it is down...
        assert cache.get_many(["a"]) == {}
        cache.set_many({"b": "y"})
    assert not cache.available and "is unreachable" in (cache.error or "")
    assert len(caplog.records) == 1  # ...one log line
    server.start()  # restarted, empty (no persistence)
    wait_until(lambda: cache.available, "reconnection", timeout=10)
    cache.set_many({"a": "x"})
    assert cache.get_many(["a"]) == {"a": "x"}
    assert [r.getMessage().endswith("is usable again") for r in caplog.records] == [False, True]


def test_wrong_password(redis_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    server = redis_server(password="right")
    cache = shared(server.url_with("wrong"), tmp_path)
    cache.set_many({"a": "x"})
    assert cache.get_many(["a"]) == {}
    assert not cache.available and "refused the credentials" in (cache.error or "")
    assert "wrong" not in (cache.error or "") and ":***@" in (cache.error or "")
    anonymous = shared(server.url_with(None), tmp_path)  # no password at all
    assert anonymous.get_many(["a"]) == {} and "refused the credentials" in (anonymous.error or "")


def test_out_of_memory_with_noeviction_refuses_writes(redis_server: Callable[..., RedisServer],
                                                      tmp_path: Path) -> None:
    server = redis_server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    server.fill_memory()
    cache = shared(server.url, tmp_path)
    cache.set_many({"a": "x"})
    assert cache.get_many(["a"]) == {}
    assert not cache.available
    assert "out of memory" in (cache.error or "") and "allkeys-lru" in (cache.error or "")


def test_read_only_replica(redis_server: Callable[..., RedisServer], tmp_path: Path) -> None:
    server = redis_server("--replicaof", "127.0.0.1", str(free_port()))  # a replica of a primary that is down
    cache = shared(server.url, tmp_path)
    assert cache.get_many(["a"]) == {}
    assert not cache.available and "read-only replica" in (cache.error or "")


def test_slow_server_costs_one_timeout_then_nothing_until_retry(redis_server: Callable[..., RedisServer],
                                                                tmp_path: Path) -> None:
    server = redis_server()
    cache = shared(server.url, tmp_path, cache_retry_seconds=30.0)
    cache.set_many({"a": "x"})
    server.pause()
    try:
        started = time.monotonic()
        assert cache.get_many(["a"], may_reopen=False) == {}
        assert 0.25 <= time.monotonic() - started < 2.0  # one time-out...
        started = time.monotonic()
        for _ in range(100):
            assert cache.get_many(["a"], may_reopen=False) == {}
        assert time.monotonic() - started < 0.1  # ...then the breaker answers at once
        assert "did not answer within 0.3 s" in (cache.error or "")
    finally:
        server.resume()


# -- shared rate limits ----------------------------------------------------------------------------------------
def test_rate_limit_is_one_budget_across_replicas_and_local_while_redis_is_down(
        redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    replicas = [RateLimiter(6, shared=RedisLink(server.url, 0.3, 60.0)) for _ in range(2)]
    allowed = 0
    for i in range(12):
        try:
            replicas[i % 2].acquire("key:shared")
            allowed += 1
        except RateLimited as exc:
            assert exc.retry_after == 10  # one request every 10 s
    assert allowed == 6  # not 6 per replica
    replicas[0].acquire("key:other")  # another caller has its own budget
    server.kill()
    for _ in range(6):  # Redis gone: each replica's own bucket, never a refusal because of the fault
        replicas[0].acquire("key:shared")
    with pytest.raises(RateLimited):
        replicas[0].acquire("key:shared")


# -- claims: coalescing across replicas -------------------------------------------------------------------------
class Work:
    """What a claim guards: `start` counts inferences and fills the 'cache'; `settled` reads it."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.started = 0
        self.cached: str | None = None

    async def start(self) -> str:
        self.started += 1
        await asyncio.sleep(self.delay)
        self.cached = "result"
        return "result"

    def settled(self) -> str | None:
        return self.cached


def board(server: RedisServer, wait: float = 5.0, claim: float = 1.0) -> ClaimBoard:
    return ClaimBoard(RedisLink(server.url, 0.3, 60.0), claim, wait)


def test_two_replicas_run_identical_work_once(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    work = Work(delay=0.3)  # the second replica shares the cache, so it shares `work`'s results

    async def both() -> list[str]:
        return await asyncio.gather(board(server).run("k", work.start, work.settled),
                                    board(server).run("k", work.start, work.settled))

    assert asyncio.run(both()) == ["result", "result"]
    assert work.started == 1
    assert server.client().exists("newsmt:claim:k") == 0  # released


def test_claimant_that_dies_is_replaced_and_a_slow_one_is_not_waited_for_forever(
        redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    client = server.client()
    client.set("newsmt:claim:dead", "another replica", px=300)  # claimed, never renewed: its owner died
    work = Work()
    started = time.monotonic()
    assert asyncio.run(board(server).run("dead", work.start, work.settled)) == "result"
    assert work.started == 1 and 0.25 < time.monotonic() - started < 3.0

    client.set("newsmt:claim:slow", "another replica", px=60_000)  # alive, but slower than we wait
    work = Work()
    started = time.monotonic()
    assert asyncio.run(board(server, wait=0.5).run("slow", work.start, work.settled)) == "result"
    assert work.started == 1 and 0.45 < time.monotonic() - started < 3.0


def test_claims_are_renewed_while_the_work_runs_and_skipped_when_redis_is_down(
        redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()
    client = server.client()
    work = Work(delay=1.0)  # longer than the 0.3 s claim: renewed every 0.1 s

    async def claimant_and_late_waiter() -> list[str]:
        first = asyncio.ensure_future(board(server, claim=0.3).run("long", work.start, work.settled))
        await asyncio.sleep(0.6)
        assert client.exists("newsmt:claim:long") == 1
        return [await first, await board(server).run("long", work.start, work.settled)]

    assert asyncio.run(claimant_and_late_waiter()) == ["result", "result"]
    assert work.started == 1
    server.kill()
    work = Work()
    assert asyncio.run(board(server).run("down", work.start, work.settled)) == "result" and work.started == 1
