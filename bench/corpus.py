"""A synthetic news corpus resampled from seeds/, and the exact segments newsmt will translate from it.

Articles are built from windows of real seed words (lengths drawn from the real seed sentence lengths), so text,
script and tokenization are real while every sentence is new: the pipeline's dedupe and cache cannot make the cold
bulk run cheaper than the raw engine calls it is compared with. The segments for those raw calls come from the
pipeline's own cleaning and sentence splitting, so both sides translate the same token ids.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from service.text.cleaning import clean_document, split_sentences
from service.text.langid import detect_language

from .config import SEED

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"
#: Sentence-final marks are dropped from sampled words so that a window never splits into two segments.
_SENTENCE_END = re.compile(r"[.!?؟…]+")
PARAGRAPHS_PER_ARTICLE = (3, 6)
SENTENCES_PER_PARAGRAPH = (1, 4)


def seed_sentences(lang: str) -> list[str]:
    """The sentences of the seed articles written in `lang`, as newsmt segments them."""
    sentences: list[str] = []
    for path in sorted(SEEDS_DIR.glob("*.txt")):
        doc = clean_document(path.read_text(encoding="utf-8"))
        if detect_language("\n".join(doc.paragraphs)).lang == lang:
            sentences.extend(s for p in doc.paragraphs for s in split_sentences(p, lang))
    if not sentences:
        raise RuntimeError(f"no {lang} seed articles under {SEEDS_DIR}")
    return sentences


class SentenceSampler:
    """Draws unique sentences: a window of consecutive seed words, as long as a randomly chosen seed sentence."""

    def __init__(self, lang: str, rng: random.Random):
        sentences = seed_sentences(lang)
        self._lengths = [len(s.split()) for s in sentences]
        self._words = [w for s in sentences for w in (_SENTENCE_END.sub("", w) for w in s.split()) if w]
        self._rng = rng
        self._seen: set[str] = set()

    def __call__(self) -> str:
        while True:
            length = min(self._rng.choice(self._lengths), len(self._words))
            start = self._rng.randrange(len(self._words) - length + 1)
            sentence = " ".join(self._words[start:start + length]) + "."
            if sentence not in self._seen:
                self._seen.add(sentence)
                return sentence


def make_articles(count: int, lang: str = "ar", seed: int = SEED) -> list[str]:
    """`count` articles of a few paragraphs of a few unique sentences each; deterministic for a seed."""
    rng = random.Random(seed)
    sentence = SentenceSampler(lang, rng)
    return [
        "\n".join(" ".join(sentence() for _ in range(rng.randint(*SENTENCES_PER_PARAGRAPH)))
                  for _ in range(rng.randint(*PARAGRAPHS_PER_ARTICLE)))
        for _ in range(count)
    ]


def article_segments(articles: list[str], lang: str = "ar") -> list[str]:
    """The distinct segments the pipeline sends to the model for these articles, in first-seen order."""
    segments = (s for text in articles for p in clean_document(text).paragraphs for s in split_sentences(p, lang))
    return list(dict.fromkeys(segments))


def write_articles(articles: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(articles):
        (folder / f"article-{i:04d}.txt").write_text(text + "\n", encoding="utf-8")
    return folder
