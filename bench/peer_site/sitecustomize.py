"""Imported at start-up by the LibreTranslate server the bench launches (its PYTHONPATH names this folder), and by
nothing else.

It replaces one part of LibreTranslate: argos' MiniSBD sentence splitter, which downloads an ONNX model on first use
(this machine reaches no model host). The replacement (peer_split.py) splits after sentence-final punctuation
followed by space. That is cheaper than running an ONNX model per paragraph, so it favours LibreTranslate in the
comparison.
"""

from __future__ import annotations

from argostranslate import sbd
from peer_split import split_sentences


def _split_sentences(self: sbd.MiniSBDSentencizer, text: str) -> list[str]:
    return split_sentences(text)


sbd.MiniSBDSentencizer.split_sentences = _split_sentences  # type: ignore[method-assign]
