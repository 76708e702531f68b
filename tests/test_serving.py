"""The serving layer over a real uvicorn with the tiny models: summaries get the translations' treatment (time
limit, in-flight bound, coalescing), models unloaded under traffic fail no request, and idle models are unloaded."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.text.cleaning import clean_document
from tests.conftest import LiveServer, seed

AR = "translate:ar-en"
ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u05ff\u0600-\u06ff]")


def post(server: LiveServer, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def loaded(server: LiveServer, task: str) -> bool:
    models = httpx.get(f"{server.url}/v1/models", timeout=30).json()
    return next(m for m in models if m["task"] == task)["loaded"] is not None


def test_summaries_time_out_with_504_and_are_refused_with_429_when_busy(live_server: Callable[..., LiveServer],
                                                                         tiny_bart: Path) -> None:
    # As for translations: a time limit no summary can meet, and a single slot that the abandoned work keeps.
    server = live_server(request_timeout_seconds=0.001, max_inflight_requests=1, overload_retry_after_seconds=3,
                         summary_model=str(tiny_bart), summary_beam_size=1)
    slow = "\n\n".join(seed(name) for name in ("001", "002", "003"))
    status, code, message = error(post(server, "/v1/summarize", {"text": slow, "method": "abstractive"}))
    assert (status, code) == (504, "timeout")
    assert message.startswith("summary did not finish within 0.001 s (NEWSMT_REQUEST_TIMEOUT_SECONDS)")
    for path in ("/v1/articles", "/v1/summarize", "/v1/translate"):  # one bound for every model call
        busy = post(server, path, {"text": seed("004")})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "3", (path, busy.text)
        assert "the limit is 1 (NEWSMT_MAX_INFLIGHT_REQUESTS)" in busy.json()["error"]["message"]
    wait_until(lambda: server.metric("newsmt_inflight_translations") == 0, "the abandoned summary")
    # It finished in the background: the summary model ran, and its work is in the cache.
    assert server.metric("newsmt_inference_batch_segments_count", task="summarize") > 0
    assert httpx.get(f"{server.url}/v1/cache/stats", timeout=30).json()["entries"] > 1


def test_identical_concurrent_summaries_share_one_run(live_server: Callable[..., LiveServer],
                                                     tiny_bart: Path) -> None:
    server = live_server(summary_model=str(tiny_bart), summary_beam_size=1)
    text = "\n\n".join(clean_document(seed("002")).paragraphs[:3])
    coalesced_before = server.metric("newsmt_coalesced_requests_total")
    start = threading.Barrier(8)
    responses: list[httpx.Response] = []

    def call() -> None:
        start.wait()
        responses.append(post(server, "/v1/summarize", {"text": text, "method": "abstractive"}))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len({r.json()["results"][0]["summary"] for r in responses}) == 1
    assert {r.json()["results"][0]["summarizer"]["method"] for r in responses} == {"abstractive"}
    assert server.metric("newsmt_coalesced_requests_total") > coalesced_before
    assert server.metric("newsmt_model_load_seconds_count", task="summarize") == 1


def distinct_texts(count: int) -> list[str]:
    """`count` different short Arabic texts: windows of the seed articles' words, numbered past the last window."""
    words = " ".join(p for name in ("001", "002", "003", "004") for p in clean_document(seed(name)).paragraphs).split()
    windows = [" ".join(words[i:i + 7]) for i in range(0, len(words) - 7, 3)]
    return [f"{windows[i % len(windows)]} {i // len(windows)}" if i >= len(windows) else windows[i]
            for i in range(count)]


@pytest.mark.parametrize("seconds", [8, pytest.param(20, marks=pytest.mark.soak)])
def test_unloading_the_model_under_traffic_fails_no_request(live_server: Callable[..., LiveServer],
                                                           seconds: float) -> None:
    server = live_server()
    texts = iter(distinct_texts(4000))
    lock = threading.Lock()
    answers: list[tuple[str, httpx.Response]] = []
    unloads: list[bool] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with lock:
                text = next(texts)
            answers.append((text, post(server, "/v1/translate", {"text": text, "source": "ar"})))

    def unloader() -> None:
        while not stop.wait(0.3):
            response = httpx.post(f"{server.url}/v1/models/{AR}/unload", timeout=60)
            assert response.status_code == 200, response.text
            unloads.append(response.json()["unloaded"])

    threads = [threading.Thread(target=client) for _ in range(4)] + [threading.Thread(target=unloader)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    failed = [(r.status_code, r.text) for _, r in answers if r.status_code != 200]
    assert not failed, failed[:3]
    assert len(answers) > 20 and sum(unloads) >= 3  # real traffic, and the model really went away repeatedly
    for text, response in answers:
        [result] = response.json()["results"]
        translation = result["translation"]
        assert translation and translation != text and not ARABIC_OR_HEBREW.search(translation)
        assert result["models"][0]["task"] == AR and result["segments"] >= 1
    assert server.metric("newsmt_model_load_seconds_count", task=AR) >= 3


def test_idle_models_are_unloaded_and_load_again_on_demand(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(model_idle_unload_seconds=0.5)
    [first, second] = distinct_texts(2)
    assert post(server, "/v1/translate", {"text": first, "source": "ar"}).status_code == 200
    wait_until(lambda: not loaded(server, AR), "the idle unload", timeout=30)
    response = post(server, "/v1/translate", {"text": second, "source": "ar"})
    assert response.status_code == 200 and response.json()["results"][0]["translation"]
    assert server.metric("newsmt_model_load_seconds_count", task=AR) == 2
