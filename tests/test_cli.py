"""The bulk CLI as a user runs it: a subprocess over seeds/, reruns, kills, bad articles, missing models."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.cli import EXIT_CODES, EXIT_FAILED, EXIT_USAGE
from service.config import Settings
from service.errors import EmptyText, ModelNotInstalled, UnknownTask, mapped
from tests.conftest import SEEDS, env_for, settings_for

SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))


def newsmt(args: list[str], settings: Settings, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env_for(settings), text=True,
                          capture_output=True, timeout=300, **kwargs)  # type: ignore[call-overload]


def records(out: Path) -> dict[str, dict]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_translate_seeds_then_rerun_from_cache(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = newsmt(["translate", str(SEEDS), "--out", str(out)], settings)
    assert first.returncode == 0, first.stderr
    assert "translated 5/5 articles" in first.stdout and "models loaded: 2" in first.stdout
    results = records(out)
    assert sorted(results) == SEED_IDS
    languages = {i: r["detected_language"] for i, r in results.items()}
    assert languages == {i: ("he" if i.startswith("000") else "ar") for i in SEED_IDS}
    for article_id, record in results.items():
        text = (out / f"{article_id}.en.txt").read_text(encoding="utf-8")
        assert record["status"] == "ok" and text == record["translation"] + "\n" and text.strip()
        assert record["cache_misses"] > 0 and record["models"][0]["revision"].startswith("sha256:")
    assert results["001_963976ca7e6239c2"]["source_url"].startswith("https://vietnamnet.vn/")
    assert results["004_1f392f1426e76051"]["source_url"] is None

    again = newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "again")], settings)
    assert again.returncode == 0, again.stderr
    assert "(100.0%)" in again.stdout and "models loaded: none" in again.stdout
    for article_id in SEED_IDS:
        name = f"{article_id}.en.txt"
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()

    stats = newsmt(["cache", "stats", "--json"], settings)
    assert json.loads(stats.stdout)["hits"] > 0


def test_killed_run_resumes_without_loss_or_rework(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    reference = settings_for(tmp_path / "ref", tiny_models)
    assert newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "ref-out")], reference).returncode == 0

    settings = settings_for(tmp_path / "run", tiny_models, bulk_chunk_articles=1)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "translate", str(SEEDS), "--out", str(out)],
                            env=env_for(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.en.txt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in out.glob("*.en.txt")}

    resumed = newsmt(["translate", str(SEEDS), "--out", str(out)], settings)
    assert resumed.returncode == 0, resumed.stderr
    results = records(out)
    assert sorted(results) == SEED_IDS
    for article_id in SEED_IDS:
        name = f"{article_id}.en.txt"
        assert (out / name).read_bytes() == (tmp_path / "ref-out" / name).read_bytes()
        if name in done_before:  # finished before the kill: served whole from the cache
            assert results[article_id]["cache_misses"] == 0


def test_bad_articles_are_recorded_and_the_rest_complete(settings: Settings, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.txt").write_text((SEEDS / f"{SEED_IDS[4]}.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (inputs / "latin1.txt").write_bytes("Caf\xe9 \xe0 Paris".encode("latin-1"))
    (inputs / "persian.md").write_text(
        "وزیر امور خارجه ایران روز دوشنبه در سفری رسمی به مسکو با همتای روسی خود دیدار و گفتگو کرد.",
        encoding="utf-8")
    (inputs / "feed.jsonl").write_text(
        json.dumps({"id": "a/../../escape", "text": "وقعت الدولتان اتفاقية بشأن إعفاء حاملي جوازات السفر."},
                   ensure_ascii=False) + "\n" + json.dumps({"text": "שתי המדינות חגגו 75 שנה."}) + "\n",
        encoding="utf-8")
    out = tmp_path / "out"
    result = newsmt(["translate", str(inputs), "--out", str(out)], settings)
    assert result.returncode == 1
    results = records(out)
    assert results["good"]["status"] == "ok" and (out / "good.en.txt").exists()
    assert results["latin1"]["error"]["code"] == "invalid_input" and "UTF-8" in results["latin1"]["error"]["message"]
    assert results["persian"]["error"]["code"] == "unsupported_language"
    assert "detected 'fa'" in result.stderr
    assert results["feed/2"]["status"] == "ok" and results["feed/2"]["detected_language"] == "he"
    escaped = [k for k in results if k.startswith("feed/a")]
    assert escaped and all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*.en.txt"))


def test_missing_model_exits_nonzero_with_the_install_command(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")  # type: ignore[call-arg]
    result = newsmt(["translate", str(SEEDS), "--out", str(tmp_path / "out")], settings)
    assert result.returncode == 1
    assert "newsmt models pull translate:ar-en" in result.stderr
    assert "newsmt models pull translate:he-en" in result.stderr
    assert not list((tmp_path / "out").glob("*.en.txt"))  # nothing stands in for a translation
    listing = newsmt(["models", "list"], settings)
    assert listing.returncode == 0 and "NOT INSTALLED" in listing.stdout
    pull = newsmt(["models", "pull"], settings)
    assert pull.returncode != 0 and "newsmt models import" in pull.stderr


def test_models_import_then_translate_and_cache_clear(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = Settings(_env_file=None, models_dir=tmp_path / "models", cache_dir=tmp_path / "cache",  # type: ignore[call-arg]
                        beam_size=1, max_output_tokens=8)
    for lang in ("ar", "he"):
        imported = newsmt(["models", "import", f"translate:{lang}-en", str(tiny_models[lang])], settings)
        assert imported.returncode == 0, imported.stderr
    listing = json.loads(newsmt(["models", "list", "--json"], settings).stdout)
    translation = [row for row in listing if row["task"].startswith("translate:")]
    assert len(translation) == 2 and all(row["installed"] and row["origin"] == "imported" for row in translation)
    assert newsmt(["translate", str(SEEDS / f"{SEED_IDS[0]}.txt"), "--out", "o"], settings,
                  cwd=tmp_path).returncode == 0
    assert (tmp_path / "o" / "results.jsonl").exists()  # a relative --out is relative to the working directory
    cleared = newsmt(["cache", "clear"], settings)
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert json.loads(newsmt(["cache", "stats", "--json"], settings).stdout)["entries"] == 0


@pytest.mark.parametrize("args", [["translate", "does-not-exist", "--out", "x"],
                                  ["translate", str(SEEDS), "--out", "x", "--source", "fr"],
                                  ["translate", str(SEEDS), "--out", "x", "--cluster", "spark"],
                                  ["translate", str(SEEDS), "--out", "x", "--cluster", "ray", "--concurrency", "3,1"]])
def test_usage_errors_exit_2_and_write_nothing(settings: Settings, args: list[str], tmp_path: Path) -> None:
    # Run where the relative --out would land (a good run does create it there: see the import test below).
    result = newsmt(args, settings, cwd=tmp_path)
    assert result.returncode == 2 and "error:" in result.stderr
    assert not (tmp_path / "x").exists()


def test_exit_codes_come_from_one_table() -> None:
    assert mapped(EXIT_CODES, EmptyText("text is empty"), EXIT_FAILED) == EXIT_USAGE  # an InvalidInput
    assert mapped(EXIT_CODES, UnknownTask("translate:fr-en"), EXIT_FAILED) == EXIT_USAGE
    missing = ModelNotInstalled("translate:ar-en", "x", "newsmt models pull translate:ar-en")
    assert mapped(EXIT_CODES, missing, EXIT_FAILED) == EXIT_FAILED
