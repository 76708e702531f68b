"""The one interface every inference backend implements.

Engines know nothing of caching, HTTP or files: they turn a batch of source segments into a batch of outputs.
The pipeline owns dedupe, ordering, batching and the cache, so each new backend is only load + generate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol


@dataclass(frozen=True)
class GenerationSettings:
    """Every knob that changes an output; all of it goes into the cache key."""

    beam_size: int
    max_output_tokens: int
    max_input_tokens: int
    #: Summarization knobs (None: the model's own defaults). Translation leaves them unset, so its keys keep
    #: their old shape and existing cache entries stay valid.
    min_output_tokens: int | None = None
    length_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    #: Hypotheses returned per input, best first (alternatives); None: only the best, and the key keeps its shape.
    num_hypotheses: int | None = None

    def key(self) -> dict[str, Any]:
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class Hypothesis:
    """One decoded output with the model's confidence in it: the mean log-probability of its tokens (`</s>`
    included), the same on every backend, so a threshold means one thing whichever engine ran. 0 is certainty.
    Equal hypotheses are equal texts: a score moves in its last digits with the padding of the batch it ran in."""

    text: str
    score: float = field(compare=False)


@dataclass(frozen=True)
class Generation:
    """An engine's answer for one input: its hypotheses, best first; one unless `num_hypotheses` asked for more.
    Hypotheses with the same text are merged (keeping the better score), so alternatives always differ."""

    hypotheses: tuple[Hypothesis, ...]

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]


def ranked(hypotheses: list[Hypothesis]) -> Generation:
    """Best score first, one hypothesis per distinct text."""
    unique: dict[str, Hypothesis] = {}
    for hypothesis in sorted(hypotheses, key=lambda h: -h.score):
        unique.setdefault(hypothesis.text, hypothesis)
    return Generation(tuple(unique.values()))


class Engine(Protocol):
    """A loaded seq2seq model ready to generate."""

    #: Name of the backend, e.g. "transformers" or "ctranslate2", with precision where it matters.
    backend: str
    #: Longest sequence the model's position tables allow, on either side.
    max_positions: int
    #: Parts a batch is split into and run in parallel (CTranslate2 replicas); 1 for a single one.
    replicas: int

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Source-side token counts (including special tokens), used to split segments that would not fit."""
        ...

    def generate(self, texts: list[str], settings: GenerationSettings) -> list[Generation]:
        """One generation per input, in order."""
        ...

    def memory_bytes(self) -> int:
        """Approximate memory held by the weights."""
        ...

    def close(self) -> None:
        """Free the weights (unload)."""
        ...
