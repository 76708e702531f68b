"""SegmentCache over a real diskcache directory: keys, counters, sharing, and degradation without crashing."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

from service.cache.segment_cache import HEALTH_CHECK_SECONDS, SegmentCache, cache_key


def _key(text: str = "שלום", **overrides: object) -> str:
    parts: dict = {"kind": "segment", "task": "translate:he-en", "model_id": "m", "revision": "r1",
                   "settings": {"beam_size": 4}, "text": text}
    parts.update(overrides)
    return cache_key(parts["kind"], parts["task"], parts["model_id"], parts["revision"], parts["settings"],
                     parts["text"])


def test_key_is_stable_and_changes_with_every_input() -> None:
    base = _key()
    assert base == _key() and len(base) == 64
    assert base == cache_key("segment", "translate:he-en", "m", "r1", {"beam_size": 4}, "שלום")
    variants = [_key(text="שלום!"), _key(model_id="other"), _key(revision="r2"), _key(task="translate:ar-en"),
                _key(settings={"beam_size": 5}), _key(kind="article")]
    assert len({base, *variants}) == len(variants) + 1


def test_get_set_and_counters(tmp_path: Path) -> None:
    cache = SegmentCache.on_disk(tmp_path / "c", 10**8)
    assert cache.get_many(["a", "b"]) == {}
    cache.set_many({"a": "x"})
    assert cache.get_many(["a", "b"]) == {"a": "x"}
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.available) == (1, 3, 1, True)
    assert cache.clear() >= 1
    assert cache.stats().entries == 0


def _writer(directory: str, start: int) -> None:
    cache = SegmentCache.on_disk(Path(directory), 10**8)
    cache.set_many({f"k{i}": f"v{i}" for i in range(start, start + 200)})


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "c"), n * 200)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    found = SegmentCache.on_disk(tmp_path / "c", 10**8).get_many(f"k{i}" for i in range(400))
    assert len(found) == 400 and found["k399"] == "v399"


def test_corrupt_database_degrades_to_misses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "c"
    SegmentCache.on_disk(directory, 10**8).set_many({"a": "x"})
    (directory / "cache.db").write_bytes(b"this is not a sqlite database" * 100)
    cache = SegmentCache.on_disk(directory, 10**8, retry_seconds=3600)
    assert cache.get_many(["a"]) == {}  # never a wrong value, never an exception
    cache.set_many({"a": "y"})
    assert not cache.available and "cache" in (cache.error or "")
    assert any("continuing without cache" in r.message for r in caplog.records)


def _unwritable(directory: Path) -> tuple[list[str], list[str]]:
    """Commands that make `directory` refuse new files and undo it. Root ignores permission bits, so as root (CI) the
    directory is made immutable instead (`chattr +i`), which stops root too."""
    if os.geteuid() == 0:
        return ["chattr", "+i", str(directory)], ["chattr", "-i", str(directory)]
    return ["chmod", "500", str(directory)], ["chmod", "700", str(directory)]


def test_read_only_directory_degrades(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    lock, unlock = _unwritable(directory)
    subprocess.run(lock, check=True)
    try:
        cache = SegmentCache.on_disk(directory, 10**8)
        assert cache.get_many(["a"]) == {} and not cache.available
    finally:
        subprocess.run(unlock, check=True)


def test_directory_removed_while_running_recovers(tmp_path: Path) -> None:
    import shutil

    directory = tmp_path / "c"
    cache = SegmentCache.on_disk(directory, 10**8, retry_seconds=0)
    cache.set_many({"a": "x"})
    shutil.rmtree(directory)
    cache.set_many({"b": "y"})  # must not raise
    cache.get_many(["a", "b"])
    assert cache.available  # reopened (retry_seconds=0) on a fresh directory
    cache.set_many({"c": "z"})
    assert cache.get_many(["c"]) == {"c": "z"}


def test_unusable_path_degrades_and_stats_say_why(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = SegmentCache.on_disk(blocker / "cache", 10**8)
    assert cache.get_many(["a"]) == {}
    cache.set_many({"a": "x"})
    stats = cache.stats()
    assert not stats.available and stats.error and "cannot open cache" in stats.error
    with pytest.raises(OSError, match="unavailable"):
        cache.clear()


def test_memory_tier_keeps_hot_entries_through_a_broken_disk_and_stays_within_its_bytes(tmp_path: Path) -> None:
    import shutil

    directory = tmp_path / "c"
    cache = SegmentCache.on_disk(directory, 10**8, retry_seconds=3600, memory_limit=20_000)
    cache.set_many({"hot": "translated once"})
    shutil.rmtree(directory)  # the disk cache is gone (and not retried for an hour)...
    time.sleep(HEALTH_CHECK_SECONDS + 0.1)  # ...which the cache notices at its next health check
    assert not cache.available
    assert cache.get_many(["hot", "cold"]) == {"hot": "translated once"}  # ...the hot entry is still answered
    big = {f"k{i}": "x" * 1_000 for i in range(40)}  # ~40 kB: twice the tier
    cache.set_many(big)
    held = cache.get_many(big)
    assert 0 < len(held) < len(big) and all(held[k] == big[k] for k in held)  # the most recent, never a wrong value


def test_counts_from_many_lookups_reach_the_shared_counters(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    cache = SegmentCache.on_disk(directory, 10**8)
    cache.set_many({"a": "x"})
    for _ in range(50):
        cache.get_many(["a", "b"])
    cache.close()  # closing writes what was counted in memory
    stats = SegmentCache.on_disk(directory, 10**8).stats()  # as another process (`newsmt cache stats`) sees them
    assert (stats.hits, stats.misses) == (50, 50)
