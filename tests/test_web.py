"""The web page and the bulk HTML report, in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; `playwright install` is never run), against a real uvicorn on loopback with the tiny models."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright
from typer.testing import CliRunner

from service.cli import app as cli
from service.config import Settings
from service.store.glossaries import GlossaryStore
from service.testing.copy_model import EXAMPLES
from service.text.cleaning import clean_document
from service.text.glossary import parse_terms
from tests.conftest import SEEDS, LiveServer, env_for, require_program, seed
from tests.test_http_documents import native_translation
from tests.test_http_jobs import corpus

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PERSIAN = "وزیر امور خارجه ایران روز دوشنبه در سفری رسمی به مسکو با همتای روسی خود دیدار و گفتگو کرد."
MARKUP = "<img src=x onerror=window.__xss=1>"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


def paragraphs(name: str, count: int) -> list[str]:
    return clean_document(seed(name)).paragraphs[:count]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_program(CHROMIUM, "chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A fresh browser page that remembers every URL it requested and every uncaught script error."""

    def __init__(self, browser: Browser, viewport: ViewportSize):
        self.page = browser.new_page(viewport=viewport)
        self.requests: list[str] = []
        self.script_errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def cells(self, selector: str, attribute: str | None = None) -> list[str | None]:
        items = self.page.locator(selector)
        return [items.nth(i).get_attribute(attribute) if attribute else items.nth(i).text_content()
                for i in range(items.count())]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    opened = Tab(browser, DESKTOP)
    yield opened
    opened.page.close()


@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def open_page(tab: Tab, server: LiveServer) -> Page:
    tab.page.goto(server.url + "/")
    tab.page.wait_for_load_state("networkidle")  # the summary-route probe has answered
    return tab.page


def test_page_translates_arabic_side_by_side(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    page = open_page(tab, server)
    text = "\n\n".join(paragraphs("001", 3))
    page.fill("#text", text)
    assert page.eval_on_selector("#text", "e => getComputedStyle(e).direction") == "rtl"  # dir=auto followed it
    page.focus("#text")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result:not([hidden])")

    expected = httpx.post(f"{server.url}/v1/translate", timeout=60, json={
        "text": text, "options": {"return_segments": True}}).json()["results"][0]["paragraphs"]
    assert tab.cells("td.src") == [p["source"] for p in expected] == paragraphs("001", 3)
    assert tab.cells("td.tgt") == [p["translation"] for p in expected]
    assert set(tab.cells("td.src", "dir")) == {"rtl"} and set(tab.cells("td.src", "lang")) == {"ar"}
    assert set(tab.cells("td.tgt", "dir")) == {"ltr"} and set(tab.cells("td.tgt", "lang")) == {"en"}
    for row in range(3):  # each source paragraph sits level with its English, on the left of it
        source = page.locator("td.src").nth(row).bounding_box()
        english = page.locator("td.tgt").nth(row).bounding_box()
        assert source and english and source["y"] == english["y"] and source["x"] + source["width"] <= english["x"]
    assert page.text_content("#source-head") == "Source (Arabic)"
    meta = page.text_content("#meta") or ""
    assert "Language: Arabic (detected" in meta and "revision sha256:" in meta
    assert "Cache: 0 of" in meta and "Latency:" in meta and " ms" in meta
    page.screenshot(path=str(tmp_path / "page-desktop.png"), full_page=True)

    page.set_viewport_size(PHONE)  # phone width: each source paragraph stacks above its English
    source, english = page.locator("td.src").first.bounding_box(), page.locator("td.tgt").first.bounding_box()
    assert source and english and english["y"] >= source["y"] + source["height"] and english["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "page-phone.png"), full_page=True)

    page.keyboard.press("Control+Enter")  # the same text again: every sentence from the cache
    expect(page.locator("#meta")).to_contain_text("(100%)")
    assert all(url.startswith(server.url) for url in tab.requests), tab.requests  # nothing from outside
    assert not tab.script_errors


def test_source_selector_switches_the_text_area_direction(tab: Tab, server: LiveServer) -> None:
    page = open_page(tab, server)
    assert page.get_attribute("#text", "dir") == "auto"
    page.select_option("#source", "he")
    assert (page.get_attribute("#text", "dir"), page.get_attribute("#text", "lang")) == ("rtl", "he")
    page.select_option("#source", "auto")
    page.fill("#text", "An English sentence.")
    assert page.eval_on_selector("#text", "e => getComputedStyle(e).direction") == "ltr"
    assert page.get_attribute("#text", "lang") is None
    # Keyboard order: the text, then the source and alternatives selectors, then Translate.
    page.focus("#text")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "source"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "alternatives"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "translate"


def test_errors_are_shown_in_plain_words(tab: Tab, live_server: Callable[..., LiveServer]) -> None:
    strict = live_server(max_input_chars=300, he_en_model="Helsinki-NLP/opus-mt-tc-big-he-en")  # nobody pulled it
    page = open_page(tab, strict)
    cases = [
        (PERSIAN, "This text looks like Persian. newsmt translates only Arabic and Hebrew into English."),
        ("ש" * 301, "The text is too long for this server. Translate it in parts. (text has 301 characters; the "
                    "limit is 300 per text (NEWSMT_MAX_INPUT_CHARS))"),
        (paragraphs("000", 1)[0], "The translation model for this language is not installed on this server"),
        ("   ", "Paste an article first: the text box is empty."),
    ]
    for text, message in cases:
        page.fill("#text", text)
        page.click("#translate")
        page.wait_for_selector("#error:not([hidden])")
        assert message in (page.text_content("#error") or "")
        assert page.is_hidden("#result") and page.get_attribute("#error", "role") == "alert"
    assert "newsmt models pull translate:he-en" not in (page.text_content("#error") or "")  # last case: empty text
    assert not tab.script_errors


def test_markup_in_the_text_is_shown_as_text_and_never_runs(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    page = open_page(tab, server)
    page.fill("#text", f"{paragraphs('002', 1)[0]}\n\n{MARKUP}")
    page.click("#translate")
    page.wait_for_selector("#result:not([hidden])")
    assert tab.cells("td.src")[-1] == MARKUP
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(tmp_path / "page-markup.png"), full_page=True)


def test_translate_and_summarize_then_summarize_alone(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    page = open_page(tab, server)
    text = "\n\n".join(paragraphs("003", 4))
    expected = httpx.post(f"{server.url}/v1/articles", timeout=60, json={"text": text}).json()["results"][0]
    page.fill("#text", text)
    page.click("#both")
    page.wait_for_selector("#summary-section:not([hidden])")
    assert page.text_content("#summary") == expected["summary"] and expected["summary"]
    assert page.get_attribute("#summary", "dir") == "ltr"
    assert tab.cells("td.src") == paragraphs("003", 4) and len(tab.cells("td.tgt")) == 4
    assert f"summary: {expected['summarizer']['engine']}" in (page.text_content("#meta") or "")
    page.screenshot(path=str(tmp_path / "page-summary.png"), full_page=True)

    page.click("#summarize")  # the summary alone: no paragraph table
    expect(page.locator("#summary-section")).to_be_visible()
    assert page.text_content("#summary") == expected["summary"] and page.is_hidden("#result")
    assert not tab.script_errors


def test_summary_buttons_are_disabled_on_a_server_without_summaries(tab: Tab, server: LiveServer) -> None:
    # An older deployment without the summarizer, simulated in the browser: those two routes answer 404 as such a
    # server would; the page and /v1/translate are the real server.
    for route in ("/v1/summarize", "/v1/articles"):
        tab.page.route(server.url + route, lambda r: r.fulfill(status=404, content_type="application/json",
                                                               body='{"error": {"code": "not_found", '
                                                                    '"message": "Not Found"}}'))
    page = open_page(tab, server)
    assert page.is_disabled("#summarize") and page.is_disabled("#both") and page.is_enabled("#translate")
    assert page.is_visible("#summary-note")
    assert page.text_content("#summary-note") == "This server does not offer summaries."


def test_page_and_assets_are_packaged_and_locked_down(server: LiveServer) -> None:
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace(server.url, "")  # no CDN or other outside address
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        asset = httpx.get(f"{server.url}/static/{name}", timeout=10)
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    assert "innerHTML" not in httpx.get(f"{server.url}/static/app.js", timeout=10).text
    missing = httpx.get(f"{server.url}/static/..%2Fapp.py", timeout=10)
    assert missing.status_code == 404


# -- the bulk report ---------------------------------------------------------------------------------------------

def run_cli(settings: Settings, *args: str) -> None:
    result = CliRunner().invoke(cli, list(args), env=env_for(settings))
    assert result.exit_code in (0, 1), result.output


def test_bulk_report_over_the_seeds(tab: Tab, settings: Settings, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    run_cli(settings, "translate", str(SEEDS), "--out", str(tmp_path / "out"), "--report", str(report),
            "--summarize", "--no-progress")
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()]
    page = tab.page
    page.goto(report.as_uri())

    assert page.locator("article").count() == 5
    assert tab.cells("article h2") == [r["id"] for r in records]
    for index, record in enumerate(records, start=1):
        article = page.locator(f"#article-{index}")
        sources = article.locator("td.src")
        english = article.locator("td.tgt")
        lang = record["detected_language"]
        assert sources.count() == english.count() == len(clean_document(seed(record["id"][:3])).paragraphs)
        assert {sources.nth(i).get_attribute("dir") for i in range(sources.count())} == {"rtl"}
        assert {sources.nth(i).get_attribute("lang") for i in range(sources.count())} == {lang}
        assert {english.nth(i).get_attribute("dir") for i in range(english.count())} == {"ltr"}
        assert [english.nth(i).text_content() for i in range(english.count())] \
            == [line for line in record["translation"].splitlines() if line]
        first_source, first_english = sources.first.bounding_box(), english.first.bounding_box()
        assert first_source and first_english and first_source["y"] == first_english["y"]
        assert first_source["x"] < first_english["x"]
        assert article.locator(".summary p").text_content() == record["summary"] and record["summary"]
        if record["source_url"]:
            assert article.locator("a.source-url").get_attribute("href") == record["source_url"]

    stats = {key: page.text_content(f'[data-stat="{key}"]') for key in
             ("articles", "translated", "failed", "segments", "cache-hit-rate")}
    assert stats == {"articles": "5", "translated": "5", "failed": "0",
                     "segments": str(sum(r["segments"] for r in records)), "cache-hit-rate": "0.0%"}
    assert (page.text_content('[data-stat="seconds"]') or "").endswith(" s")
    assert page.locator("script").count() == 0
    assert all(url.startswith("file://") for url in tab.requests)  # self-contained: nothing else loaded
    page.screenshot(path=str(tmp_path / "report.png"))

    run_cli(settings, "translate", str(SEEDS), "--out", str(tmp_path / "again"), "--report", str(report),
            "--no-progress")
    page.reload()
    assert page.text_content('[data-stat="cache-hit-rate"]') == "100.0%"


def test_bulk_report_escapes_articles_and_shows_failures(tab: Tab, settings: Settings, tmp_path: Path) -> None:
    articles = tmp_path / "in"
    articles.mkdir()
    (articles / "hostile.txt").write_text(f"{paragraphs('003', 1)[0]}\n\n{MARKUP}\n", encoding="utf-8")
    (articles / "persian.txt").write_text(PERSIAN, encoding="utf-8")
    report = tmp_path / "report.html"
    run_cli(settings, "translate", str(articles), "--out", str(tmp_path / "out"), "--report", str(report),
            "--no-progress")
    page = tab.page
    page.goto(report.as_uri())
    hostile, persian = page.locator("#article-1"), page.locator("#article-2")
    assert hostile.locator("td.src").last.text_content() == MARKUP
    assert page.locator("img").count() == 0 and page.evaluate("window.__xss") is None
    assert persian.locator("table").count() == 0
    assert "Not translated: unsupported_language: unsupported language: detected 'fa'" in (
        persian.locator(".error").text_content() or "")
    assert page.text_content('[data-stat="failed"]') == "1"


def test_page_marks_low_confidence_lists_alternatives_and_pins_terms(tab: Tab, live_server: Callable[..., LiveServer],
                                                                     copy_models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    server = live_server(ar_en_model=str(copy_models["ar"]), he_en_model=str(copy_models["he"]), beam_size=2,
                         max_output_tokens=40, low_confidence=-0.05)
    GlossaryStore(server.settings.glossaries_dir).save("names", parse_terms([("بوتين", "Putin")]))
    page = open_page(tab, server)
    expect(page.locator("#glossary-field")).to_be_visible()  # the page listed the stored glossaries
    garbled = EXAMPLES["ar"][::-1]
    page.fill("#text", f"{EXAMPLES['ar']}\n\n{garbled}")
    page.select_option("#source", "ar")
    page.select_option("#alternatives", "2")
    page.select_option("#glossary", "names")
    page.click("#translate")
    expect(page.locator("#result")).to_be_visible()
    english = tab.cells("td.tgt")
    assert english[0] == EXAMPLES["ar"].replace("بوتين", "Putin")
    assert page.locator("td.tgt mark.low").count() == 1 and tab.cells("td.tgt mark.low") == [english[1]]
    expect(page.locator("#low-note")).to_be_visible()
    expect(page.locator("#alternative-list li")).to_have_count(2)
    assert "Putin (in the translation)" in (page.locator("#terms-report").text_content() or "")
    assert "1 sentence(s) to check" in (page.locator("[data-meta=confidence]").text_content() or "")
    assert not tab.script_errors
    page.screenshot(path=tmp_path / "features.png", full_page=True)


def test_a_chosen_file_is_translated_and_offered_for_download(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    page = open_page(tab, server)
    text = paragraphs("001", 2)[1]
    upload = tmp_path / "story.txt"
    upload.write_text(text, encoding="utf-8")
    page.set_input_files("#file", str(upload))
    link = page.locator("#doc-download")
    expect(link).to_be_visible(timeout=60_000)
    expect(link).to_have_text("Download story.en.txt")
    with page.expect_download() as download:
        link.click()
    saved = download.value.path()
    assert download.value.suggested_filename == "story.en.txt"
    assert Path(saved).read_text(encoding="utf-8") == native_translation(server, text, "auto") + "\n"
    assert not tab.script_errors and all(url.startswith(server.url) for url in tab.requests)


def test_a_corpus_becomes_a_job_with_progress(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    page = open_page(tab, server)
    corpus_file = tmp_path / "week.jsonl"
    corpus_file.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in corpus(12, seed=9)),
                           encoding="utf-8")
    page.set_input_files("#job-file", str(corpus_file))
    row = page.locator("#job-table tbody tr").first
    expect(row).to_contain_text("week.jsonl", timeout=30_000)
    expect(row).to_contain_text("done", timeout=60_000)  # the view polls while a job runs
    expect(row).to_contain_text("12 / 12")
    job_id = row.get_attribute("data-job")
    records = httpx.get(f"{server.url}/v1/jobs/{job_id}/results", timeout=30).text.splitlines()
    assert len(records) == 12 and not tab.script_errors
