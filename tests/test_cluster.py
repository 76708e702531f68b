"""`--cluster ray` against a real local Ray cluster (started once for this module, loopback only): outputs
byte-identical to the local CLI's, a rerun served entirely from the cache, an inference actor killed by pid mid-run,
bad articles and a model missing on a node; and a local run that never imports Ray."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from service.config import Settings
from service.errors import InvalidInput
from service.testing.redis_server import RedisServer
from service.text.langid import detect_language
from tests.conftest import SEEDS, env_for, settings_for

# Ray's nodes then take the loopback address, so the cluster and every CLI that joins it talk over 127.0.0.1 only
# (read when Ray is imported; the workers and the CLI subprocesses inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="the cluster extra is not installed: pip install -e '.[test,cluster]'")

#: A small object store: the rows are a few KB each, and the box is shared.
OBJECT_STORE_BYTES = 200 * 1024**2
CORPUS_ARTICLES = 240
#: Two inference actors on the module's 2-CPU cluster, leaving a CPU to the preparing tasks.
TWO_ACTORS = ["--concurrency", "2", "--num-cpus", "0.5"]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                       _node_ip_address="127.0.0.1", logging_level="WARNING")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def newsmt(args: list[str], settings: Settings, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env_for(settings), text=True,
                          capture_output=True, timeout=600, **kwargs)  # type: ignore[call-overload]


def on_ray(address: str, *extra: str) -> list[str]:
    return ["--cluster", "ray", "--ray-address", address, "--no-progress", *extra]


def translate_corpus(corpus: Path, out: Path, address: str, *extra: str) -> list[str]:
    """The corpus run every cluster test compares with the local one: translations and (LexRank) summaries."""
    return ["translate", str(corpus), "--out", str(out), "--summarize", *on_ray(address, *TWO_ACTORS, *extra)]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def comparable(record: dict) -> dict:
    """A results.jsonl row without what depends on timing: durations, and whether a repeated text was already in
    the cache when its article was looked up (parallel batches look up before earlier ones store)."""
    record = dict(record, elapsed_ms=None, cache_hits=None, cache_misses=None)
    record["summarizer"] = dict(record["summarizer"], elapsed_ms=None, cached=None)
    return record


def sentences(lang: str) -> list[str]:
    """Short sentences of the seed articles in one language (each short enough for the tiny models)."""
    found = []
    for path in sorted(SEEDS.glob("*.txt")):
        if path.name.startswith("000") != (lang == "he"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            found.extend(s.strip() + "." for s in line.split(".") if 20 <= len(s.strip()) <= 120)
    return [s for s in found if detect_language(s).lang == lang]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeds plus a few hundred short generated articles, half as files and half as JSONL (with and without
    ids, and a blank line, so ids from line numbers are checked too)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "seeds").mkdir()
    for path in SEEDS.glob("*.txt"):
        (root / "seeds" / path.name).write_bytes(path.read_bytes())
    rng = random.Random(13)
    pools = {"ar": sentences("ar"), "he": sentences("he")}
    articles = []
    while len(articles) < CORPUS_ARTICLES:
        lang = "he" if len(articles) % 3 == 0 else "ar"
        text = " ".join(rng.sample(pools[lang], 2)) + "\n" + rng.choice(pools[lang])
        if detect_language(text).lang == lang:
            articles.append(text)
    (root / "files").mkdir()
    half = CORPUS_ARTICLES // 2
    for i, text in enumerate(articles[:half]):
        (root / "files" / f"article-{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
    lines = [json.dumps({"id": f"story-{i}", "text": t} if i % 2 else {"text": t}, ensure_ascii=False)
             for i, t in enumerate(articles[half:])]
    lines.insert(len(lines) // 2, "")
    (root / "feed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def local_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Path:
    """The local CLI's outputs for the corpus: what every cluster run must reproduce."""
    root = tmp_path_factory.mktemp("local")
    result = newsmt(["translate", str(corpus), "--out", str(root / "out"), "--summarize"],
                    settings_for(root, tiny_models))
    assert result.returncode == 0, result.stderr
    return root / "out"


def assert_same_outputs(out: Path, reference: Path) -> None:
    expected = sorted(p.relative_to(reference) for p in reference.rglob("*.txt"))  # translations and summaries
    assert sorted(p.relative_to(out) for p in out.rglob("*.txt")) == expected
    for name in expected:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    ours, theirs = records(out), records(reference)
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]  # input order
    assert [comparable(r) for r in ours] == [comparable(r) for r in theirs]


def test_two_actors_write_what_the_local_cli_writes_and_a_rerun_loads_no_model(
        ray_address: str, corpus: Path, local_run: Path, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models)
    first = newsmt(translate_corpus(corpus, tmp_path / "out", ray_address), settings)
    assert first.returncode == 0, first.stderr
    total = CORPUS_ARTICLES + len(list(SEEDS.glob("*.txt")))
    assert f"translated {total}/{total} articles" in first.stdout
    assert_same_outputs(tmp_path / "out", local_run)
    assert all(r["cache_hits"] + r["cache_misses"] == r["segments"] for r in records(tmp_path / "out"))

    again = newsmt(translate_corpus(corpus, tmp_path / "again", ray_address), settings)
    assert again.returncode == 0, again.stderr
    assert "(100.0%)" in again.stdout and "models loaded: none" in again.stdout
    assert all(r["cache_misses"] == 0 for r in records(tmp_path / "again"))
    assert_same_outputs(tmp_path / "again", local_run)


def _inference_actors() -> list[psutil.Process]:
    """This module's cluster's inference actors (its raylet is a child of this process): never another cluster's."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("_Translator" in part for part in proc.info["cmdline"] or []) and \
                    any(parent.pid == os.getpid() for parent in proc.parents()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def test_an_actor_killed_mid_run_is_restarted_and_every_article_completes(
        ray_address: str, corpus: Path, local_run: Path, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models)
    out = tmp_path / "out"
    args = translate_corpus(corpus, out, ray_address, "--batch-size", "4")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env_for(settings), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    actors: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        actors = _inference_actors()
        if actors and list(out.glob("*/*.en.txt")):  # actors at work and outputs arriving: mid-run
            break
        time.sleep(0.05)
    assert actors and proc.poll() is None, "the run ended before an actor could be killed"
    victim = actors[0].pid
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    assert_same_outputs(out, local_run)


def test_bad_articles_and_a_model_missing_on_a_node_are_recorded(
        ray_address: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = next(SEEDS.glob("001_*.txt"))
    (inputs / "good.txt").write_bytes(good.read_bytes())
    (inputs / "latin1.txt").write_bytes("Caf\xe9 \xe0 Paris".encode("latin-1"))
    (inputs / "empty.txt").write_text("  \n", encoding="utf-8")
    (inputs / "persian.md").write_text(
        "وزیر امور خارجه ایران روز دوشنبه در سفری رسمی به مسکو با همتای روسی خود دیدار و گفتگو کرد.",
        encoding="utf-8")
    (inputs / "feed.jsonl").write_text(
        json.dumps({"text": "שתי המדינות חגגו 75 שנה לקשרים הדיפלומטיים ביניהן."}, ensure_ascii=False)
        + "\n{not json\n", encoding="utf-8")
    # The Hebrew model is the default hub one, not installed in this node's (empty) models folder.
    settings = settings_for(tmp_path, tiny_models, he_en_model=Settings.model_fields["he_en_model"].default)
    out = tmp_path / "out"
    result = newsmt(["translate", str(inputs), "--out", str(out), *on_ray(ray_address)], settings)
    assert result.returncode == 1, result.stderr
    by_id = {r["id"]: r for r in records(out)}
    assert list(by_id) == ["empty", "feed/1", "feed/2", "good", "latin1", "persian"]
    assert by_id["good"]["status"] == "ok" and (out / "good.en.txt").read_text(encoding="utf-8").strip()
    assert by_id["latin1"]["error"]["code"] == "invalid_input" and "UTF-8" in by_id["latin1"]["error"]["message"]
    assert by_id["empty"]["error"]["code"] == "empty_text"
    assert by_id["persian"]["error"]["code"] == "unsupported_language"
    assert by_id["feed/2"]["error"]["code"] == "invalid_input" and "feed.jsonl:2" in by_id["feed/2"]["error"]["message"]
    hebrew = by_id["feed/1"]["error"]
    assert hebrew["code"] == "model_not_installed"
    assert hebrew["message"].startswith("on node ") and "newsmt models pull translate:he-en" in hebrew["message"]
    assert "newsmt models pull translate:he-en" in result.stderr
    assert sorted(p.name for p in out.glob("*.en.txt")) == ["good.en.txt"]


def test_a_multi_node_cluster_refuses_the_embedded_disk_cache(ray_address: str, tmp_path: Path,
                                                               tiny_models: dict[str, Path]) -> None:
    from service.bulk.cluster import refuse_unshared_cache
    from service.cache.segment_cache import SegmentCache

    cache = SegmentCache.from_settings(settings_for(tmp_path, tiny_models))
    nodes = ray.nodes()
    refuse_unshared_cache(cache, nodes)  # this one-node cluster: fine
    second = dict(nodes[0], NodeID="another", NodeManagerAddress="127.0.0.2")
    with pytest.raises(InvalidInput, match=r"2 nodes.*NEWSMT_CACHE_URL"):
        refuse_unshared_cache(cache, [*nodes, second])
    cache.close()


def test_a_local_run_never_imports_ray(settings: Settings, tmp_path: Path) -> None:
    script = ("import sys\nfrom service.cli import app\n"
              f"try:\n    app(['translate', {str(next(SEEDS.glob('004_*.txt')))!r}, '--out', {str(tmp_path)!r}])\n"
              "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "print('ray imported' if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 'no ray')\n")
    result = subprocess.run([sys.executable, "-c", script], env=env_for(settings), text=True, capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no ray")


def test_with_the_shared_redis_cache_the_workers_write_it_and_many_nodes_are_allowed(
        ray_address: str, tmp_path: Path, tiny_models: dict[str, Path],
        redis_server: Callable[..., RedisServer]) -> None:
    from service.bulk.cluster import refuse_unshared_cache
    from service.cache.segment_cache import SegmentCache

    settings = settings_for(tmp_path, tiny_models, cache_url=redis_server().url)
    first = newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "out"), *on_ray(ray_address)], settings)
    assert first.returncode == 0, first.stderr
    # What the actors stored is in Redis, not on this disk: a local rerun is served from it and loads no model.
    assert not (tmp_path / "cache").exists()
    again = newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "again")], settings)
    assert again.returncode == 0, again.stderr
    assert "(100.0%)" in again.stdout and "models loaded: none" in again.stdout
    cache = SegmentCache.from_settings(settings)
    nodes = ray.nodes()
    refuse_unshared_cache(cache, [*nodes, dict(nodes[0], NodeID="another", NodeManagerAddress="127.0.0.2")])
    cache.close()


def test_glossary_with_cluster_ray_is_a_usage_error(settings: Settings, tmp_path: Path) -> None:
    """--glossary is the local run's (the cluster stages do not carry one yet): refused before any work."""
    out = tmp_path / "out"
    result = newsmt(["translate", str(next(SEEDS.glob("004_*.txt"))), "--out", str(out), "--glossary", "terms",
                     *on_ray("127.0.0.1:1")], settings)
    assert result.returncode == 2, result.stderr
    assert "--glossary" in result.stderr and "--cluster ray" in result.stderr
    assert not out.exists()


def test_a_formatted_document_with_cluster_ray_is_a_usage_error(settings: Settings, tmp_path: Path) -> None:
    """Documents (.html, .srt, .docx) keep their format in the local run only: refused before Ray is reached."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "page.html").write_text("<p>مرحبا بالعالم</p>\n", encoding="utf-8")
    out = tmp_path / "out"
    result = newsmt(["translate", str(corpus), "--out", str(out), *on_ray("127.0.0.1:1")], settings)
    assert result.returncode == 2, result.stderr
    assert "page.html" in result.stderr and "without --cluster" in result.stderr
    assert not out.exists()
