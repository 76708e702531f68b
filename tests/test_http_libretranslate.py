"""The LibreTranslate-compatible routes, over a real uvicorn, as LibreTranslate's clients call them, including an
unmodified third-party client library (libretranslatepy)."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI

from service.text.cleaning import clean_document
from tests.conftest import LiveServer, seed

ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u06ff]")
FRENCH = "Le ministre des affaires étrangères a rencontré hier son homologue à Paris pour parler de la région."


def paragraph(name: str, index: int) -> str:
    return clean_document(seed(name)).paragraphs[index]


def native_translation(server: LiveServer, text: str, source: str = "auto") -> str:
    response = httpx.post(f"{server.url}/v1/translate", json={"text": text, "source": source}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["translation"]


@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def lt(server: LiveServer, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=120, **kwargs)  # type: ignore[arg-type]


def test_libretranslatepy_client_translates_arabic_and_hebrew(server: LiveServer) -> None:
    client = LibreTranslateAPI(server.url)
    arabic, hebrew = paragraph("002", 1), paragraph("000", 1)
    from_arabic = client.translate(arabic, "ar", "en")
    from_hebrew = client.translate(hebrew, "auto", "en")
    assert from_arabic.strip() and not ARABIC_OR_HEBREW.search(from_arabic)
    assert from_hebrew.strip() and not ARABIC_OR_HEBREW.search(from_hebrew)
    assert from_arabic == native_translation(server, arabic, "ar")  # the same pipeline, and its cache, behind both
    assert from_hebrew == native_translation(server, hebrew)
    assert client.detect(hebrew)[0]["language"] == "he"
    assert {lang["code"] for lang in client.languages()} == {"ar", "he", "en"}


def test_form_encoded_translate_detects_the_source(server: LiveServer) -> None:
    text = paragraph("001", 1)
    response = lt(server, "/translate", data={"q": text, "source": "auto", "target": "en"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["translatedText"] == native_translation(server, text)
    assert body["detectedLanguage"]["language"] == "ar" and 50 < body["detectedLanguage"]["confidence"] <= 100
    assert "alternatives" not in body


def test_json_with_q_as_a_list(server: LiveServer) -> None:
    texts = [paragraph("003", 1), paragraph("000", 2)]
    response = lt(server, "/translate", json={"q": texts, "source": "auto", "target": "en"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["translatedText"] == [native_translation(server, t) for t in texts]
    assert [d["language"] for d in body["detectedLanguage"]] == ["ar", "he"]
    assert "alternatives" not in body  # alternatives: tests/test_features.py, with a model whose beam means something


def test_explicit_source_returns_no_detected_language(server: LiveServer) -> None:
    response = lt(server, "/translate", json={"q": paragraph("004", 1), "source": "ar", "target": "en"})
    assert response.status_code == 200 and set(response.json()) == {"translatedText"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append((f"/{tag}", []))

    def handle_data(self, data: str) -> None:
        self.text += data


def test_html_keeps_tags_and_translates_text_nodes(server: LiveServer) -> None:
    sentence = paragraph("002", 1)
    markup = (f'<div class="story" title="عنوان"><p>{sentence}</p><p><a href="/x?a=1&amp;b=2">{paragraph("002", 2)}'
              '</a> <b>2024</b></p><script>var s = "نص";</script></div>')
    response = lt(server, "/translate", json={"q": markup, "source": "auto", "target": "en", "format": "html"})
    assert response.status_code == 200, response.text
    out = response.json()["translatedText"]
    sent, got = _Tags(), _Tags()
    sent.feed(markup)
    got.feed(out)
    assert got.tags == sent.tags  # every tag and attribute as sent, Arabic title attribute included
    assert '<script>var s = "نص";</script>' in out  # code untouched
    assert "<b>2024</b>" in out  # no letters, nothing to translate
    assert not ARABIC_OR_HEBREW.search(got.text.replace("نص", ""))
    assert native_translation(server, sentence, "ar") in out
    assert response.json()["detectedLanguage"]["language"] == "ar"


def test_detect_json_and_form(server: LiveServer) -> None:
    form = lt(server, "/detect", data={"q": paragraph("000", 1)})
    assert form.status_code == 200
    [best] = form.json()
    assert best["language"] == "he" and 50 < best["confidence"] <= 100
    assert lt(server, "/detect", json={"q": paragraph("001", 1)}).json()[0]["language"] == "ar"
    assert lt(server, "/detect", json={"q": FRENCH}).json()[0]["language"] == "fr"


def test_languages_get_and_post(server: LiveServer) -> None:
    expected = [{"code": "ar", "name": "Arabic", "targets": ["en"]},
                {"code": "he", "name": "Hebrew", "targets": ["en"]},
                {"code": "en", "name": "English", "targets": []}]
    assert httpx.get(f"{server.url}/languages").json() == expected
    assert lt(server, "/languages").json() == expected


@pytest.mark.parametrize(("body", "message"), [
    ({"source": "ar", "target": "en"}, "Invalid request: missing q parameter"),
    ({"q": "שלום", "target": "en"}, "Invalid request: missing source parameter"),
    ({"q": "שלום", "source": "he"}, "Invalid request: missing target parameter"),
    ({"q": "שלום", "source": "fr", "target": "en"}, "fr is not supported"),
    ({"q": "שלום", "source": "he", "target": "de"}, "de is not supported: newsmt translates into en only"),
    ({"q": "שלום", "source": "he", "target": "en", "format": "xml"}, "xml format is not supported"),
    ({"q": "שלום", "source": "he", "target": "en", "alternatives": "two"},
     "Invalid request: alternatives parameter is not a number"),
    ({"q": {"text": "שלום"}, "source": "he", "target": "en"},
     "Invalid request: q must be a string or a list of strings"),
])
def test_request_errors_are_400_in_libretranslate_shape(server: LiveServer, body: dict, message: str) -> None:
    response = lt(server, "/translate", json=body)
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_form_errors_and_bad_json_are_400(server: LiveServer) -> None:
    missing = lt(server, "/translate", data={"q": "שלום", "source": "he"})
    assert (missing.status_code, missing.json()) == (400, {"error": "Invalid request: missing target parameter"})
    broken = lt(server, "/translate", content=b'{"q": ', headers={"Content-Type": "application/json"})
    assert (broken.status_code, broken.json()) == (400, {"error": "Invalid JSON format"})
    assert lt(server, "/detect", json=["q"]).json() == {"error": "Invalid JSON format"}
    assert lt(server, "/detect", data={}).json() == {"error": "Invalid request: missing q parameter"}


def test_unsupported_detected_language_names_it(server: LiveServer) -> None:
    response = lt(server, "/translate", data={"q": FRENCH, "source": "auto", "target": "en"})
    assert response.status_code == 400
    assert "detected 'fr'" in response.json()["error"]
    html = lt(server, "/translate", json={"q": f"<p>{FRENCH}</p>", "source": "auto", "target": "en",
                                          "format": "html"})
    assert html.status_code == 400 and "detected 'fr'" in html.json()["error"]
