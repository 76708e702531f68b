"""One connection pool to the shared Redis/Valkey tier per process, and what is known of its health.

The cache, the rate limiter and the cross-replica claims all go through one `RedisLink`, so they agree on whether the
shared tier is usable and a fault is logged once, not once per consumer or per request.

Why a circuit breaker instead of redis-py's retries: requests must never wait on a broken Redis. The first failed
command marks the link unusable; from then on every call returns None at once (callers fall back: a miss, a local
rate limit, no claim) until `retry_seconds` have passed, when one caller that may block probes the server again.
redis-py's own retries (with backoff sleeps) are switched off, and connect and read time-outs are short, because
cache lookups run on the server's event loop.

The probe is a write (`SET` with a one-second expiry), not a `PING`: a server out of memory under `noeviction`, or a
read-only replica, answers `PING` and reads but refuses every write, and that is a fault an operator must see.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:  # pragma: no cover
    from service.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Keys of newsmt's own bookkeeping (probes, rate-limit buckets, claims) live under this prefix; cache entries under
#: `newsmt:<schema>:` (segment_cache.CACHE_SCHEMA_VERSION).
KEY_PREFIX = "newsmt:"
PROBE_MS = 1000


def redacted(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """A redis-py client with short time-outs, no retries, and a breaker that makes a broken server cost nothing."""

    def __init__(self, url: str, timeout: float, retry_seconds: float):
        self.location = redacted(url)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self._probe_key = f"{KEY_PREFIX}probe:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._error: str | None = None
        self._next_retry = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLink | None:
        """The link NEWSMT_CACHE_URL names, or None when it is unset (the embedded diskcache)."""
        if settings.cache_url is None:
            return None
        return cls(settings.cache_url.get_secret_value(), settings.cache_timeout_seconds,
                   settings.cache_retry_seconds)

    @property
    def error(self) -> str | None:
        """Why the shared tier is unusable now, or None."""
        return self._error

    def call(self, operation: Callable[[redis.Redis], T], *, may_reopen: bool = True) -> T | None:
        """`operation(client)`, or None when the server is unusable or the operation fails (which marks it so).
        `may_reopen=False` never probes a broken server: for callers that must not block (the event loop)."""
        if self._error is not None and not self._reconnect(may_reopen):
            return None
        try:
            return operation(self.client)
        except redis.RedisError as exc:
            self._fail(exc)
            return None

    def check(self) -> str | None:
        """Probe the server now (a write, see the module docstring); why it is unusable, or None."""
        self.call(self._probe)
        return self._error

    def close(self) -> None:
        self.client.close()

    # -- state ---------------------------------------------------------------------------------------------------
    def _probe(self, client: redis.Redis) -> None:
        client.set(self._probe_key, b"1", px=PROBE_MS)

    def _reconnect(self, may_reopen: bool) -> bool:
        """One caller at a time, once per retry period, probes a broken server; True once it is usable again."""
        with self._lock:
            now = time.monotonic()
            if not may_reopen or now < self._next_retry:
                return False
            self._next_retry = now + self.retry_seconds
        try:
            self._probe(self.client)
        except redis.RedisError as exc:
            self._fail(exc)
            return False
        with self._lock:
            recovered, self._error = self._error is not None, None
        if recovered:
            log.warning("shared cache %s is usable again", self.location)
        return True

    def _fail(self, exc: redis.RedisError) -> None:
        reason = self.describe(exc)
        with self._lock:
            first, self._error = self._error is None, reason
            self._next_retry = time.monotonic() + self.retry_seconds
        if first:
            log.warning("%s; continuing without it (retrying every %gs)", reason, self.retry_seconds)
            # Pooled connections to a restarted or replaced server are dead; the next probe opens fresh ones.
            self.client.connection_pool.disconnect()

    def describe(self, exc: redis.RedisError) -> str:
        """What an operator needs to read in /readyz and the log: the server (no password), the fault, the fix."""
        where = f"shared cache {self.location}"
        if isinstance(exc, redis.exceptions.AuthenticationError):
            return f"{where} refused the credentials in NEWSMT_CACHE_URL: {exc}"
        if isinstance(exc, redis.exceptions.TimeoutError):
            return f"{where} did not answer within {self.timeout:g} s (NEWSMT_CACHE_TIMEOUT_SECONDS)"
        if isinstance(exc, redis.exceptions.ConnectionError):
            return f"{where} is unreachable: {exc}"
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return (f"{where} is out of memory and refuses writes ({exc}); give it maxmemory-policy allkeys-lru "
                    "(or more maxmemory)")
        if isinstance(exc, redis.exceptions.ReadOnlyError):
            return f"{where} is a read-only replica ({exc}); point NEWSMT_CACHE_URL at the primary"
        return f"{where} refused a command: {exc}"
