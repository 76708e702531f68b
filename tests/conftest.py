"""Shared fixtures: tiny real Marian models built from seeds/, isolated settings, and a call counter.

Nothing here downloads anything; every component (tokenizers, models, diskcache) is real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from service.api.app import create_app
from service.cache.segment_cache import SegmentCache
from service.config import Settings
from service.engines.manager import ModelManager
from service.pipeline.translate import Pipeline
from service.testing.copy_model import ENGLISH_NAMES, EXAMPLES, build_copy_marian
from service.testing.redis_server import REDIS_SERVER, RedisServer
from service.testing.tiny_models import build_tiny_bart, build_tiny_marian, english_corpus, seed_texts
from service.text.cleaning import clean_document

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
#: Every paragraph of the seed articles, cleaned: distinct real texts for tests that need many.
PARAGRAPHS = [p for path in sorted(SEEDS.glob("*.txt")) for p in clean_document(path.read_text("utf-8")).paragraphs]


def require_program(path: Path, package: str) -> None:
    """Skip a test whose system program is missing on a developer's machine, but fail it under CI (`CI=true`):
    there the README's test command installs every program, so a missing one is a broken set-up, not a reason to
    report green with tests left out."""
    if path.exists():
        return
    reason = f"needs {path} (Debian package {package}; the README's test command installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


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


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BART summarizer (128 positions); tests opt in with summary_model=str(tiny_bart)."""
    return build_tiny_bart(tmp_path_factory.mktemp("tiny-bart") / "summarize", english_corpus(), seed=3)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start_serve(settings: Settings, port: int) -> subprocess.Popen[str]:
    """`newsmt serve` as a user runs it (no --host), ready to answer."""
    process = launch_serve(settings, port)
    wait_serving(process, port)
    return process


def launch_serve(settings: Settings, port: int, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`newsmt serve` started, not yet waited for (so that several start at once); `env` adds variables."""
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                            env={**env_for(settings), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_serving(process: subprocess.Popen[str], port: int) -> None:
    def answers() -> bool:
        assert process.poll() is None, process.communicate()[0]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, "newsmt serve to start", timeout=120)
@pytest.fixture(scope="session")
def copy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Marian trained to copy its input (service/testing/copy_model.py), for both languages: for tests of
    what a model says (pinned terms, alternatives, scores, sentence ends). One training run per session."""
    path = build_copy_marian(tmp_path_factory.mktemp("copy-model") / "copy",
                             [*seed_texts(SEEDS), *english_corpus(), *EXAMPLES.values(), *ENGLISH_NAMES])
    return {"ar": path, "he": path}


def settings_for(root: Path, tiny_models: dict[str, Path], **overrides: object) -> Settings:
    values: dict = {
        "models_dir": root / "models",
        "cache_dir": root / "cache",
        "glossaries_dir": root / "glossaries",
        "documents_dir": root / "documents",
        "jobs_dir": root / "jobs",
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
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"NEWSMT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture
def settings(tmp_path: Path, tiny_models: dict[str, Path]) -> Settings:
    return settings_for(tmp_path, tiny_models)


class BatchLog:
    """Records every inference batch the model manager's batcher sends to an engine (via its metrics hook)."""

    def __init__(self) -> None:
        self.segments: Counter[str] = Counter()
        self.batches = 0
        self.log: list[tuple[str, int, int]] = []  # (task, texts, source tokens) of each batch, in order

    def __call__(self, task: str, segments: int, tokens: int) -> None:
        self.segments[task] += segments
        self.batches += 1
        self.log.append((task, segments, tokens))

    @property
    def total(self) -> int:
        return sum(self.segments.values())


def make_pipeline(settings: Settings) -> tuple[Pipeline, BatchLog]:
    log = BatchLog()
    cache = SegmentCache.from_settings(settings)
    return Pipeline(settings, ModelManager(settings, on_batch=log), cache), log


def seed(name: str) -> str:
    return next(SEEDS.glob(f"{name}_*.txt")).read_text(encoding="utf-8")


def metric_at(url: str, name: str, **labels: str) -> float:
    """Sum of the /metrics samples named `name` whose labels include `labels` (0 when there are none)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


class LiveServer:
    """A real uvicorn serving `create_app(settings)` on a free loopback port, in a thread of the test process (so
    the session's tiny models and imported torch are reused and start-up takes milliseconds)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)
        self.url = ""

    def start(self, timeout: float = 30.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def metric(self, name: str, **labels: str) -> float:
        return metric_at(self.url, name, **labels)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory,
                tiny_models: dict[str, Path]) -> Iterator[Callable[..., LiveServer]]:
    """Starts servers for a test module: `live_server(**setting_overrides)`; each gets its own cache and models
    folder and is stopped when the module is done."""
    servers: list[LiveServer] = []

    def start(**overrides: object) -> LiveServer:
        with pytest.MonkeyPatch.context() as env:  # module scope runs before the per-test env isolation
            for name in [n for n in os.environ if n.startswith("NEWSMT_")]:
                env.delenv(name)
            settings = settings_for(tmp_path_factory.mktemp("server"), tiny_models, **overrides)
        servers.append(LiveServer(settings).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Starts real redis-servers on free loopback ports: `redis_server(*server_options, password=None)`; each is
    stopped when the test is done."""
    require_program(Path(REDIS_SERVER), "redis-server")
    servers: list[RedisServer] = []

    def start(*args: str, password: str | None = None) -> RedisServer:
        servers.append(RedisServer(tmp_path_factory.mktemp("redis"), *args, password=password).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
