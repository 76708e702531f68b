"""Documents over a real uvicorn: multipart uploads to `/v1/documents` and LibreTranslate's `/translate_file`, the
download routes, each format's structure kept (a .docx built here with python-docx and read back, .srt timings,
HTML markup byte for byte as `format=html`), expiry, and hostile files refused with a 4xx."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable

import docx
import httpx
import pytest
from docx.enum.text import WD_ALIGN_PARAGRAPH

from service.text.cleaning import clean_document, split_sentences
from tests.conftest import LiveServer, seed

ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u06ff]")
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def paragraph(name: str, index: int) -> str:
    return clean_document(seed(name)).paragraphs[index]


def sentences(name: str, first: int, count: int) -> list[str]:
    """`count` sentences of a seed article from its paragraph `first` on (short units: subtitles, table cells)."""
    lang = "he" if name == "000" else "ar"
    found = [s for p in clean_document(seed(name)).paragraphs[first:] for s in split_sentences(p, lang)]
    assert len(found) >= count
    return found[:count]


@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def upload(server: LiveServer, name: str, content: bytes, source: str = "auto") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/documents", files={"file": (name, content)}, data={"source": source},
                      timeout=120)


def translated(server: LiveServer, name: str, content: bytes, source: str = "auto") -> tuple[dict, httpx.Response]:
    response = upload(server, name, content, source)
    assert response.status_code == 200, response.text
    info = response.json()
    download = httpx.get(info["download_url"], timeout=30)
    assert download.status_code == 200, download.text
    return info, download


def native_translation(server: LiveServer, text: str, source: str) -> str:
    response = httpx.post(f"{server.url}/v1/translate", json={"text": text, "source": source}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["translation"]


def word_document() -> docx.document.Document:
    """Styles, a bold run, a centred paragraph, a table, a header and a footer, all holding Arabic text."""
    document = docx.Document()
    document.add_heading(sentences("002", 1, 1)[0], level=1)
    body = document.add_paragraph(style="Normal")
    body.add_run(sentences("002", 1, 2)[1] + " ").bold = True
    body.add_run(paragraph("002", 2))
    centred = document.add_paragraph(sentences("004", 1, 1)[0], style="Quote")
    centred.alignment = WD_ALIGN_PARAGRAPH.CENTER
    document.add_paragraph("2024")  # no letters: kept as it is
    table = document.add_table(rows=2, cols=2)
    table.style = "Table Grid"
    for cell, text in zip(table._cells, [*sentences("001", 1, 3), "12:30"], strict=True):
        cell.text = text
    section = document.sections[0]
    section.header.paragraphs[0].text = sentences("003", 1, 1)[0]
    section.footer.paragraphs[0].text = sentences("003", 2, 1)[0]
    return document


def docx_bytes(document: docx.document.Document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_round_trips_with_styles_tables_headers_and_footers(server: LiveServer) -> None:
    original = word_document()
    info, download = translated(server, "report.docx", docx_bytes(original))
    assert info["filename"] == "report.en.docx" and info["detected_language"] == "ar"
    assert download.headers["content-type"] == DOCX_TYPE
    assert 'attachment; filename="report.en.docx"' in download.headers["content-disposition"]
    result = docx.Document(io.BytesIO(download.content))
    sent, got = original.paragraphs, result.paragraphs
    assert len(got) == len(sent)
    assert [p.style.name for p in got] == [p.style.name for p in sent]
    assert [p.alignment for p in got] == [p.alignment for p in sent]
    assert [len(p.runs) for p in got] == [len(p.runs) for p in sent]  # every run kept, with its formatting
    assert got[1].runs[0].bold and not got[1].runs[1].bold
    assert got[3].text == "2024"
    assert len(result.tables) == 1 and result.tables[0].style.name == "Table Grid"
    assert [c.text for c in result.tables[0]._cells][3] == "12:30"
    header, footer = result.sections[0].header.paragraphs[0].text, result.sections[0].footer.paragraphs[0].text
    texts = [p.text for p in got] + [c.text for c in result.tables[0]._cells] + [header, footer]
    assert all(t.strip() for t in texts) and not any(ARABIC_OR_HEBREW.search(t) for t in texts)
    # Each paragraph's translation is the pipeline's translation of it, whatever run it landed in.
    assert got[0].text == native_translation(server, sent[0].text, "ar")
    assert got[2].text == native_translation(server, sent[2].text, "ar")
    assert header == native_translation(server, sentences("003", 1, 1)[0], "ar")


def test_srt_keeps_every_number_and_timing_line(server: LiveServer) -> None:
    lines = sentences("000", 1, 3)
    cues = [("1", "00:00:01,000 --> 00:00:03,500", lines[0]),
            ("2", "00:00:03,600 --> 00:00:06,000 X1:10 X2:90 Y1:10 Y2:50", f"{lines[1]}\r\n{lines[2]}"),
            ("3", "00:00:06,100 --> 00:00:07,000", "♪ ♪"),
            ("4", "00:00:07,100 --> 00:00:09,000", paragraph("000", 2))]
    srt = "\r\n\r\n".join("\r\n".join(cue) for cue in cues) + "\r\n"
    info, download = translated(server, "episode.srt", srt.encode())
    assert info["filename"] == "episode.en.srt" and info["detected_language"] == "he"
    blocks = download.content.decode().split("\r\n\r\n")
    assert len(blocks) == 4 and download.content.endswith(b"\r\n")
    for (number, timing, _), block in zip(cues, blocks, strict=True):
        assert block.split("\r\n")[:2] == [number, timing]
    assert blocks[2] == "3\r\n00:00:06,100 --> 00:00:07,000\r\n♪ ♪"
    assert blocks[0].split("\r\n")[2] == native_translation(server, lines[0], "he")
    assert not ARABIC_OR_HEBREW.search(download.content.decode())


def test_html_file_is_translated_exactly_as_format_html(server: LiveServer) -> None:
    markup = (f'<!DOCTYPE html>\n<html lang="ar"><head><title>{sentences("004", 1, 1)[0]}</title>'
              f'<style>p {{color: red}}</style></head>\n<body><p class="x">{paragraph("004", 2)}</p>'
              f'<p><a href="/a?b=1&amp;c=2">{sentences("004", 1, 2)[1]}</a> <b>2024</b></p></body></html>\n')
    _, download = translated(server, "story.html", markup.encode())
    fragment = httpx.post(f"{server.url}/translate", json={"q": markup, "source": "auto", "target": "en",
                                                           "format": "html"}, timeout=120)
    assert download.content.decode() == fragment.json()["translatedText"]
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"  # never run in our origin


def test_text_and_markdown_files_are_one_article(server: LiveServer) -> None:
    text = "\n\n".join(clean_document(seed("001")).paragraphs[:3])
    for name in ("article.txt", "article.md"):
        info, download = translated(server, name, text.encode("utf-8-sig"))
        assert download.content.decode() == native_translation(server, text, "auto") + "\n"
        assert info["filename"] == name.replace(".", ".en.") and info["segments"] > 3


def test_libretranslate_translate_file_with_a_plain_multipart_client(server: LiveServer) -> None:
    """libretranslatepy (2.1) has no file call, so LibreTranslate's own form is sent as its web client sends it."""
    text = paragraph("000", 1)
    response = httpx.post(f"{server.url}/translate_file", files={"file": ("note.txt", text.encode())},
                          data={"source": "he", "target": "en"}, timeout=120)
    assert response.status_code == 200, response.text
    url = response.json()["translatedFileUrl"]
    assert url.startswith(f"{server.url}/download_file/") and url.endswith(".note.en.txt")
    download = httpx.get(url, timeout=30)
    assert download.status_code == 200 and download.content.decode() == native_translation(server, text, "he") + "\n"
    missing = httpx.post(f"{server.url}/translate_file", data={"source": "he", "target": "en"}, timeout=30)
    assert (missing.status_code, missing.json()) == (400, {"error": "Invalid request: missing file parameter"})
    wrong = httpx.post(f"{server.url}/translate_file", files={"file": ("a.pdf", b"%PDF-1.4")},
                       data={"source": "he", "target": "en"}, timeout=30)
    assert wrong.status_code == 400 and "unsupported file format '.pdf'" in wrong.json()["error"]
    gone = httpx.get(f"{server.url}/download_file/{'0' * 32}.x.txt", timeout=30)
    assert gone.status_code == 404 and isinstance(gone.json()["error"], str)


def test_translated_files_expire(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(document_ttl_seconds=1)
    info, _ = translated(server, "a.txt", paragraph("003", 1).encode())
    time.sleep(1.2)
    expired = httpx.get(info["download_url"], timeout=30)
    assert expired.status_code == 404 and expired.json()["error"]["code"] == "not_found"
    upload(server, "b.txt", paragraph("003", 2).encode())  # storing sweeps expired files away
    assert not (server.settings.documents_dir / info["id"]).exists()


def zip_with(base: bytes, replace: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """`base` (a .docx) with some parts replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(out, "w", compression) as target:
        for item in source.infolist():
            if item.filename not in replace:
                target.writestr(item, source.read(item))
        for name, content in replace.items():
            target.writestr(name, content)
    return out.getvalue()


def _xxe(base: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(base)) as archive:
        xml = archive.read("word/document.xml").decode()
    declaration, _, rest = xml.partition("?>")
    hostile = (f'{declaration}?><!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
               + rest.replace("<w:t>", "<w:t>&xxe;", 1))
    return zip_with(base, {"word/document.xml": hostile.encode()})


def _laughs(base: bytes) -> bytes:
    entities = '<!ENTITY a "lol">' + "".join(f'<!ENTITY {c} "&{p};&{p};&{p};&{p};">'
                                             for p, c in zip("abcdefg", "bcdefgh", strict=True))
    return zip_with(base, {"word/styles.xml": f'<?xml version="1.0"?><!DOCTYPE s [{entities}]><s>&h;</s>'.encode()})


HOSTILE: dict[str, tuple[str, Callable[[bytes], bytes], int, str]] = {
    "zip bomb": ("bomb.docx", lambda base: zip_with(base, {"word/media/pad.bin": bytes(60 * 1024**2)}), 413,
                 "zip bomb"),
    "oversized part": ("big.docx", lambda base: zip_with(base, {"word/media/image9.png": bytes(25 * 1024**2)}), 413,
                       "NEWSMT_DOCX_MAX_PART_BYTES"),
    "external entity": ("xxe.docx", _xxe, 422, "declares a DTD or entities"),
    "billion laughs": ("laughs.docx", _laughs, 422, "declares a DTD or entities"),
    "not a zip": ("fake.docx", lambda base: b"just some text, named .docx", 415, "not a zip archive"),
    "zip without a document": ("other.docx", lambda base: zip_with(b"PK\x05\x06" + bytes(18), {"a.txt": b"x"}), 415,
                               "not a Word .docx document"),
    "wrong extension": ("malware.exe", lambda base: base, 415, "unsupported file format '.exe'"),
    "no extension": ("README", lambda base: b"text", 415, "unsupported file format '(none)'"),
    "empty file": ("empty.txt", lambda base: b"", 422, "is empty (0 bytes)"),
    "empty docx": ("empty.docx", lambda base: b"", 422, "is empty (0 bytes)"),
    "oversized text": ("huge.txt", lambda base: "نص ".encode() * 400_000, 413, "NEWSMT_DOCUMENT_MAX_TEXT_BYTES"),
    "not UTF-8": ("latin1.txt", lambda base: "café".encode("latin-1"), 422, "is not valid UTF-8"),
    "broken subtitles": ("bad.srt", lambda base: "1\nnot a timing\nשלום".encode(), 422, "line 1 does not start"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_get_a_clear_4xx(server: LiveServer, case: str) -> None:
    name, build, status, message = HOSTILE[case]
    response = upload(server, name, build(docx_bytes(word_document())))
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_hostile_docx_on_the_libretranslate_route_is_400(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/translate_file", files={"file": ("x.docx", _xxe(docx_bytes(word_document())))},
                          data={"source": "auto", "target": "en"}, timeout=60)
    assert response.status_code == 400 and "declares a DTD or entities" in response.json()["error"]
