"""The bilingual HTML report of a bulk run (`newsmt translate ... --report report.html`).

One self-contained file: CSS inline, no scripts, no external assets, so it can be mailed, archived or opened
offline. Each article shows its source and English paragraph by paragraph side by side (source right-to-left for
Arabic and Hebrew, with `lang` attributes so browsers and screen readers pick the right fonts and voices), the summary
when the run made one, the source URL and any error; the header has the run statistics.

Why Jinja2 with autoescape rather than f-strings and `html.escape`: every article's text is untrusted scraped
content, and with autoescape every `{{ value }}` is escaped unless a template explicitly opts out, so a forgotten
escape call cannot turn an article into markup. The template also stays readable as HTML. A Content-Security-Policy
that allows no scripts backs this up in the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from service.bulk.stats import BulkSummary
from service.config import LANGUAGE_NAMES
from service.pipeline.translate import ParagraphResult

#: Written right to left. Only these of the languages the pipeline reports (ar, he, en) need it.
RTL_LANGUAGES = frozenset({"ar", "he"})


def text_direction(language: str | None) -> str:
    return "rtl" if language in RTL_LANGUAGES else "ltr"


def language_name(language: str | None) -> str:
    return LANGUAGE_NAMES.get(language or "", language or "unknown")


@dataclass(frozen=True)
class ReportArticle:
    """One article as the report shows it: its results.jsonl record (so whatever the run recorded, a summary
    included, reaches the report) plus the paragraph pairs that the record does not keep."""

    id: str
    source_path: str
    ok: bool
    detected_language: str | None
    language_confidence: float | None
    source_url: str | None
    summary: str | None
    error: str | None
    segments: int
    cache_hits: int
    paragraphs: Sequence[ParagraphResult]
    #: Sentences below the run's low-confidence threshold, and the glossary terms applied (from the record).
    low_confidence: int = 0
    terms: Sequence[Mapping[str, Any]] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any], paragraphs: Sequence[ParagraphResult]) -> ReportArticle:
        error = record.get("error") or record.get("summary_error")  # a failed summary fails the article too
        summary = record.get("summary")
        return cls(
            id=record["id"],
            source_path=record["source_path"],
            ok=record["status"] == "ok",
            detected_language=record.get("detected_language"),
            language_confidence=record.get("language_confidence"),
            source_url=record.get("source_url"),
            summary=summary if isinstance(summary, str) and summary.strip() else None,
            error=f"{error['code']}: {error['message']}" if error else None,
            segments=record.get("segments", 0),
            cache_hits=record.get("cache_hits", 0),
            paragraphs=paragraphs,
            low_confidence=len(record.get("low_confidence") or []),
            terms=(record.get("glossary") or {}).get("terms", []),
        )

    @property
    def link(self) -> str | None:
        """The source URL as a link target, only for web schemes: a scraped `javascript:` URL stays plain text."""
        url = self.source_url
        return url if url and url.lower().startswith(("http://", "https://")) else None


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("service.bulk", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["direction"] = text_direction
    env.filters["language_name"] = language_name
    return env


def render_report(articles: Sequence[ReportArticle], stats: BulkSummary, *, low_confidence: float,
                  generated: datetime | None = None) -> str:
    """The report as one HTML string; `stats` are the run's totals (articles, segments, cache hits, seconds).
    Sentences scored below `low_confidence` are marked, so a reader sees which to check against the source."""
    template = _environment().get_template("report.html")
    languages = sorted({p.language for a in articles for p in a.paragraphs} - {"en"})
    return template.render(
        articles=articles,
        stats=stats,
        source_languages=[language_name(lang) for lang in languages] or ["none"],
        threshold=low_confidence,
        low_confidence=sum(a.low_confidence for a in articles),
        generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
    )
