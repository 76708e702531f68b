"""Statistics of one bulk run, kept apart from the run so the report can render them without importing the run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class BulkSummary:
    articles: int = 0
    failed: int = 0
    segments: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: Summaries written, by the engine that made them ("lexrank" or the model id).
    summary_engines: Counter[str] = field(default_factory=Counter)

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.segments if self.segments else 1.0
