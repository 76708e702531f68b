"""Every limit and error the HTTP service documents, with its status and a message that states the limit, plus API
keys (on and off) and CORS; over real uvicorn servers configured for each case."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI

from service.text.cleaning import clean_document
from tests.conftest import LiveServer, make_pipeline, seed

PERSIAN = "وزیر امور خارجه ایران روز دوشنبه در سفری رسمی به مسکو با همتای روسی خود دیدار و گفتگو کرد."
KEY = "k3y-for-tests"
ORIGIN = "https://newsroom.example"


def paragraph(name: str, index: int) -> str:
    return clean_document(seed(name)).paragraphs[index]


def native(server: LiveServer, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/translate", json=body, timeout=120, **kwargs)  # type: ignore[arg-type]


def libre(server: LiveServer, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/translate", timeout=120, **kwargs)  # type: ignore[arg-type]


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


@pytest.fixture(scope="module")
def small(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server(max_request_bytes=4000, max_texts_per_request=3, max_input_chars=300)


def test_body_too_large_is_413_stating_the_limit(small: LiveServer) -> None:
    big = "ש" * 3000  # 6000 bytes of UTF-8
    status, code, message = error(native(small, {"text": big}))
    assert (status, code) == (413, "input_too_large")
    assert "the limit is 4000 bytes (NEWSMT_MAX_REQUEST_BYTES)" in message
    chunked = httpx.post(f"{small.url}/v1/translate", content=iter([b'{"text": "', big.encode(), b'"}']), timeout=30)
    assert chunked.status_code == 413  # no Content-Length: counted while reading
    lt = libre(small, data={"q": big, "source": "he", "target": "en"})
    assert lt.status_code == 413 and "4000 bytes" in lt.json()["error"]


def test_too_many_texts_and_too_long_texts_are_413(small: LiveServer) -> None:
    status, code, message = error(native(small, {"texts": ["שלום"] * 4}))
    assert (status, code) == (413, "input_too_large")
    assert message == "4 texts in one request; the limit is 3 (NEWSMT_MAX_TEXTS_PER_REQUEST)"
    status, _, message = error(native(small, {"texts": ["שלום", "ש" * 301]}))
    assert status == 413
    assert message == "texts[1] has 301 characters; the limit is 300 per text (NEWSMT_MAX_INPUT_CHARS)"
    status, _, message = error(native(small, {"text": "ש" * 301}))
    assert (status, message) == (413, "text has 301 characters; the limit is 300 per text (NEWSMT_MAX_INPUT_CHARS)")
    lt = libre(small, json={"q": ["שלום"] * 4, "source": "he", "target": "en"})
    assert lt.status_code == 400 and "the limit is 3" in lt.json()["error"]  # LibreTranslate's status for limits


def test_empty_text_is_422(small: LiveServer) -> None:
    assert error(native(small, {"text": " \n "}))[:2] == (422, "empty_text")
    status, code, message = error(native(small, {"texts": ["שלום עולם", ""]}))
    assert (status, code) == (422, "empty_text") and message.startswith("texts[1]: ")
    assert error(native(small, {"texts": []}))[:2] == (422, "invalid_request")
    lt = libre(small, data={"q": "  ", "source": "he", "target": "en"})
    assert lt.status_code == 400 and "empty" in lt.json()["error"]


def test_unsupported_language_is_422_naming_what_was_detected(small: LiveServer) -> None:
    status, code, message = error(native(small, {"text": PERSIAN}))
    assert (status, code) == (422, "unsupported_language")
    assert "detected 'fa'" in message


@pytest.mark.parametrize("body", [
    {"text": "שלום", "source": "fr"},
    {"text": 42},
    {"text": "שלום", "texts": ["שלום"]},
    {"text": "שלום", "options": {"beam_size": 0}},
    {"text": "שלום", "extra": True},
    ["שלום"],
])
def test_bad_input_is_422_never_500(small: LiveServer, body: object) -> None:
    status, code, message = error(native(small, body))
    assert (status, code) == (422, "invalid_request") and message


@pytest.mark.parametrize(("content", "content_type"), [
    (b'{"text": ', "application/json"),
    (b"\xff\xfe not utf-8", "application/json"),
    (b"q=%FF%FE&source=he&target=en", "application/x-www-form-urlencoded"),
    (b"--b\r\nContent-Disposition: form-data; name=\"q\"; filename=\"a.txt\"\r\n\r\nx\r\n--b--\r\n",
     "multipart/form-data; boundary=b"),
    (b"garbage", "text/plain"),
])
def test_malformed_bodies_never_give_500(small: LiveServer, content: bytes, content_type: str) -> None:
    for path in ("/v1/translate", "/translate", "/detect"):
        response = httpx.post(f"{small.url}{path}", content=content, headers={"Content-Type": content_type},
                              timeout=30)
        assert response.status_code < 500, (path, response.text)
        assert response.status_code == 200 or response.json()["error"]


def test_model_not_installed_is_503_naming_the_install_command(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(he_en_model="Helsinki-NLP/opus-mt-tc-big-he-en")  # a hub model nobody pulled
    status, code, message = error(native(server, {"text": paragraph("000", 1)}))
    assert (status, code) == (503, "model_not_installed")
    assert "install it with: newsmt models pull translate:he-en" in message
    lt = libre(server, data={"q": paragraph("000", 1), "source": "he", "target": "en"})
    assert lt.status_code == 503 and "newsmt models pull translate:he-en" in lt.json()["error"]
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert any("newsmt models pull translate:he-en" in r for r in ready.json()["reasons"])
    assert native(server, {"text": paragraph("001", 1)}).status_code == 200  # Arabic is installed and still works


def test_timeout_is_504_and_overload_is_429_with_retry_after(live_server: Callable[..., LiveServer]) -> None:
    # A time limit no translation can meet makes the timeout deterministic; the work it abandons (loading the model,
    # then four uncached articles, with room for long outputs) runs on in the background for far longer than the next
    # two requests take.
    server = live_server(request_timeout_seconds=0.001, max_inflight_requests=1, overload_retry_after_seconds=3,
                         max_output_tokens=64)
    repeated = paragraph("003", 1)
    [stored_before] = make_pipeline(server.settings)[0].translate([repeated])  # the same cache, from another process
    slow = "\n\n".join(seed(name) for name in ("001", "002", "003", "004"))
    status, code, message = error(native(server, {"text": slow}))
    assert (status, code) == (504, "timeout")
    assert "within 0.001 s (NEWSMT_REQUEST_TIMEOUT_SECONDS)" in message
    # The abandoned translation still holds the only in-flight slot, so a different request is refused at once.
    busy = native(server, {"text": paragraph("002", 1)})
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "3"
    assert "the limit is 1 (NEWSMT_MAX_INFLIGHT_REQUESTS)" in busy.json()["error"]["message"]
    lt_busy = libre(server, data={"q": paragraph("002", 1), "source": "ar", "target": "en"})
    assert lt_busy.status_code == 429 and lt_busy.headers["Retry-After"] == "3" and lt_busy.json()["error"]
    # An article already in the cache needs no slot and no model: it is answered in full, busy or not.
    hit = native(server, {"text": repeated})
    assert hit.status_code == 200 and hit.json()["results"][0]["translation"] == stored_before.translation
    assert hit.json()["usage"]["cache_misses"] == 0
    deadline = time.monotonic() + 120
    while server.metric("newsmt_inflight_translations") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # It finished in the background and stored its work, which is what lets a retry come from the cache.
    stored = httpx.get(f"{server.url}/v1/cache/stats", timeout=30).json()["entries"]
    assert stored > 1 and server.metric("newsmt_cache_misses_total") > 0


@pytest.fixture(scope="module")
def secured(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server(api_keys=["other-key", KEY], cors_origins=[ORIGIN])


def test_native_routes_need_a_bearer_key(secured: LiveServer) -> None:
    missing = native(secured, {"text": paragraph("001", 2)})
    assert error(missing)[:2] == (401, "unauthorized") and missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = native(secured, {"text": paragraph("001", 2)}, headers={"Authorization": "Bearer guess"})
    assert error(wrong) == (403, "forbidden", "invalid API key")
    ok = native(secured, {"text": paragraph("001", 2)}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and KEY not in ok.text
    assert httpx.get(f"{secured.url}/v1/models", timeout=30).status_code == 401
    assert httpx.get(f"{secured.url}/v1/cache/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/languages"):
        assert httpx.get(f"{secured.url}{open_path}", timeout=30).status_code == 200, open_path


def test_libretranslate_routes_need_the_api_key_field(secured: LiveServer) -> None:
    text = paragraph("000", 3)
    missing = libre(secured, data={"q": text, "source": "he", "target": "en"})
    assert missing.status_code == 401 and "API key is required" in missing.json()["error"]
    wrong = libre(secured, json={"q": text, "source": "he", "target": "en", "api_key": "guess"})
    assert (wrong.status_code, wrong.json()) == (403, {"error": "invalid API key"})
    assert httpx.post(f"{secured.url}/detect", data={"q": text, "api_key": "guess"}).status_code == 403
    assert httpx.post(f"{secured.url}/detect", json={"q": text, "api_key": 12345}).status_code == 403
    with pytest.raises(Exception, match="401"):
        LibreTranslateAPI(secured.url).translate(text, "he", "en")
    assert LibreTranslateAPI(secured.url, api_key=KEY).translate(text, "he", "en").strip()


def test_auth_is_off_without_keys(small: LiveServer) -> None:
    assert native(small, {"text": paragraph("002", 2)[:250]}).status_code == 200
    assert libre(small, data={"q": paragraph("002", 2)[:250], "source": "ar", "target": "en"}).status_code == 200


def test_cors_is_closed_by_default_and_open_to_configured_origins(small: LiveServer, secured: LiveServer) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Authorization, Content-Type"}
    allowed = httpx.options(f"{secured.url}/v1/translate", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = httpx.options(f"{secured.url}/v1/translate", headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    closed = httpx.options(f"{small.url}/v1/translate", headers=preflight)
    assert "Access-Control-Allow-Origin" not in closed.headers
    assert "Access-Control-Allow-Origin" not in httpx.get(f"{small.url}/healthz", headers={"Origin": ORIGIN}).headers

