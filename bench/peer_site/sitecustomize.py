"""Imported at start-up by the LibreTranslate server the bench launches (its PYTHONPATH names this folder), and by
nothing else.

It replaces one part of LibreTranslate: argos' MiniSBD sentence splitter, which downloads an ONNX model on first use
(this machine reaches no model host). The replacement splits after sentence-final punctuation followed by space.
That is cheaper than running an ONNX model per paragraph, so it favours LibreTranslate in the comparison.
"""

from __future__ import annotations

import re

from argostranslate import sbd

_SENTENCE_END = re.compile(r"(?<=[.!?\u061f\u3002])\s+")


def _split_sentences(self: sbd.MiniSBDSentencizer, text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence]


sbd.MiniSBDSentencizer.split_sentences = _split_sentences  # type: ignore[method-assign]
