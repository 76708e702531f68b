"""POST /v1/summarize and POST /v1/articles over a real uvicorn with the tiny models: with and without the
summary model, both strategies, the cache, errors in the native shape, and API keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.text.cleaning import clean_document
from tests.conftest import LiveServer, seed

INSTALL_HINT = "newsmt models pull summarize"
SUMMARY_BATCHES = "newsmt_inference_batch_segments_count"  # one sample per generate call, labelled by task


def first_lines(name: str, count: int) -> str:
    return "\n\n".join(clean_document(seed(name)).paragraphs[:count])


def post(server: LiveServer, path: str, body: dict, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{path}", json=body, timeout=120, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plain(live_server: Callable[..., LiveServer]) -> LiveServer:
    """Only the translation models, as on a machine where `models pull summarize` never ran."""
    return live_server()


@pytest.fixture(scope="module")
def with_bart(live_server: Callable[..., LiveServer], tiny_bart: Path) -> LiveServer:
    return live_server(summary_model=str(tiny_bart), summary_beam_size=1)


def test_summarize_without_the_model_falls_back_to_lexrank(plain: LiveServer) -> None:
    response = post(plain, "summarize", {"text": seed("001"), "max_words": 50})
    assert response.status_code == 200, response.text
    body = response.json()
    [result] = body["results"]
    info = result["summarizer"]
    assert (info["method"], info["engine"], info["strategy"]) == ("extractive", "lexrank", "translate_then_summarize")
    assert INSTALL_HINT in info["fallback"] and result["summary"] and info["words"] <= 50
    assert result["detected_language"] == "ar" and result["source_url"].startswith("https://vietnamnet.vn/")
    assert result["models"][0]["task"] == "translate:ar-en"
    assert body["usage"]["segments"] > 1 and body["usage"]["elapsed_ms"] > 0


def test_articles_translates_and_summarizes_then_serves_the_repeat_from_cache(with_bart: LiveServer) -> None:
    texts = [first_lines("000", 3), first_lines("002", 3)]
    body = {"texts": texts, "max_words": 30, "options": {"return_segments": True}}
    cold = post(with_bart, "articles", body)
    assert cold.status_code == 200, cold.text
    results = cold.json()["results"]
    assert [r["detected_language"] for r in results] == ["he", "ar"]
    for text, result in zip(texts, results, strict=True):
        assert result["translation"] and result["segments"] > 0 and result["models"]
        assert [p["source"] for p in result["paragraphs"]] == text.split("\n\n")
        info = result["summarizer"]
        assert (info["method"], info["cached"], info["fallback"]) == ("abstractive", False, None)
        assert result["summary"] and info["words"] <= 30 and info["revision"].startswith("sha256:")
    model_calls = with_bart.metric(SUMMARY_BATCHES, task="summarize")
    assert model_calls > 0
    warm = post(with_bart, "articles", body).json()
    assert [r["summary"] for r in warm["results"]] == [r["summary"] for r in results]
    assert all(r["summarizer"]["cached"] for r in warm["results"]) and warm["usage"]["cache_misses"] == 0
    assert with_bart.metric(SUMMARY_BATCHES, task="summarize") == model_calls  # no model call at all


def test_summarize_then_translate_translates_only_the_picked_sentences(plain: LiveServer) -> None:
    text = seed("003")  # 29 sentences
    response = post(plain, "summarize", {"text": text, "strategy": "summarize_then_translate", "max_sentences": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    [result] = body["results"]
    info = result["summarizer"]
    assert (info["method"], info["strategy"], info["fallback"]) == ("extractive", "summarize_then_translate", None)
    assert result["summary"] and result["detected_language"] == "ar"
    assert 1 <= body["usage"]["segments"] <= 2


def test_errors_in_the_native_shape(plain: LiveServer) -> None:
    missing = post(plain, "summarize", {"text": first_lines("004", 2), "method": "abstractive"})
    assert missing.status_code == 503 and missing.json()["error"]["code"] == "model_not_installed"
    assert INSTALL_HINT in missing.json()["error"]["message"]
    clash = post(plain, "summarize", {"text": "x", "method": "abstractive", "strategy": "summarize_then_translate"})
    assert clash.status_code == 422 and clash.json()["error"]["code"] == "invalid_input"
    both = post(plain, "articles", {"text": "a", "texts": ["b"]})
    assert both.status_code == 422 and both.json()["error"]["code"] == "invalid_request"
    empty_item = post(plain, "articles", {"texts": [first_lines("004", 1), "   "]})
    assert empty_item.status_code == 422 and empty_item.json()["error"]["message"].startswith("texts[1]: ")


def test_routes_need_a_bearer_key_when_keys_are_set(live_server: Callable[..., LiveServer]) -> None:
    secured = live_server(api_keys=["k3y"])
    body = {"text": "The minister met his counterpart on Monday. They discussed trade.", "source": "en"}
    assert post(secured, "summarize", body).status_code == 401
    assert post(secured, "articles", body).status_code == 401
    allowed = post(secured, "summarize", body, headers={"Authorization": "Bearer k3y"})
    assert allowed.status_code == 200 and allowed.json()["results"][0]["summary"]
