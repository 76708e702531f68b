"""The native /v1 API and the operations routes, over a real uvicorn on loopback with the tiny models."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.text.cleaning import clean_document
from tests.conftest import LiveServer, env_for, seed, settings_for

ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u06ff]")
SEGMENTS_METRIC = "newsmt_inference_batch_segments_count"  # one sample per model generate call


def first_lines(name: str, count: int) -> str:
    """A short, real article: the first `count` paragraphs of a seed (distinct per test, so caches don't mix)."""
    return "\n\n".join(clean_document(seed(name)).paragraphs[:count])


@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def post(server: LiveServer, body: dict, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/translate", json=body, timeout=120, **kwargs)  # type: ignore[arg-type]


def test_translate_one_arabic_article_with_metadata(server: LiveServer) -> None:
    text = seed("001")
    response = post(server, {"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    [result] = body["results"]
    assert result["detected_language"] == "ar" and result["language_confidence"] > 0.5
    assert result["source_url"].startswith("https://vietnamnet.vn/")
    assert result["translation"].strip() and not ARABIC_OR_HEBREW.search(result["translation"])
    assert result["translation"].count("\n\n") == len(clean_document(text).paragraphs) - 1
    assert result["segments"] > 1 and result["cached_segments"] == 0
    [model] = result["models"]
    assert model["task"] == "translate:ar-en" and model["revision"].startswith("sha256:")
    assert result["paragraphs"] is None
    usage = body["usage"]
    assert (usage["segments"], usage["cache_hits"], usage["cache_misses"]) == (result["segments"], 0,
                                                                               result["segments"])
    assert usage["elapsed_ms"] > 0


def test_translate_many_with_paragraphs(server: LiveServer) -> None:
    texts = [first_lines("000", 2), first_lines("002", 2)]
    response = post(server, {"texts": texts, "source": "auto", "options": {"return_segments": True}})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["detected_language"] for r in results] == ["he", "ar"]
    assert [r["models"][0]["task"] for r in results] == ["translate:he-en", "translate:ar-en"]
    for text, result in zip(texts, results, strict=True):
        assert [p["source"] for p in result["paragraphs"]] == text.split("\n\n")
        assert all(p["translation"] and not ARABIC_OR_HEBREW.search(p["translation"]) for p in result["paragraphs"])


def test_repeat_is_served_from_cache_with_no_model_calls(server: LiveServer) -> None:
    text = first_lines("003", 3)
    cold = post(server, {"text": text, "source": "ar"}).json()
    generate_calls = server.metric(SEGMENTS_METRIC)
    hits = server.metric("newsmt_cache_hits_total")
    warm = post(server, {"text": text, "source": "ar"}).json()
    assert warm["results"][0]["translation"] == cold["results"][0]["translation"]
    assert warm["results"][0]["cached_segments"] == warm["results"][0]["segments"] > 0
    assert warm["usage"]["cache_misses"] == 0
    assert server.metric(SEGMENTS_METRIC) == generate_calls  # no model call at all
    assert server.metric("newsmt_cache_hits_total") == hits + warm["usage"]["cache_hits"]


def test_identical_concurrent_requests_cause_one_inference(server: LiveServer) -> None:
    text = first_lines("004", 1)  # a few sentences: one batch, i.e. one generate call, when translated once
    assert httpx.post(f"{server.url}/v1/models/translate:ar-en/unload", timeout=30).status_code == 200
    calls_before = server.metric(SEGMENTS_METRIC, task="translate:ar-en")
    loads_before = server.metric("newsmt_model_load_seconds_count", task="translate:ar-en")
    coalesced_before = server.metric("newsmt_coalesced_requests_total")
    start = threading.Barrier(20)
    responses: list[httpx.Response] = []

    def call() -> None:
        start.wait()
        responses.append(post(server, {"text": text}))

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["results"][0]["translation"] for r in responses}) == 1
    assert server.metric(SEGMENTS_METRIC, task="translate:ar-en") == calls_before + 1
    assert server.metric("newsmt_model_load_seconds_count", task="translate:ar-en") == loads_before + 1
    assert server.metric("newsmt_coalesced_requests_total") > coalesced_before


def test_models_list_load_unload(server: LiveServer) -> None:
    models = httpx.get(f"{server.url}/v1/models", timeout=30).json()
    by_task = {m["task"]: m for m in models}
    assert by_task["translate:ar-en"]["installed"] and by_task["translate:he-en"]["installed"]
    loaded = httpx.post(f"{server.url}/v1/models/translate:he-en/load", timeout=60)
    assert loaded.status_code == 200 and loaded.json()["task"] == "translate:he-en"
    assert loaded.json()["revision"].startswith("sha256:")
    listed = {m["task"]: m for m in httpx.get(f"{server.url}/v1/models", timeout=30).json()}
    assert listed["translate:he-en"]["loaded"]["backend"]
    assert httpx.post(f"{server.url}/v1/models/translate:he-en/unload", timeout=30).json() == {
        "task": "translate:he-en", "unloaded": True}
    assert httpx.post(f"{server.url}/v1/models/translate:he-en/unload", timeout=30).json()["unloaded"] is False
    unknown = httpx.post(f"{server.url}/v1/models/translate:fr-en/load", timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_task"
    assert "translate:ar-en" in unknown.json()["error"]["message"]


def test_health_readiness_and_cache_stats(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "reasons": []}
    post(server, {"text": first_lines("001", 1)})
    stats = httpx.get(f"{server.url}/v1/cache/stats", timeout=30).json()
    assert stats["available"] and stats["entries"] > 0 and stats["misses"] > 0
    assert (stats["backend"], stats["location"]) == ("diskcache", str(server.settings.cache_dir))


def test_metrics_count_requests_by_route_and_status(server: LiveServer) -> None:
    ok = server.metric("newsmt_http_requests_total", route="/v1/translate", status="200")
    bad = server.metric("newsmt_http_requests_total", route="/v1/translate", status="422")
    latency = server.metric("newsmt_http_request_duration_seconds_count", route="/v1/translate")
    post(server, {"text": first_lines("002", 1)})
    post(server, {"text": "   "})
    assert server.metric("newsmt_http_requests_total", route="/v1/translate", status="200") == ok + 1
    assert server.metric("newsmt_http_requests_total", route="/v1/translate", status="422") == bad + 1
    assert server.metric("newsmt_http_request_duration_seconds_count", route="/v1/translate") == latency + 2
    assert server.metric("newsmt_inference_tokens_total") > 0


def test_openapi_documents_arabic_and_hebrew_examples(server: LiveServer) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/summarize" in spec["paths"] and "/v1/articles" in spec["paths"]  # service/api/summarize.py
    examples = str(spec["paths"]["/v1/translate"]["post"]["requestBody"])
    assert re.search(r"[\u0600-\u06ff]", examples) and re.search(r"[\u0590-\u05ff]", examples)
    lt_examples = str(spec["paths"]["/translate"]["post"]["requestBody"])
    assert re.search(r"[\u0600-\u06ff]", lt_examples) and re.search(r"[\u0590-\u05ff]", lt_examples)
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_serve_command_runs_the_service(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                               env=env_for(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "newsmt serve did not come up"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        translated = httpx.post(f"http://127.0.0.1:{port}/v1/translate", timeout=120,
                                json={"text": first_lines("000", 1)})
        assert translated.status_code == 200 and translated.json()["results"][0]["detected_language"] == "he"
    finally:
        process.terminate()
        process.wait(timeout=30)
