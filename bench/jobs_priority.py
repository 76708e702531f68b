"""Interactive latency while a job runs: p50/p99 of single-paragraph requests that miss the cache, sent by a few
clients that pause between requests (people reading answers), against a real `uvicorn service.api.app:create_app`
on loopback, in three phases on one server:

1. `alone`: the interactive clients only;
2. `with_job`: the same load (fresh articles) while a `POST /v1/jobs` corpus translates in the background, at the
   batcher's background priority;
3. `with_bulk_requests`: the same load while one client sends the same amount of work as plain `/v1/translate`
   requests of 16 articles (bulk work over HTTP without jobs: same priority as everyone).

    .venv/bin/python -m bench.jobs_priority --tiny            # the test suite's tiny models, built in a temp dir
    .venv/bin/python -m bench.jobs_priority --seconds 30      # the models NEWSMT_* configures

Every interactive text and bulk article is distinct (unique sentences from bench/corpus.py), so every request runs the
model. Figures are printed as JSON (and written with `--json`); the job's own pace (articles/s) is reported for the
phase it ran in. The run fails (exit 1) on any error, or when p99 with the job is more than `--max-p99-ratio` times
p99 alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .corpus import make_articles
from .http_load import NEWSMT_FACTORY, serve
from .measure import percentile

CLIENT_TIMEOUT_S = 300.0
PHASES = ("alone", "with_job", "with_bulk_requests")
BULK_BATCH = 16


def tiny_models(root: Path) -> dict[str, str]:
    """NEWSMT_* variables for the tests' tiny Marian models, built under `root`."""
    from service.testing.tiny_models import build_tiny_marian, english_corpus, seed_texts

    source, target = seed_texts(), english_corpus()
    return {"NEWSMT_AR_EN_MODEL": str(build_tiny_marian(root / "ar-en", source, target, seed=1)),
            "NEWSMT_HE_EN_MODEL": str(build_tiny_marian(root / "he-en", source, target, seed=2)),
            "NEWSMT_BEAM_SIZE": "1", "NEWSMT_MAX_OUTPUT_TOKENS": "48"}


def interactive(url: str, articles: list[str], clients: int, seconds: float, pause: float = 0.0) -> dict[str, Any]:
    """`clients` threads, each sending one fresh article at a time for `seconds`, `pause` seconds apart (a person
    reading the answer); latencies of the 200s."""
    latencies: list[float] = []
    errors: list[str] = []
    feed = iter(articles)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
            while time.monotonic() < deadline:
                with lock:
                    text = next(feed, None)
                if text is None:
                    return
                started = time.perf_counter()
                response = http.post(f"{url}/v1/translate", json={"text": text, "source": "ar"})
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    (latencies.append(elapsed) if response.status_code == 200
                     else errors.append(f"{response.status_code}: {response.text[:200]}"))
                time.sleep(pause)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1)}


def job_done(url: str, job_id: str) -> int:
    return int(httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()["done"])


#: Starts background work; returns a probe of articles done so far and a function that stops the work.
Background = Callable[[], tuple[Callable[[], int], Callable[[], None]]]


def with_background(url: str, articles: list[str], clients: int, seconds: float, pause: float,
                    start: Background) -> dict[str, Any]:
    """The interactive load while background work runs, which is stopped afterwards."""
    progress, stop = start()
    try:
        time.sleep(1.0)  # the background work is under way before the first interactive request
        before, started = progress(), time.monotonic()
        figures = interactive(url, articles, clients, seconds, pause)
        figures["background_articles_per_s"] = round((progress() - before) / (time.monotonic() - started), 1)
    finally:
        stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="build and use the tests' tiny models")
    parser.add_argument("--clients", type=int, default=2, help="concurrent interactive clients")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds each client waits between requests")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--background-articles", type=int, default=1500, help="articles of the job (and bulk)")
    parser.add_argument("--max-p99-ratio", type=float, default=2.0,
                        help="fail (exit 1) when interactive p99 with a job exceeds this multiple of p99 alone")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsmt-jobs-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "NEWSMT_CACHE_DIR": str(root / "cache"), "NEWSMT_JOBS_DIR": str(root / "jobs"),
               **(tiny_models(root / "models") if args.tiny else {})}
        # Interactive requests are one paragraph of a fresh article (a few sentences), enough that no phase runs out;
        # every one distinct, so every request is a miss.
        pool = [article.split("\n")[0] for article in make_articles(args.clients * 300 * 3, seed=11)]
        phases = [pool[i::3] for i in range(3)]
        background = make_articles(args.background_articles, seed=12)
        bulk = make_articles(args.background_articles, seed=13)
        with serve(NEWSMT_FACTORY, env, root / "server.log") as server:
            url = server.url
            interactive(url, make_articles(8, seed=14), 1, 60.0)  # warm-up: the model is loaded
            results: dict[str, Any] = {"alone": interactive(url, phases[0], args.clients, args.seconds, args.pause)}

            def start_job() -> tuple[Callable[[], int], Callable[[], None]]:
                job = httpx.post(f"{url}/v1/jobs", json={"articles": [{"text": t} for t in background],
                                                         "source": "ar"}, timeout=60).json()
                return (lambda: job_done(url, job["id"]),
                        lambda: httpx.delete(f"{url}/v1/jobs/{job['id']}", timeout=60).raise_for_status())

            results["with_job"] = with_background(url, phases[1], args.clients, args.seconds, args.pause, start_job)

            def start_bulk() -> tuple[Callable[[], int], Callable[[], None]]:
                sent, stopped = [0], threading.Event()

                def send() -> None:
                    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
                        for first in range(0, len(bulk), BULK_BATCH):
                            if stopped.is_set():
                                return
                            http.post(f"{url}/v1/translate", json={"texts": bulk[first:first + BULK_BATCH],
                                                                   "source": "ar"})
                            sent[0] += BULK_BATCH

                sender = threading.Thread(target=send)
                sender.start()

                def stop() -> None:
                    stopped.set()
                    sender.join()

                return lambda: sent[0], stop

            results["with_bulk_requests"] = with_background(url, phases[2], args.clients, args.seconds, args.pause,
                                                            start_bulk)
        results["params"] = {"clients": args.clients, "pause": args.pause, "seconds": args.seconds, "tiny": args.tiny,
                             "background_articles": args.background_articles, "cpus": os.cpu_count(),
                             "loadavg_after": os.getloadavg()}
    ratio = results["with_job"]["p99_ms"] / results["alone"]["p99_ms"]
    failed = ratio > args.max_p99_ratio or any(results[phase]["errors"] for phase in PHASES)
    results["p99_with_job_vs_alone"] = {"ratio": round(ratio, 2), "max": args.max_p99_ratio,
                                        "result": "MISS" if failed else "PASS"}
    figures = json.dumps(results, indent=2)
    print(figures)
    if args.json:
        args.json.write_text(figures + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
