"""One translated sentence as newsmt keeps it: the translation, the model's score, the other hypotheses when they were
asked for, and the glossary terms applied to it. This is also the segment cache's value, so a sentence served from
the cache has its score, alternatives and term report too.

Cache values written before scores existed are plain strings; they read back as a translation without a score (and
entries that are neither read as misses), so an upgrade re-translates nothing and never fails on an old entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from service.engines.base import Generation, Hypothesis


@dataclass
class TermResult:
    """A glossary term applied to a sentence: `matched` as written in the source, `found`: whether the English
    term is in the translation."""

    matched: str
    source: str
    target: str
    found: bool


@dataclass
class SentenceResult:
    source: str
    translation: str
    #: Mean log-probability per token of `translation` (0 is certainty); None for entries cached before scores.
    score: float | None = None
    #: The next-best hypotheses, best first, when alternatives were asked for.
    alternatives: list[Hypothesis] = field(default_factory=list)
    terms: list[TermResult] = field(default_factory=list)

    def option(self, rank: int) -> str:
        """The rank-th hypothesis (0 is the translation), or the translation when the beam gave fewer."""
        return self.alternatives[rank - 1].text if 0 < rank <= len(self.alternatives) else self.translation

    def cache_value(self) -> str:
        return json.dumps({"translation": self.translation, "score": self.score,
                           "alternatives": [[h.text, h.score] for h in self.alternatives],
                           "terms": [[t.matched, t.source, t.target, t.found] for t in self.terms]},
                          ensure_ascii=False)

    @classmethod
    def from_cache(cls, source: str, value: str) -> SentenceResult | None:
        """A cached sentence; None for a value that does not read back (a miss)."""
        if not value.startswith('{"translation"'):
            return cls(source, value)  # cached before scores existed: a translation with no score
        try:
            data = orjson.loads(value)
            score = data["score"]
            return cls(source, str(data["translation"]), None if score is None else float(score),
                       [Hypothesis(str(text), float(s)) for text, s in data["alternatives"]],
                       [TermResult(str(m), str(s), str(t), bool(f)) for m, s, t, f in data["terms"]])
        except (ValueError, KeyError, TypeError):
            return None


def join_generations(parts: Sequence[Generation], weights: Sequence[int], separator: str = " ") -> Generation:
    """Pieces of one sentence (split to fit the model) as one generation: hypothesis k is the pieces' k-th
    hypotheses joined (a piece with fewer contributes its best), scored by the mean of the pieces' scores weighted
    by their lengths."""
    if len(parts) == 1:
        return parts[0]
    total = sum(weights) or 1
    joined = []
    for rank in range(max(len(p.hypotheses) for p in parts)):
        chosen = [p.hypotheses[min(rank, len(p.hypotheses) - 1)] for p in parts]
        score = sum(h.score * w for h, w in zip(chosen, weights, strict=True)) / total
        joined.append(Hypothesis(separator.join(h.text for h in chosen), round(score, 4)))
    unique: dict[str, Hypothesis] = {}
    for hypothesis in joined:
        unique.setdefault(hypothesis.text, hypothesis)
    return Generation(tuple(unique.values()))
