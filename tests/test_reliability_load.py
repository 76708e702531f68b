"""Load: `bench/load.py` against a real server (a uvicorn subprocess) with the tiny models: 64 concurrent
connections, cache hits and misses, native and LibreTranslate routes. No 5xx, no time-outs or dropped connections
(overload is a 429 with Retry-After), every translation identical to an in-process reference, RSS bounded.

The full 60 s run is `python -m bench.load`; this 20 s version runs under the `soak` marker (`pytest -m soak`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.load import run_load
from tests.conftest import env_for, settings_for


def load(tmp_path: Path, tiny_models: dict[str, Path], seconds: float) -> dict[str, Any]:
    settings = settings_for(tmp_path, tiny_models, overload_retry_after_seconds=1)
    report = run_load(settings, env_for(settings), connections=64, seconds=seconds, cold=256,
                      max_rss_growth_mb=150, log=tmp_path / "server.log")
    figures = report.summary()
    print(f"\nload: {figures}")
    assert report.ok, figures
    assert report.statuses[200] > 0 and report.cold_sent > 0 and report.cache_misses > 0 and report.cache_hits > 0
    assert set(report.by_route) == {"native", "native_batch", "libre_json", "libre_form"}
    return figures


@pytest.mark.soak
def test_soak_load_holds(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    figures = load(tmp_path, tiny_models, seconds=20)
    assert figures["statuses"].get(429, 0) > 0  # 64 connections over 16 in-flight slots: overload was exercised
