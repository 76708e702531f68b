"""The sentence splitter that stands in for argos' MiniSBD in the LibreTranslate server (see sitecustomize.py); the
bench imports it too, to count the segments LibreTranslate decodes."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?\u061f\u3002])\s+")


def split_sentences(text: str) -> list[str]:
    """Split after sentence-final punctuation followed by space."""
    return [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence]


def count_segments(text: str) -> int:
    """Segments argos decodes for `text`: it translates line by line, each line split into sentences."""
    return sum(len(split_sentences(line)) for line in text.split("\n"))
