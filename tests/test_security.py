"""Security: API keys compared in constant time and never logged, per-caller rate limiting with 429, models loaded
only from safetensors and never with remote code, and a server that listens on loopback unless told otherwise."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn
from pydantic import SecretStr
from transformers import MarianMTModel

from service.api import deps
from service.api.app import create_app
from service.config import Settings
from service.engines.transformers_engine import TransformersEngine
from service.errors import AuthenticationRequired, InvalidApiKey, ModelLoadError, RateLimited
from service.serving.ratelimit import RateLimiter, address_identity, key_identity
from tests.conftest import LiveServer, seed, settings_for

KEY, OTHER_KEY = "s3cret-key-0123456789abcdef", "another-key-9876543210"
TEXT = "ראש הממשלה נפגש היום עם שר החוץ."


# -- API keys ----------------------------------------------------------------------------------------------------
def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared, every time, as equal-length digests: neither which key matched, nor how
    much of a guess was right, nor a key's length can show in the timing."""
    calls: list[tuple[int, int]] = []
    real = deps.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", counting)
    settings = Settings(_env_file=None, api_keys=[SecretStr(KEY), SecretStr(OTHER_KEY)])  # type: ignore[call-arg]
    for offered in (KEY, OTHER_KEY, KEY[:-1] + "X", "x", "k" * 10_000, "\udfff"):
        calls.clear()
        try:
            deps.check_api_key(settings, offered)
        except InvalidApiKey:
            assert offered not in (KEY, OTHER_KEY)
        assert calls == [(32, 32), (32, 32)]  # both keys, full sha256 digests, whichever matched
    with pytest.raises(AuthenticationRequired):
        deps.check_api_key(settings, None)


@pytest.fixture
def verbose_server(tiny_models: dict[str, Path], tmp_path: Path) -> Iterator[str]:
    """A real uvicorn with access logs on, logging into the root logger (where caplog listens): what an operator's
    log file would receive. The he-en model is missing, so a request also produces a server-side warning."""
    settings = settings_for(tmp_path, tiny_models, api_keys=[KEY], he_en_model="Helsinki-NLP/opus-mt-tc-big-he-en")
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="debug", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)


def test_keys_never_reach_the_logs_or_the_responses(verbose_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url, bearer, near_miss = verbose_server, {"Authorization": f"Bearer {KEY}"}, KEY[:-1] + "Z"
    responses = [
        httpx.post(f"{url}/v1/translate", json={"text": seed("001")[:300]}, headers=bearer, timeout=60),
        httpx.post(f"{url}/v1/translate", json={"text": TEXT}, headers=bearer, timeout=60),  # 503, logged
        httpx.post(f"{url}/v1/translate", json={"text": TEXT}, headers={"Authorization": f"Bearer {near_miss}"}),
        httpx.post(f"{url}/v1/translate", json={"text": TEXT, "api_key": KEY}),  # not where /v1 reads keys
        httpx.post(f"{url}/translate", json={"q": TEXT, "source": "he", "target": "en", "api_key": KEY}, timeout=60),
        httpx.post(f"{url}/translate", data={"q": TEXT, "source": "he", "target": "en", "api_key": near_miss}),
        httpx.post(f"{url}/detect", data={"q": TEXT, "api_key": KEY}),
        httpx.post(f"{url}/translate?api_key={KEY}", data={"q": TEXT, "source": "he", "target": "en"}),
        httpx.get(f"{url}/v1/models?api_key={near_miss}", headers=bearer),
    ]
    assert [r.status_code for r in responses] == [200, 503, 403, 401, 503, 403, 200, 401, 200]
    client = ("httpx", "httpcore")  # this test's own HTTP client logs the URLs it was asked to send
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(client))
    assert "POST /translate?api_key=[redacted]" in logged  # the access log is on and saw those requests
    for key in (KEY, near_miss):
        assert key not in logged
        assert not any(key in r.text or key in str(r.headers) for r in responses)


# -- rate limiting -----------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_minute_at_once_then_meters_it() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one request every 10 s, six at once
    for _ in range(6):
        limiter.acquire("key:a")
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("key:a")
    assert refused.value.retry_after == 10 and "6 requests per minute per API key" in str(refused.value)
    limiter.acquire("key:b")  # another caller has its own allowance
    clock.now += 9.9
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("key:a")
    assert refused.value.retry_after == 1
    clock.now += 0.1
    limiter.acquire("key:a")  # one more after 10 s
    clock.now += 3600
    for _ in range(6):  # an idle hour refills to the cap, never beyond it
        limiter.acquire("key:a")
    with pytest.raises(RateLimited):
        limiter.acquire("key:a")
    RateLimiter(0).acquire("ip:anyone")  # 0: off


def test_rate_limiter_remembers_a_bounded_number_of_callers() -> None:
    limiter = RateLimiter(1, max_callers=100, clock=Clock())
    for n in range(10_000):
        limiter.acquire(address_identity(f"10.0.{n // 256}.{n % 256}"))
    assert limiter.tracked() == 100
    assert key_identity(KEY) == "key:" + hashlib.sha256(KEY.encode()).hexdigest()[:32]  # digest, not the key


def test_rate_limit_is_per_key_with_429_and_retry_after(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(api_keys=[KEY, OTHER_KEY], rate_limit_per_minute=4)
    bearer = {"Authorization": f"Bearer {KEY}"}
    statuses = [httpx.get(f"{server.url}/v1/cache/stats", headers=bearer).status_code for _ in range(3)]
    statuses.append(httpx.post(f"{server.url}/detect", data={"q": TEXT, "api_key": KEY}).status_code)  # same key
    assert statuses == [200] * 4
    refused = httpx.post(f"{server.url}/v1/translate", json={"text": TEXT}, headers=bearer)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "NEWSMT_RATE_LIMIT_PER_MINUTE" in refused.json()["error"]["message"]
    libre = httpx.post(f"{server.url}/translate", data={"q": TEXT, "source": "he", "target": "en", "api_key": KEY})
    assert libre.status_code == 429 and "Retry-After" in libre.headers and "rate limit" in libre.json()["error"]
    other = httpx.get(f"{server.url}/v1/cache/stats", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 200  # each key has its own allowance
    for path in ("/healthz", "/readyz", "/metrics", "/languages"):  # probes and scrapers are never limited
        assert all(httpx.get(f"{server.url}{path}").status_code == 200 for _ in range(6))


def test_rate_limit_without_keys_is_per_address_and_counts_key_guesses(
        live_server: Callable[..., LiveServer]) -> None:
    open_server = live_server(rate_limit_per_minute=3)
    assert [httpx.get(f"{open_server.url}/v1/cache/stats").status_code for _ in range(4)] == [200, 200, 200, 429]
    keyed = live_server(api_keys=[KEY], rate_limit_per_minute=3)
    guesses = [httpx.get(f"{keyed.url}/v1/cache/stats", headers={"Authorization": f"Bearer guess{i}"})
               for i in range(5)]
    assert [g.status_code for g in guesses] == [403, 403, 403, 429, 429]  # guessing keys is rate limited too
    assert httpx.get(f"{keyed.url}/v1/cache/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_rate_limiting_is_off_by_default() -> None:
    assert Settings(_env_file=None).rate_limit_per_minute == 0  # type: ignore[call-arg]


# -- model loading -----------------------------------------------------------------------------------------------
def model_without_safetensors(source: Path, destination: Path) -> Path:
    """The same model with its weights as a pickle `pytorch_model.bin`, as legacy hub repositories ship them."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(MarianMTModel.from_pretrained(source).state_dict(), destination / "pytorch_model.bin")
    return destination


class PlantsAFile:
    """A pickle payload: unpickling it would create `marker`, i.e. run code of the file's author's choosing."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_pickle_weights_are_refused_unless_allowed(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    legacy = model_without_safetensors(tiny_models["ar"], tmp_path / "legacy")
    with pytest.raises(ModelLoadError, match=r"no \.safetensors weights.*NEWSMT_ALLOW_PICKLE_WEIGHTS"):
        TransformersEngine(legacy)
    assert TransformersEngine(legacy, allow_pickle_weights=True).count_tokens(["التقى"])  # explicitly allowed


def test_even_allowed_pickle_weights_never_run_code(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    hostile = model_without_safetensors(tiny_models["ar"], tmp_path / "hostile")
    marker = tmp_path / "pwned"
    torch.save({"model.shared.weight": PlantsAFile(marker)}, hostile / "pytorch_model.bin")
    with pytest.raises(ModelLoadError):
        TransformersEngine(hostile, allow_pickle_weights=True)  # torch's weights-only unpickler refuses it
    assert not marker.exists()


def test_remote_code_in_a_model_directory_is_never_run(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A model directory whose config and tokenizer config point at Python files of their own (`auto_map`), as
    `trust_remote_code` models do: loading it fails clearly and none of that code runs."""
    hostile = tmp_path / "remote-code"
    shutil.copytree(tiny_models["ar"], hostile)
    marker = tmp_path / "pwned"
    plant = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    for module in ("configuration_evil", "modeling_evil", "tokenization_evil"):
        (hostile / f"{module}.py").write_text(plant, encoding="utf-8")
    (hostile / "config.json").write_text(
        '{"model_type": "evil", "architectures": ["EvilModel"], "auto_map": {'
        '"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForSeq2SeqLM": "modeling_evil.EvilModel"}}')
    (hostile / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "EvilTokenizer", '
        '"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", null]}}')
    with pytest.raises(ModelLoadError, match="cannot load model"):
        TransformersEngine(hostile)
    assert not marker.exists()


# -- where the server listens ------------------------------------------------------------------------------------
def test_the_default_bind_address_is_loopback() -> None:
    """The live check, `newsmt serve` with no --host listening on 127.0.0.1 only, is part of the SIGTERM test in
    tests/test_reliability_faults.py, which starts that very process anyway."""
    assert Settings(_env_file=None).host == "127.0.0.1"  # type: ignore[call-arg]
