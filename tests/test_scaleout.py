"""Scale-out on the shared Redis tier: two `newsmt serve` processes on two ports sharing one real redis-server, and
the bulk CLI on two "machines" (working directories with nothing in common but NEWSMT_CACHE_URL).

Counts of model calls come from each server's own /metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.config import Settings
from service.testing.redis_server import REDIS_SERVER, RedisServer, free_port
from tests.conftest import (
    PARAGRAPHS,
    SEEDS,
    env_for,
    launch_serve,
    metric_at,
    require_program,
    settings_for,
    wait_serving,
)

RATE_LIMIT = 12  # per minute per key: one request every 5 s once the first 12 are spent
KEYS = ("handover", "tenfold", "budget")  # one API key per test, so that each has its own rate-limit budget
INFERENCE = "newsmt_inference_batch_segments_sum"  # sentences or pieces of sentences sent to a model


class Replicas:
    def __init__(self, redis: RedisServer, urls: list[str]):
        self.redis = redis
        self.urls = urls

    def translate(self, replica: int, text: str, key: str) -> httpx.Response:
        return httpx.post(f"{self.urls[replica]}/v1/translate", json={"text": text}, timeout=120,
                          headers={"Authorization": f"Bearer {key}"})

    def inferred(self) -> list[float]:
        return [metric_at(url, INFERENCE) for url in self.urls]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[Replicas]:
    require_program(Path(REDIS_SERVER), "redis-server")
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    processes: list[subprocess.Popen[str]] = []
    try:
        ports = [free_port(), free_port()]
        for name, port in zip("ab", ports, strict=True):  # nothing shared on disk: each has its own cache_dir
            settings = settings_for(tmp_path_factory.mktemp(f"replica-{name}"), tiny_models, cache_url=redis.url,
                                    rate_limit_per_minute=RATE_LIMIT)
            processes.append(launch_serve(settings, port, {"NEWSMT_API_KEYS": ",".join(KEYS)}))
        for process, port in zip(processes, ports, strict=True):
            wait_serving(process, port)
        yield Replicas(redis, [f"http://127.0.0.1:{port}" for port in ports])
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        redis.stop()


def test_an_article_translated_by_one_replica_is_answered_by_the_other_without_a_model(replicas: Replicas) -> None:
    text = PARAGRAPHS[3]
    first = replicas.translate(0, text, KEYS[0])
    assert first.status_code == 200, first.text
    assert replicas.inferred()[0] > 0
    second = replicas.translate(1, text, KEYS[0])
    assert second.status_code == 200, second.text
    a, b = first.json()["results"][0], second.json()["results"][0]
    assert b["translation"] == a["translation"] and b["cached_segments"] == b["segments"] > 0
    assert replicas.inferred()[1] == 0  # B never called a model
    models = httpx.get(f"{replicas.urls[1]}/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"}).json()
    assert all(row["loaded"] is None for row in models)  # nor loaded one


def test_ten_identical_concurrent_requests_across_both_replicas_cause_one_inference(replicas: Replicas) -> None:
    text = "\n\n".join(PARAGRAPHS[8:14])  # long enough to be in flight while the others arrive
    before = replicas.inferred()
    misses = sum(metric_at(url, "newsmt_cache_misses_total") for url in replicas.urls)
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda i: replicas.translate(i % 2, text, KEYS[1]), range(10)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses if r.status_code != 200]
    results = [r.json()["results"][0] for r in responses]
    assert len({r["translation"] for r in results}) == 1
    after = replicas.inferred()
    assert sorted(a - b > 0 for a, b in zip(after, before, strict=True)) == [False, True]  # one replica inferred
    # ...and it translated every sentence once: the sentences the two servers did not find in the cache, summed.
    assert sum(metric_at(url, "newsmt_cache_misses_total") for url in replicas.urls) - misses == results[0]["segments"]


def test_a_rate_limit_holds_across_both_replicas_together(replicas: Replicas) -> None:
    text = PARAGRAPHS[3]
    statuses = [replicas.translate(i % 2, text, KEYS[2]) for i in range(2 * RATE_LIMIT)]
    allowed = [r for r in statuses if r.status_code == 200]
    refused = [r for r in statuses if r.status_code == 429]
    assert len(allowed) + len(refused) == len(statuses)
    # One budget for both: 12, plus at most one refilled while the requests ran (one every 5 s); one budget per
    # replica would have let all 24 through.
    assert RATE_LIMIT <= len(allowed) <= RATE_LIMIT + 1
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert {r.url.port for r in refused} == {int(u.rsplit(":", 1)[1]) for u in replicas.urls}  # both refuse


def newsmt(args: list[str], settings: Settings, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env_for(settings), text=True,
                          capture_output=True, timeout=300, cwd=cwd)


def test_bulk_rerun_on_another_machine_is_all_hits_with_no_model(redis_server: Callable[..., RedisServer],
                                                                  tmp_path: Path, tiny_models: dict[str, Path]
                                                                  ) -> None:
    redis = redis_server()
    machines = [tmp_path / "one", tmp_path / "two"]
    runs = []
    for machine in machines:
        machine.mkdir()
        # Each "machine" has its own working directory and its own (empty, unused) cache directory.
        settings = settings_for(machine, tiny_models, cache_url=redis.url)
        runs.append(newsmt(["translate", str(SEEDS), "--out", "out"], settings, cwd=machine))
        assert runs[-1].returncode == 0, runs[-1].stderr
    assert "models loaded: 2" in runs[0].stdout
    assert "(100.0%)" in runs[1].stdout and "models loaded: none" in runs[1].stdout
    for record in map(json.loads, (machines[1] / "out" / "results.jsonl").read_text("utf-8").splitlines()):
        assert record["cache_misses"] == 0 and record["cache_hits"] == record["segments"] > 0
        name = f"{record['id']}.en.txt"
        assert (machines[1] / "out" / name).read_bytes() == (machines[0] / "out" / name).read_bytes()
    assert not (machines[1] / "cache").exists()  # nothing went to diskcache

    # `newsmt cache stats` and `clear` on Redis (in this process: their start-up is not what is tested here).
    cli, env = CliRunner(), env_for(settings)
    figures = json.loads(cli.invoke(app, ["cache", "stats", "--json"], env=env).stdout)
    assert figures["backend"] == "redis" and figures["entries"] > 0 and figures["hits"] > 0
    assert f"cache {redis.url} (redis): {figures['entries']} entries" in cli.invoke(app, ["cache", "stats"],
                                                                                     env=env).stdout
    redis.client().set("someone-else:key", "theirs")
    cleared = cli.invoke(app, ["cache", "clear"], env=env)
    assert cleared.exit_code == 0 and f"removed {figures['entries']} entries" in cleared.stdout
    assert redis.client().get("someone-else:key") == b"theirs"
    assert json.loads(cli.invoke(app, ["cache", "stats", "--json"], env=env).stdout)["entries"] == 0
