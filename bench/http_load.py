"""A uvicorn server in a child process on loopback, and concurrent clients that time every request against it.

The server's own peak RSS (not the client's) is the figure reported for an HTTP case.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from .config import HEALTH_ROUTE, REPO_DIR, SERVER_START_TIMEOUT_S, TRANSLATE_ROUTE, UVICORN_FLAGS
from .measure import peak_rss_mb, percentile

NEWSMT_FACTORY = "service.api.app:create_app"
BARE_FACTORY = "bench.servers:bare_app"
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 600.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() when the process was launched
    peak_rss_mb: float | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Server, log: Path, ready_path: str) -> None:
    """Any HTTP answer means the server has finished starting (for uvicorn: the app's lifespan) and is serving."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(server.url + ready_path, timeout=2.0).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:  # connection refused: not listening yet
            time.sleep(0.2)
    raise RuntimeError(f"server not ready after {SERVER_START_TIMEOUT_S:.0f}s: {log.read_text()[-2000:]}")


def _stop(server: Server) -> None:
    """Read the server's peak RSS while it is alive, then SIGTERM (uvicorn shuts down gracefully), SIGKILL if it
    hangs."""
    if server.process.poll() is None:
        server.peak_rss_mb = peak_rss_mb(server.process.pid)
    server.process.terminate()
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def launch(command: Callable[[int], list[str]], env: dict[str, str], log: Path,
           ready_path: str | None = HEALTH_ROUTE) -> Iterator[Server]:
    """Start `command(port)` on a free loopback port; with `ready_path`, wait until it answers there. Without, the
    caller times the start itself (the first-translation case)."""
    port = _free_port()
    started = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(command(port), env=env, cwd=REPO_DIR, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, started)
    try:
        if ready_path is not None:
            _wait_ready(server, log, ready_path)
        yield server
    finally:
        _stop(server)


def uvicorn_command(factory: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port), *UVICORN_FLAGS]


def serve(factory: str, env: dict[str, str], log: Path,
          ready_path: str | None = HEALTH_ROUTE) -> AbstractContextManager[Server]:
    """A uvicorn app factory (newsmt's, or the bare route) as a server."""
    return launch(uvicorn_command(factory), env, log, ready_path)


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The body of the last successful response to each request index.
    bodies: dict[int, bytes] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
            "req_per_s": round(self.requests / self.seconds, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "mean_response_bytes": round(sum(self.sizes) / len(self.sizes)),
        }


class Connection:
    """A minimal keep-alive HTTP/1.1 client for one loopback connection.

    Why not httpx: client and server share this box's cores, and a full-featured async client spends several times
    the CPU per request that a bare FastAPI route does, so it, not the server, would set the pace and squash the
    newsmt/bare ratio towards 1. This one writes a fixed request head and reads a Content-Length body, no more.
    """

    def __init__(self, url: str, route: str = TRANSLATE_ROUTE):
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._head = (f"POST {route} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                      "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n")
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(self._head.format(len(body)).encode() + body)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        if "content-length" not in headers:
            raise RuntimeError(f"response without Content-Length: {lines[0]}")
        content = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            await self.close()
        return int(lines[0].split()[1]), content

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            await self._streams[1].wait_closed()
            self._streams = None


async def _drive(url: str, requests: Sequence[bytes], clients: int, seconds: float | None, route: str) -> LoadResult:
    """`clients` concurrent clients, one keep-alive connection each. Without `seconds` each request is sent once;
    with it the clients cycle through the requests until the time is up (requests already sent still finish)."""
    result = LoadResult()
    order: Iterator[int] = itertools.cycle(range(len(requests))) if seconds else iter(range(len(requests)))
    started = time.perf_counter()
    deadline = started + seconds if seconds else None

    async def one_client() -> None:
        connection = Connection(url, route)
        try:
            for index in order:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                sent = time.perf_counter()
                status, content = await asyncio.wait_for(connection.post(requests[index]), REQUEST_TIMEOUT_S)
                if status != 200:
                    result.errors.append(f"{status}: {content[:200].decode(errors='replace')}")
                    continue
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.sizes.append(len(content))
                result.bodies[index] = content
        finally:
            await connection.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def drive(url: str, requests: Sequence[bytes], clients: int, seconds: float | None = None,
          route: str = TRANSLATE_ROUTE) -> LoadResult:
    result = asyncio.run(_drive(url, requests, clients, seconds, route))
    if result.errors:
        raise RuntimeError(f"{len(result.errors)} failed requests, e.g. {result.errors[0]}")
    return result


def server_cpu_seconds(server: Server) -> float:
    """User + system CPU time the server process has used so far (all its threads), from /proc."""
    times = psutil.Process(server.process.pid).cpu_times()
    return float(times.user + times.system)


def timed_drive(server: Server, requests: Sequence[bytes], clients: int, seconds: float,
                route: str = TRANSLATE_ROUTE) -> tuple[LoadResult, float]:
    """`drive` for a fixed time, and the server's own CPU milliseconds per request meanwhile: what a request costs
    the server, whatever else (the clients, other processes) shares the cores."""
    before = server_cpu_seconds(server)
    result = drive(server.url, requests, clients, seconds, route)
    return result, round((server_cpu_seconds(server) - before) * 1000 / result.requests, 3)
