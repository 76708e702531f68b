"""Translate the text of an HTML fragment while keeping its markup as written.

Why the stdlib `html.parser`: it is maintained with CPython, needs no compiled dependency, tolerates the broken
markup scraped news is full of, and `get_starttag_text()` hands back each start tag exactly as it was written, so
attributes, quoting and case survive untouched. lxml and selectolax build a tree and re-serialise it (adding
`<html><body>`, normalising attributes), which is not what a client that sent a fragment expects back.

Only text nodes with letters are translated: script and style bodies are code, and nodes of digits, punctuation
or whitespace carry no language, so they are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser

#: Elements whose content is code, not prose.
RAW_TEXT_ELEMENTS = frozenset({"script", "style"})
_LETTER = re.compile(r"[^\W\d_]")


def has_letters(text: str) -> bool:
    """Whether `text` carries any language: nodes of digits, punctuation or whitespace are kept as they are."""
    return _LETTER.search(text) is not None


@dataclass
class HtmlDocument:
    """Markup kept verbatim, interleaved with indexes into `texts` (the text nodes to translate)."""

    parts: list[str | int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def render(self, translations: Sequence[str]) -> str:
        """The document with text node `i` replaced by `translations[i]` (escaped as HTML text)."""
        if len(translations) != len(self.texts):
            raise ValueError(f"expected {len(self.texts)} translations, got {len(translations)}")
        return "".join(p if isinstance(p, str) else escape(translations[p], quote=False) for p in self.parts)

    def plain_text(self) -> str:
        """All translatable text, one node a line: what language detection looks at."""
        return "\n".join(self.texts)


class _Splitter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doc = HtmlDocument()
        self._raw_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._raw_depth += tag in RAW_TEXT_ELEMENTS
        self.doc.parts.append(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.doc.parts.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in RAW_TEXT_ELEMENTS and self._raw_depth:
            self._raw_depth -= 1
        self.doc.parts.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._raw_depth:
            self.doc.parts.append(data)
            return
        core = data.strip()
        if not has_letters(core):
            self.doc.parts.append(escape(data, quote=False))
            return
        start = data.index(core)
        self.doc.parts.append(data[:start])
        self.doc.parts.append(len(self.doc.texts))
        self.doc.texts.append(core)
        self.doc.parts.append(data[start + len(core):])

    def handle_comment(self, data: str) -> None:
        self.doc.parts.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.doc.parts.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.doc.parts.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.doc.parts.append(f"<![{data}]>")


def parse_html(markup: str) -> HtmlDocument:
    """Split `markup` into verbatim markup and translatable text nodes."""
    splitter = _Splitter()
    splitter.feed(markup)
    splitter.close()
    return splitter.doc
