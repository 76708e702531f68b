"""A real `redis-server` (Debian's package) on a free loopback port, for the tests and the benchmark of the shared
cache tier.

No mock Redis: faults are made the way they happen, by signals (SIGKILL, SIGSTOP) and by the server's own
configuration (requirepass, maxmemory with noeviction, replicaof). Nothing is persisted (`--save ''`), so a restart
is an empty server, as after a crash without persistence.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process on a free loopback port, restartable there. `args` are extra server options."""

    def __init__(self, directory: Path, *args: str, password: str | None = None):
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.args = [*args, *(("--requirepass", password) if password else ())]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_with(self.password)

    def url_with(self, password: str | None) -> str:
        return f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), *self.args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, (self.directory / "redis.log").read_text()[-2000:]
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def fill_memory(self) -> None:
        """Write small junk until the server refuses even that: under maxmemory with noeviction, it is full."""
        client = self.client()
        try:
            for i in range(1_000_000):
                client.set(f"junk:{i}", b"x" * 100)
        except redis.exceptions.OutOfMemoryError:
            return
        raise AssertionError("the server took 100 MB of junk: is maxmemory set, with noeviction?")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered (a hung or overloaded server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
