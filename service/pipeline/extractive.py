"""Extractive summaries by LexRank: the sentences most central to an article, in their original order.

LexRank (Erkan & Radev, 2004) scores a sentence by PageRank over the graph of cosine similarities between the
article's sentences: a sentence that many others resemble states what the article is about. It needs no model
download and no training, so it is always available: `method=auto` uses it when the abstractive model is not
installed, and the `summarize_then_translate` strategy uses it to pick which source sentences to translate.

Why a short implementation here rather than a library: `sumy` needs NLTK's punkt data (a separate download at run
time, and it has no Hebrew), the `lexrank` package has not been released since 2018 and needs a background corpus,
and both tokenise by language-specific word rules. This one needs only numpy and works the same for English,
Arabic and Hebrew because its features are character 4-grams inside words: Arabic and Hebrew attach articles and
prepositions to the word (`الرئيس`/`للرئيس`, `נשיא`/`הנשיא`), and shared 4-grams still match those forms without
a stemmer. Similarities are computed block by block over the features that occur in two or more sentences, so
memory stays bounded on the largest accepted article.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

from service.text.cleaning import normalize

#: Identifies this scoring in cache keys; bump it when a change here changes which sentences are picked.
LEXRANK_VERSION = "lexrank-1"
#: Probability of following a similarity edge rather than jumping to a random sentence (PageRank's usual 0.85).
DAMPING = 0.85
#: Character n-gram length, inside words padded with a space on each side.
NGRAM = 4
#: Power iteration stops when the scores move less than this (L1), or after MAX_ITERATIONS.
TOLERANCE = 1e-9
MAX_ITERATIONS = 200
#: A candidate this similar (cosine) to an already chosen sentence repeats it and is skipped.
REDUNDANCY = 0.8
#: Shorter "sentences" are datelines, photo credits and list numbers (`/تاس/.`, `الصورة: VNA`): never picked
#: while a real sentence is available.
MIN_SENTENCE_WORDS = 4
#: Feature columns per block when multiplying out the similarity matrix (bounds memory to sentences x block).
_BLOCK = 4096
_WORD = re.compile(r"\w+")


def word_count(text: str) -> int:
    return len(text.split())


def _features(sentence: str) -> Counter[str]:
    """Character n-grams of each word, after normalising and dropping diacritics (harakat, niqqud, accents)."""
    text = unicodedata.normalize("NFD", normalize(sentence).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    grams: Counter[str] = Counter()
    for word in _WORD.findall(text):
        padded = f" {word} "
        if len(padded) <= NGRAM:
            grams[padded] += 1
        else:
            grams.update(padded[i:i + NGRAM] for i in range(len(padded) - NGRAM + 1))
    return grams


def similarity_matrix(sentences: Sequence[str]) -> np.ndarray:
    """Cosine similarity of TF-IDF character n-gram vectors, sentences x sentences (1.0 on the diagonal for any
    sentence with features)."""
    bags = [_features(s) for s in sentences]
    n = len(bags)
    df = Counter(gram for bag in bags for gram in bag)
    idf = {gram: math.log((1 + n) / (1 + count)) + 1.0 for gram, count in df.items()}
    columns = {gram: c for c, gram in enumerate(sorted(g for g, count in df.items() if count > 1))}
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    diagonal = np.zeros(n)
    for i, bag in enumerate(bags):
        weights = {gram: tf * idf[gram] for gram, tf in bag.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        if norm == 0.0:
            continue
        diagonal[i] = 1.0
        for gram, weight in weights.items():
            if gram in columns:  # a feature only one sentence has adds nothing between sentences
                rows.append(i)
                cols.append(columns[gram])
                values.append(weight / norm)
    similarity = np.zeros((n, n))
    row_idx, col_idx, vals = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(values)
    for start in range(0, len(columns), _BLOCK):
        inside = (col_idx >= start) & (col_idx < start + _BLOCK)
        block = np.zeros((n, min(_BLOCK, len(columns) - start)))
        block[row_idx[inside], col_idx[inside] - start] = vals[inside]
        similarity += block @ block.T
    np.fill_diagonal(similarity, diagonal)
    return similarity


def lexrank_scores(similarity: np.ndarray) -> np.ndarray:
    """Continuous LexRank: the stationary distribution of a random walk that follows similarity edges (self-loops
    removed) with probability DAMPING and jumps to a uniformly random sentence otherwise. Sums to 1."""
    n = similarity.shape[0]
    if n == 0:
        return np.zeros(0)
    weights = similarity.copy()
    np.fill_diagonal(weights, 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    # A sentence similar to no other one walks anywhere (a "dangling" node in PageRank).
    transition = np.divide(weights, totals, out=np.full_like(weights, 1.0 / n), where=totals > 0)
    scores = np.full(n, 1.0 / n)
    for _ in range(MAX_ITERATIONS):
        updated = (1.0 - DAMPING) / n + DAMPING * (transition.T @ scores)
        converged = np.abs(updated - scores).sum() < TOLERANCE
        scores = updated
        if converged:
            break
    return scores


def select_sentences(sentences: Sequence[str], *, max_sentences: int, max_words: int) -> list[int]:
    """Indices of the summary sentences, in article order: the highest LexRank scores first (ties go to the
    earlier sentence), skipping fragments, near-repeats of a chosen sentence and sentences that would break
    `max_words`, until `max_sentences` are chosen. When not even one whole sentence fits `max_words`, the single
    best sentence is returned and the caller decides how to shorten it. Deterministic for the same input."""
    if not sentences:
        return []
    similarity = similarity_matrix(sentences)
    scores = lexrank_scores(similarity)
    counts = [word_count(s) for s in sentences]
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    real = [i for i in ranked if counts[i] >= MIN_SENTENCE_WORDS] or ranked
    chosen: list[int] = []
    words = 0
    for i in real:
        if len(chosen) == max_sentences:
            break
        if words + counts[i] > max_words or any(similarity[i, j] >= REDUNDANCY for j in chosen):
            continue
        chosen.append(i)
        words += counts[i]
    return sorted(chosen) or [real[0]]
