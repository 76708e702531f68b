"""Faults injected at the OS boundary while newsmt runs, each showing that nothing is lost: the cache deleted,
corrupted or made read-only under a live server; broken model files; the bulk CLI killed with SIGKILL at random
points; SIGTERM to a loaded server; a full disk and refused writes under the bulk CLI's output.

Real components throughout: uvicorn on loopback, diskcache's SQLite files, `mount`, signals, RLIMIT_FSIZE."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from service.bulk.run import discover, translate_tree
from service.config import Settings
from service.testing.redis_server import RedisServer, free_port
from tests.conftest import (
    PARAGRAPHS,
    LiveServer,
    env_for,
    make_pipeline,
    settings_for,
    start_serve,
    wait_until,
)

RETRY_SECONDS = 1.0  # how soon a degraded cache is retried in these tests (production default: 30 s)
HEALTH_CHECK_SECONDS = 0.2  # how often an open cache checks its file in these tests (production: 1 s)
ARABIC, HEBREW = PARAGRAPHS[20], PARAGRAPHS[1]  # seed 001 is Arabic, seed 000 Hebrew


def translate(server: LiveServer, text: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/translate", json={"text": text}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def readiness(server: LiveServer) -> tuple[int, list[str]]:
    response = httpx.get(f"{server.url}/readyz", timeout=30)
    return response.status_code, response.json()["reasons"]


def degraded(server: LiveServer, reason: str) -> list[str]:
    """Readiness once the cache has had time to check itself: 503, with `reason` among the reasons."""
    time.sleep(HEALTH_CHECK_SECONDS + 0.2)
    status, reasons = readiness(server)
    assert status == 503 and any("cache unusable" in r and reason in r for r in reasons), reasons
    return reasons


def served_uncached(server: LiveServer, text: str, expected: str) -> None:
    """The request succeeds while the cache is unusable: the same translation, none of it from the cache. (The
    servers here run without the in-process memory tier, which would otherwise still answer what it holds.)"""
    result = translate(server, text)
    assert result["translation"] == expected and result["cached_segments"] == 0


def recovered(server: LiveServer) -> None:
    wait_until(lambda: readiness(server)[0] == 200, "readiness to recover", timeout=RETRY_SECONDS + 15)


# -- the cache ---------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _quick_health_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers here run in this process: their caches check themselves every 0.2 s instead of every second."""
    monkeypatch.setattr("service.cache.segment_cache.HEALTH_CHECK_SECONDS", HEALTH_CHECK_SECONDS)


def test_cache_deleted_while_serving_degrades_then_recreates(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(cache_retry_seconds=RETRY_SECONDS, cache_memory_limit=0)
    first = translate(server, ARABIC)
    assert translate(server, ARABIC)["cached_segments"] == first["segments"]
    shutil.rmtree(server.settings.cache_dir)  # SQLite alone would go on writing into the unlinked file

    degraded(server, "was deleted")
    served_uncached(server, ARABIC, first["translation"])
    recovered(server)
    assert server.settings.cache_dir.is_dir()  # a fresh cache where the old one was
    assert translate(server, ARABIC)["translation"] == first["translation"]
    assert translate(server, ARABIC)["cached_segments"] == first["segments"]  # caching again


def test_cache_corrupted_while_serving_degrades_until_removed(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(cache_retry_seconds=RETRY_SECONDS, cache_memory_limit=0)
    first = translate(server, HEBREW)
    with (server.settings.cache_dir / "cache.db").open("r+b") as db:
        db.write(random.Random(6).randbytes(4096))  # garbage over the header and the first page

    degraded(server, "corrupt")
    served_uncached(server, HEBREW, first["translation"])
    time.sleep(RETRY_SECONDS + 0.2)
    degraded(server, "corrupt")  # a retry does not reopen a corrupt file
    shutil.rmtree(server.settings.cache_dir)  # the operator's fix: remove the broken cache
    recovered(server)
    translate(server, HEBREW)
    assert translate(server, HEBREW)["cached_segments"] == first["segments"]


@contextmanager
def read_only_bind_mount(directory: Path) -> Iterator[None]:
    """`directory` made read-only in place, by a read-only bind mount over itself: unlike permission bits, root
    cannot write through it (EROFS)."""
    if subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True).returncode:
        pytest.skip("mounting needs CAP_SYS_ADMIN")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True, capture_output=True)
        yield
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(directory)], check=True)  # busy: detach it anyway


@contextmanager
def directory_replaced_by_a_file(directory: Path) -> Iterator[None]:
    """The directory moved aside and a plain file put at its path (nothing can be created there, even by root),
    then put back as it was."""
    saved = directory.with_name(directory.name + ".saved")
    directory.rename(saved)
    directory.write_text("not a directory")
    try:
        yield
    finally:
        directory.unlink()
        saved.rename(directory)


@pytest.mark.parametrize(("fault", "reason"), [(read_only_bind_mount, "read-only"),
                                               (directory_replaced_by_a_file, "not a directory")],
                         ids=["read-only mount", "directory replaced by a file"])
def test_cache_unwritable_while_serving_recovers_with_its_entries(live_server: Callable[..., LiveServer],
                                                                   fault: Callable[[Path], Any], reason: str) -> None:
    server = live_server(cache_retry_seconds=RETRY_SECONDS, cache_memory_limit=0)
    first = translate(server, ARABIC)
    with fault(server.settings.cache_dir):
        degraded(server, reason)
        served_uncached(server, ARABIC, first["translation"])
        time.sleep(RETRY_SECONDS + 0.2)
        degraded(server, reason)  # still unusable: the retry failed and said so
    recovered(server)
    assert translate(server, ARABIC)["cached_segments"] == first["segments"]  # the old entries are all there


# -- model files -------------------------------------------------------------------------------------------------
def broken_copy(model: Path, destination: Path, fault: str) -> Path:
    shutil.copytree(model, destination)
    if fault == "truncated weights":
        weights = destination / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 2)
    else:
        (destination / "config.json").write_text('{"model_type": "marian", "d_model": ', encoding="utf-8")
    return destination


@pytest.mark.parametrize("fault", ["truncated weights", "broken config"])
def test_broken_model_is_503_naming_it_while_the_other_task_works(live_server: Callable[..., LiveServer],
                                                                 tiny_models: dict[str, Path], tmp_path: Path,
                                                                 fault: str) -> None:
    broken = broken_copy(tiny_models["ar"], tmp_path / "ar-en", fault)
    server = live_server(ar_en_model=str(broken))
    assert translate(server, HEBREW)["translation"]
    for _ in range(2):  # every attempt fails the same clear way (a failed load is retried, not cached)
        response = httpx.post(f"{server.url}/v1/translate", json={"text": ARABIC}, timeout=120)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert "translate:ar-en" in error["message"] and str(broken) in error["message"]
    libre = httpx.post(f"{server.url}/translate", data={"q": ARABIC, "source": "ar", "target": "en"}, timeout=120)
    assert libre.status_code == 503 and "translate:ar-en" in libre.json()["error"]
    status, reasons = readiness(server)
    assert status == 503 and any("translate:ar-en" in r and str(broken) in r for r in reasons)
    assert translate(server, HEBREW)["translation"]  # the other task never noticed

    shutil.copytree(tiny_models["ar"], broken, dirs_exist_ok=True)  # repaired in place
    assert translate(server, ARABIC)["translation"]
    assert readiness(server) == (200, [])


def newsmt(args: list[str], settings: Settings, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env_for(settings), text=True,
                          capture_output=True, timeout=300, **kwargs)


def test_cli_with_a_broken_model_exits_1_naming_it_and_translates_the_rest(tiny_models: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    broken = broken_copy(tiny_models["ar"], tmp_path / "ar-en", "truncated weights")
    settings = settings_for(tmp_path, tiny_models, ar_en_model=str(broken))
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name, text in {"arabic-1": ARABIC, "hebrew": HEBREW, "arabic-2": PARAGRAPHS[30]}.items():
        (inputs / f"{name}.txt").write_text(text, encoding="utf-8")
    result = newsmt(["translate", str(inputs), "--out", str(out)], settings)
    assert result.returncode == 1
    assert "translate:ar-en" in result.stderr and str(broken) in result.stderr
    records = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text("utf-8").splitlines())}
    assert records["hebrew"]["status"] == "ok" and (out / "hebrew.en.txt").read_text("utf-8").strip()
    assert {records[i]["error"]["code"] for i in ("arabic-1", "arabic-2")} == {"model_load_failed"}
    assert [p.name for p in out.glob("*.en.txt")] == ["hebrew.en.txt"]  # nothing stands in for the others


# -- the bulk CLI killed -----------------------------------------------------------------------------------------
def short_articles(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        text = "\n\n".join(PARAGRAPHS[(2 * i) % len(PARAGRAPHS):(2 * i) % len(PARAGRAPHS) + 2])
        (folder / f"article-{i:02}.txt").write_text(text, encoding="utf-8")
    return folder


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def kill_during_run(inputs: Path, out: Path, settings: Settings, target: int, delay: float) -> tuple[int, int]:
    """Start the bulk CLI, SIGKILL it `delay` s after it has written `target` outputs; (target, written)."""
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "translate", str(inputs), "--out", str(out)],
                               env=env_for(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def written() -> int:
        return sum(1 for p in out.glob("*.en.txt") if p.stat().st_mtime >= started)

    wait_until(lambda: written() >= target or process.poll() is not None, "progress", timeout=120)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return target, written()


def test_bulk_cli_killed_at_random_points_then_rerun_loses_nothing(tmp_path: Path,
                                                                   tiny_models: dict[str, Path]) -> None:
    inputs = short_articles(tmp_path / "in", 16)
    reference = tmp_path / "reference"  # an uninterrupted run, in-process, with its own cache
    pipeline, _ = make_pipeline(settings_for(tmp_path / "ref", tiny_models))
    translate_tree(pipeline, discover([inputs]), reference)
    expected = {p.name: p.read_bytes() for p in reference.glob("*.en.txt")}
    assert len(expected) == 16

    settings = settings_for(tmp_path / "run", tiny_models, bulk_chunk_articles=1)
    out, seed = tmp_path / "out", random.randrange(1 << 30)
    rng, kills = random.Random(seed), []
    for attempt in range(3):
        target = 0 if attempt == 0 else rng.randrange(1, 16)  # the first dies before writing anything
        kills.append(kill_during_run(inputs, out, settings, target, rng.uniform(0, 0.25)))
        for output in out.glob("*.en.txt"):  # whatever exists under a final name is complete
            assert output.read_bytes() == expected[output.name], (seed, kills, output.name)
    stale = out / ".article-00.en.txt.abcd1234.tmp"
    stale.write_text("half a transl")  # as left by a kill mid-write, whatever the random points were

    final = newsmt(["translate", str(inputs), "--out", str(out)], settings)
    assert final.returncode == 0, (seed, kills, final.stderr)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text("utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == sorted(p.stem for p in inputs.glob("*.txt"))  # each exactly once
    assert {p.name: p.read_bytes() for p in out.glob("*.en.txt")} == expected, (seed, kills)
    assert not temp_files(out), (seed, kills)


# -- SIGTERM to a loaded server ----------------------------------------------------------------------------------
def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_under_load_finishes_in_flight_work_and_refuses_new(tmp_path: Path,
                                                                    tiny_models: dict[str, Path]) -> None:
    # Longer outputs, and an idle model waiting up to 0.2 s for company: each request stays in flight a while.
    settings = settings_for(tmp_path, tiny_models, max_output_tokens=48, batch_max_wait_ms=200)
    port = free_port()
    process = start_serve(settings, port)
    url = f"http://127.0.0.1:{port}"
    try:
        listening = {tuple(c.laddr) for c in psutil.Process(process.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", port)}  # no --host: loopback only, never 0.0.0.0 or ::
        httpx.post(f"{url}/v1/translate", json={"texts": [ARABIC, HEBREW]}, timeout=120)  # models loaded
        articles = ["\n\n".join(PARAGRAPHS[i:i + 6]) for i in range(0, 48, 6)]
        answers: dict[int, httpx.Response | Exception] = {}
        answered_at: list[float] = []

        def send(index: int) -> None:
            try:
                answers[index] = httpx.post(f"{url}/v1/translate", json={"text": articles[index]}, timeout=120)
            except Exception as exc:  # recorded and asserted on below
                answers[index] = exc
            answered_at.append(time.monotonic())

        senders = [threading.Thread(target=send, args=(i,)) for i in range(len(articles))]
        for sender in senders:
            sender.start()
        wait_until(lambda: "newsmt_inflight_translations 0.0" not in httpx.get(f"{url}/metrics").text, "load")
        process.send_signal(signal.SIGTERM)
        terminated_at = time.monotonic()
        wait_until(lambda: refused(port), "the listening socket to close", timeout=10)  # one tick of uvicorn's loop
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{url}/v1/translate", json={"text": ARABIC}, timeout=10)  # new work: refused
        for sender in senders:
            sender.join(timeout=120)
        log = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal after a clean shutdown
    assert "Waiting for connections to close" in log or "Shutting down" in log
    assert max(answered_at) > terminated_at  # some requests really were in flight when the signal came
    assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers.values()), answers
    served = [answers[i].json()["results"][0]["translation"] for i in range(len(articles))]  # type: ignore[union-attr]

    pipeline, batches = make_pipeline(settings)  # the cache the server left behind, read in-process
    cached = pipeline.translate(articles)
    assert [r.translation for r in cached] == served
    assert batches.total == 0 and all(r.cache_misses == 0 for r in cached)  # every finished request was stored


# -- a full disk and refused writes under the output -------------------------------------------------------------
def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """preexec_fn: writes past `max_bytes` fail with EFBIG in the child (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


@contextmanager
def tiny_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def finished_run(tmp_path: Path, tiny_models: dict[str, Path], out: Path) -> tuple[Path, Settings, dict[str, bytes]]:
    """Five articles translated into `out` (in-process), then a long one added whose output needs more room."""
    inputs = short_articles(tmp_path / "in", 5)
    settings = settings_for(tmp_path, tiny_models)
    pipeline, _ = make_pipeline(settings)
    translate_tree(pipeline, discover([inputs]), out)
    (inputs / "long.txt").write_text("\n\n".join(PARAGRAPHS[:40]), encoding="utf-8")
    return inputs, settings, snapshot(out)


def test_refused_writes_are_a_clear_error_and_damage_nothing(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    out = tmp_path / "out"
    inputs, settings, before = finished_run(tmp_path, tiny_models, out)
    room = max(len(content) for name, content in before.items() if name.endswith(".en.txt")) + 512
    result = newsmt(["translate", str(inputs), "--out", str(out)], settings, preexec_fn=limit_file_size(room))
    assert result.returncode == 1, result.stdout
    assert f"error: cannot write output under {out}" in result.stderr and "File too large" in result.stderr
    assert snapshot(out) == before  # the short ones rewritten identically, no partial long one, no temp file


@pytest.mark.soak  # the RLIMIT_FSIZE test above covers refused writes in the default run; this adds a real ENOSPC
def test_full_disk_is_a_clear_error_damages_nothing_and_the_rerun_completes(tmp_path: Path,
                                                                            tiny_models: dict[str, Path]) -> None:
    with tiny_tmpfs(tmp_path / "out", "64k") as out:
        inputs, settings, before = finished_run(tmp_path, tiny_models, out)
        filler = out / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            while True:  # until ENOSPC: the disk is full
                fh.write(b"\0" * 4096)
                fh.flush()
        result = newsmt(["translate", str(inputs), "--out", str(out)], settings)
        assert result.returncode == 1, result.stdout
        assert f"error: cannot write output under {out}" in result.stderr
        assert "No space left on device" in result.stderr
        after = snapshot(out)
        del after["filler"]
        assert after == before  # every file already written is byte for byte as it was

        filler.unlink()  # room made: the same run now completes
        pipeline, _ = make_pipeline(settings)
        assert translate_tree(pipeline, discover([inputs]), out).failed == 0
        assert (out / "long.en.txt").read_text("utf-8").strip() and not temp_files(out)


# -- the shared cache tier on Redis ------------------------------------------------------------------------------
def test_redis_killed_under_load_then_restarted_loses_nothing(redis_server: Callable[..., RedisServer],
                                                              live_server: Callable[..., LiveServer]) -> None:
    redis = redis_server()
    # One sentence per model call: the same text then always gets the same computation, whatever else is in flight.
    server = live_server(cache_url=redis.url, cache_retry_seconds=RETRY_SECONDS, cache_memory_limit=0, batch_size=1)
    texts = PARAGRAPHS[40:50]
    answers: dict[str, set[str]] = {text: set() for text in texts}
    statuses: list[int] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        for i in range(offset, 10**6):
            if stop.is_set():
                return
            text = texts[i % len(texts)]
            response = httpx.post(f"{server.url}/v1/translate", json={"text": text}, timeout=120)
            statuses.append(response.status_code)
            if response.status_code == 200:
                answers[text].add(response.json()["results"][0]["translation"])

    def served(more: int) -> None:
        count = len(statuses)
        wait_until(lambda: len(statuses) >= count + more, f"{more} more answers", timeout=120)

    clients = [threading.Thread(target=client, args=(k * 3,)) for k in range(3)]
    for thread in clients:
        thread.start()
    try:
        served(20)
        redis.kill()
        wait_until(lambda: readiness(server)[0] == 503, "readiness to notice", timeout=15)
        assert any("is unreachable" in r for r in readiness(server)[1])
        served(10)  # while it is down
        redis.start()  # restarted empty, on the same port
        recovered(server)
        served(10)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
    assert set(statuses) == {200}, sorted(set(statuses))
    assert all(len(seen) == 1 for seen in answers.values()), answers  # every answer equal to its first answer
    fresh = PARAGRAPHS[55]
    first = translate(server, fresh)
    assert translate(server, fresh)["cached_segments"] == first["segments"] > 0  # caching resumed
    assert redis.client().dbsize() > 0


@pytest.mark.parametrize("fault", ["wrong password", "out of memory", "read-only replica", "slow"])
def test_redis_refusing_or_hung_serves_uncached_with_the_reason_in_readyz(
        fault: str, redis_server: Callable[..., RedisServer], live_server: Callable[..., LiveServer]) -> None:
    reason = {"wrong password": "refused the credentials", "out of memory": "out of memory",
              "read-only replica": "read-only replica", "slow": "did not answer within"}[fault]
    if fault == "wrong password":
        redis = redis_server(password="right")
        url = redis.url_with("wrong")
    elif fault == "out of memory":
        redis = redis_server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
        redis.fill_memory()
        url = redis.url
    elif fault == "read-only replica":
        url = redis_server("--replicaof", "127.0.0.1", str(free_port())).url  # its primary is down
    else:
        redis = redis_server()
        redis.pause()  # SIGSTOP: connects, never answers (stopped by the fixture)
        url = redis.url
    server = live_server(cache_url=url, cache_retry_seconds=RETRY_SECONDS, cache_memory_limit=0)
    first = translate(server, ARABIC)
    assert first["cached_segments"] == 0
    served_uncached(server, ARABIC, first["translation"])
    reasons = degraded(server, reason)
    assert "right" not in " ".join(reasons) and "wrong" not in " ".join(reasons)  # no password in a message
