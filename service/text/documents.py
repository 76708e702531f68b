"""Files as translatable texts plus a way to put the translations back: .txt, .md, .html/.htm, .srt and .docx.

A `Document` holds the texts to translate, in order, and a `render` that writes the same file with each text
replaced by its translation; everything else (markup, subtitle numbers and timings, Word styles, tables, headers and
footers) is carried over as it was. Parsing is pure and knows nothing of models, so the HTTP routes and the bulk CLI
share it and translate the texts through their own paths.

A .docx is a zip of XML parts written by whoever sent it, so it is checked before python-docx opens it: the zip's
directory must declare a bounded unpacked size (a zip bomb declares gigabytes; zipfile never inflates past the
declared size, so the declaration is what bounds memory), and every XML part must parse under defusedxml with DTDs
forbidden (no external entities, no entity expansion), which Word itself never writes.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as defused_fromstring

from service.config import TARGET_LANGUAGE, Settings
from service.errors import EmptyText, InputTooLarge, InvalidInput, UnsafeDocument, UnsupportedFormat
from service.text.html import has_letters, parse_html

TEXT, HTML, SRT, DOCX = "text", "html", "srt", "docx"
#: File extension -> format. .md is translated as text, as the bulk CLI always has.
FORMATS: dict[str, str] = {".txt": TEXT, ".md": TEXT, ".html": HTML, ".htm": HTML, ".srt": SRT, ".docx": DOCX}
MEDIA_TYPES: dict[str, str] = {
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".srt": "application/x-subrip; charset=utf-8",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
#: Which setting limits each format's upload size.
_SIZE_SETTING = {TEXT: "document_max_text_bytes", SRT: "document_max_text_bytes", HTML: "document_max_html_bytes",
                 DOCX: "document_max_docx_bytes"}
#: `00:00:01,000 --> 00:00:04,000`, possibly followed by position hints, which are kept as written.
_TIMING = re.compile(r"^\s*\d+:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d+:\d{2}:\d{2}[,.]\d{1,3}")
#: More zip entries than any real Word file has; a zip of a million empty files is an attack on the reader too.
DOCX_MAX_ENTRIES = 1000
_XML_PARTS = (".xml", ".rels")
#: python-docx parts whose paragraphs are translated: the body (tables and text boxes included), headers, footers.
_WORD_TEXT_PARTS = frozenset({
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.header+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.footer+xml",
})


@dataclass
class Document:
    """The texts of one file, in order, and `render(translations) -> bytes` that rebuilds the file around them.

    `whole_article`: the file is one article (.txt, .md), so the pipeline cleans, splits and detects it per
    paragraph; otherwise each text is a unit of the file (an HTML text node, a subtitle cue, a Word paragraph), the
    language is detected once over all of them, and units are translated separately so each lands back in place."""

    filename: str
    format: str
    texts: list[str]
    render: Callable[[Sequence[str]], bytes]
    whole_article: bool = False

    @property
    def suffix(self) -> str:
        return PurePath(self.filename).suffix.lower()

    @property
    def translated_filename(self) -> str:
        """`report.docx` -> `report.en.docx`, the name the translated file is offered under."""
        path = PurePath(self.filename)
        return f"{path.stem}.{TARGET_LANGUAGE}{path.suffix}"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(self.suffix, "application/octet-stream")

    def plain_text(self) -> str:
        """All translatable text, one unit a line: what language detection looks at."""
        return "\n".join(self.texts)


def document_format(filename: str) -> str:
    """The format of a file by its extension, or a clear refusal naming the ones newsmt takes."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in FORMATS:
        raise UnsupportedFormat(f"{filename or 'the file'}: unsupported file format '{suffix or '(none)'}'; newsmt "
                                f"translates {', '.join(FORMATS)} files")
    return FORMATS[suffix]


def parse_document(filename: str, data: bytes, settings: Settings) -> Document:
    """Check `data` against its format's limits and split it into texts. Bad files raise a domain error (4xx)."""
    fmt = document_format(filename)
    setting = _SIZE_SETTING[fmt]
    limit = getattr(settings, setting)
    if len(data) > limit:
        raise InputTooLarge(f"{filename} has {len(data)} bytes; the limit for {fmt} files is {limit} "
                            f"(NEWSMT_{setting.upper()})")
    if not data:
        raise EmptyText(f"{filename} is empty (0 bytes)")
    if fmt == DOCX:
        return _parse_docx(filename, data, settings)
    text = _decode(filename, data)
    if fmt == HTML:
        return html_document(text, filename)
    if fmt == SRT:
        return _parse_srt(filename, text)
    if not text.strip():
        raise EmptyText(f"{filename} holds only whitespace")
    return Document(filename, fmt, [text], lambda translations: (translations[0] + "\n").encode("utf-8"),
                    whole_article=True)


def _decode(filename: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{filename} is not valid UTF-8 (byte {exc.start}): {exc.reason}") from exc


def html_document(markup: str, filename: str = "text") -> Document:
    """An HTML file or fragment: text nodes to translate, markup kept byte for byte (service/text/html.py)."""
    doc = parse_html(markup)
    if not doc.texts:
        raise EmptyText(f"{filename} has nothing to translate: the HTML holds no text with letters")
    return Document(filename, HTML, doc.texts, lambda translations: doc.render(translations).encode("utf-8"))


# -- SubRip ----------------------------------------------------------------------------------------------------------
def _parse_srt(filename: str, text: str) -> Document:
    """Cues are blocks separated by blank lines: a number, a timing line, then text lines. Number and timing lines
    are kept byte for byte (in the file's own line endings); each cue's text lines are translated as one text and
    written back on one line."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    blocks: list[tuple[list[str], str]] = []  # (verbatim lines, text to translate or "")
    index = 0
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].strip():
            index += 1
        block = lines[start:index]
        if len(block) < 2 or not block[0].strip().isdigit() or not _TIMING.match(block[1]):
            raise InvalidInput(f"{filename}: line {start + 1} does not start a subtitle: expected a cue number and a "
                               "timing line such as `00:00:01,000 --> 00:00:04,000`")
        blocks.append((block[:2], " ".join(line.strip() for line in block[2:])))
    texts = [cue for _, cue in blocks if has_letters(cue)]
    if not texts:
        raise EmptyText(f"{filename} has no subtitle text to translate")

    def render(translations: Sequence[str]) -> bytes:
        given = iter(translations)
        out = []
        for verbatim, cue in blocks:
            body = [next(given)] if has_letters(cue) else [cue] if cue else []
            out.append(newline.join([*verbatim, *body]))
        return (newline + newline).join(out).encode("utf-8") + newline.encode()

    return Document(filename, SRT, texts, render)


# -- Word --------------------------------------------------------------------------------------------------------
def _check_docx_zip(filename: str, data: bytes, settings: Settings) -> None:
    """Refuse a .docx that is not a zip, declares too much unpacked data or too many entries, or has an XML part
    with a DTD (external entities, entity expansion) or broken XML, before any Office parser sees it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat(f"{filename} is not a .docx file: not a zip archive ({exc})") from exc
    with archive:
        entries = archive.infolist()
        if len(entries) > DOCX_MAX_ENTRIES:
            raise InputTooLarge(f"{filename} has {len(entries)} zip entries; a .docx may have at most "
                                f"{DOCX_MAX_ENTRIES}")
        total = sum(entry.file_size for entry in entries)
        if total > settings.docx_max_unpacked_bytes:
            raise InputTooLarge(f"{filename} unpacks to {total} bytes, refused as a possible zip bomb; the limit is "
                                f"{settings.docx_max_unpacked_bytes} (NEWSMT_DOCX_MAX_UNPACKED_BYTES)")
        for entry in entries:
            if entry.file_size > settings.docx_max_part_bytes:
                raise InputTooLarge(f"{filename}: part {entry.filename} unpacks to {entry.file_size} bytes; the "
                                    f"limit is {settings.docx_max_part_bytes} (NEWSMT_DOCX_MAX_PART_BYTES)")
            if entry.filename.lower().endswith(_XML_PARTS):
                try:
                    defused_fromstring(archive.read(entry), forbid_dtd=True)
                except DefusedXmlException as exc:
                    raise UnsafeDocument(f"{filename}: part {entry.filename} declares a DTD or entities "
                                         f"({type(exc).__name__}); Word never writes them, and they are refused "
                                         "because they can read local files or expand without bound") from exc
                except (ParseError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
                    raise InvalidInput(f"{filename}: part {entry.filename} cannot be read: {exc}") from exc


def _word_paragraphs(root: Any) -> list[list[Any]]:
    """The `w:t` text elements of `root`, grouped by the paragraph (`w:p`) that directly holds them, in document
    order. A text box's paragraphs sit inside a run of an outer paragraph; they are groups of their own."""
    from docx.oxml.ns import qn

    paragraph_tag = qn("w:p")
    groups: dict[Any, list[Any]] = {}
    for element in root.iter(qn("w:t")):
        owner = element.getparent()
        while owner is not None and owner.tag != paragraph_tag:
            owner = owner.getparent()
        if owner is not None:
            groups.setdefault(owner, []).append(element)
    return list(groups.values())


def _parse_docx(filename: str, data: bytes, settings: Settings) -> Document:
    """Each Word paragraph (in the body, tables, text boxes, headers and footers) is one text, so the model sees
    whole sentences. Its translation goes into the paragraph's longest text run and the other runs' text is
    emptied: every run, with its formatting, and everything that is not text (images, breaks, fields, bookmarks)
    stays where it was, and the paragraph takes the formatting of most of its text."""
    import docx  # python-docx imports lxml and builds its element classes: only documents pay for it

    _check_docx_zip(filename, data, settings)
    try:
        word = docx.Document(io.BytesIO(data))
    except Exception as exc:  # a hostile or broken package fails python-docx in many ways; each is the file's fault
        raise UnsupportedFormat(f"{filename} is not a Word .docx document: {exc}") from exc
    runs: list[list[Any]] = []
    for part in word.part.package.iter_parts():
        if part.content_type in _WORD_TEXT_PARTS:
            runs.extend(group for group in _word_paragraphs(part.element)
                        if has_letters("".join(t.text or "" for t in group)))
    if not runs:
        raise EmptyText(f"{filename} has no text to translate")
    texts = ["".join(t.text or "" for t in group).strip() for group in runs]

    def render(translations: Sequence[str]) -> bytes:
        from docx.oxml.ns import qn

        for group, translation in zip(runs, translations, strict=True):
            target = max(group, key=lambda t: len(t.text or ""))
            for element in group:
                element.text = translation if element is target else ""
            target.set(qn("xml:space"), "preserve")
        out = io.BytesIO()
        word.save(out)
        return out.getvalue()

    return Document(filename, DOCX, texts, render)
