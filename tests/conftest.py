"""Shared fixtures: tiny real Marian models built from seeds/, isolated settings, and a call counter.

Nothing here downloads anything; every component (tokenizers, models, diskcache) is real.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from service.cache import SegmentCache
from service.config import Settings
from service.manager import ModelManager
from service.pipeline import Pipeline
from tests.tiny_models import build_tiny_marian, english_corpus, seed_texts

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they pass: no NEWSMT_* from the caller's shell, no hub access."""
    for name in list(os.environ):
        if name.startswith("NEWSMT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two distinct tiny Marian checkpoints (ar-en and he-en), saved with save_pretrained like OPUS-MT."""
    root = tmp_path_factory.mktemp("tiny-models")
    source, target = seed_texts(SEEDS), english_corpus()
    return {
        "ar": build_tiny_marian(root / "ar-en", source, target, seed=1),
        "he": build_tiny_marian(root / "he-en", source, target, seed=2),
    }


def settings_for(root: Path, tiny_models: dict[str, Path], **overrides: object) -> Settings:
    values: dict = {
        "models_dir": root / "models",
        "cache_dir": root / "cache",
        "ar_en_model": str(tiny_models["ar"]),
        "he_en_model": str(tiny_models["he"]),
        "beam_size": 1,
        "max_output_tokens": 12,
        "batch_size": 8,
        "max_input_tokens": 100,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def env_for(settings: Settings) -> dict[str, str]:
    """The same settings as NEWSMT_* variables, for CLI and server subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMT_")}
    for name, value in settings.model_dump().items():
        if name in settings.model_fields_set:
            env[f"NEWSMT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture
def settings(tmp_path: Path, tiny_models: dict[str, Path]) -> Settings:
    return settings_for(tmp_path, tiny_models)


class BatchLog:
    """Records every inference batch the pipeline sends to an engine (via its metrics hook)."""

    def __init__(self) -> None:
        self.segments: Counter[str] = Counter()
        self.batches = 0

    def __call__(self, task: str, segments: int, tokens: int) -> None:
        self.segments[task] += segments
        self.batches += 1

    @property
    def total(self) -> int:
        return sum(self.segments.values())


def make_pipeline(settings: Settings) -> tuple[Pipeline, BatchLog]:
    log = BatchLog()
    cache = SegmentCache(settings.cache_dir, settings.cache_size_limit, settings.cache_retry_seconds)
    return Pipeline(settings, ModelManager(settings), cache, on_batch=log), log


def seed(name: str) -> str:
    return next(SEEDS.glob(f"{name}_*.txt")).read_text(encoding="utf-8")
