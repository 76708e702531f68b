"""Articles as runs read and record them: where each comes from (a file, or a line of a JSONL file), its id and
output names, and the record of its result. The bulk CLI, the cluster run and the jobs API all read inputs and
write records this way, so a job's streamed results are line for line what `newsmt translate` writes to
results.jsonl; kept below all three so that none of them imports another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.errors import InvalidInput, NewsMTError
from service.pipeline.translate import ArticleResult
from service.text.glossary import Glossary

JSONL_SUFFIX = ".jsonl"
TRANSLATION_SUFFIX = ".en.txt"
SUMMARY_SUFFIX = ".summary.txt"
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class ArticleSource:
    """One article to translate: from a text file, or one line of a JSONL file (then `text` is already read)."""

    id: str
    path: Path
    output_name: str
    text: str | None = None
    line: int | None = None
    #: For a formatted file (.html, .srt, .docx; .md too): the translated file's name, NAME.en.EXT.
    document_name: str | None = None

    @property
    def summary_name(self) -> str:
        return self.output_name.removesuffix(TRANSLATION_SUFFIX) + SUMMARY_SUFFIX

    def read(self) -> str:
        if self.text is not None:
            return self.text
        data = self.path.read_bytes()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{self.path} is not valid UTF-8 (byte {exc.start}): {exc.reason}") from exc


def safe_file_name(name: str) -> str:
    """A file-name-safe version of an id: no separators, no '..', so outputs never escape --out."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "article"
    return cleaned[:150]


def check_unique_ids(sources: Sequence[ArticleSource]) -> None:
    """Ids name output files and records, so two articles may not share one."""
    seen: dict[str, str] = {}
    for src in sources:
        where = str(src.path) + (f":{src.line}" if src.line else "")
        if src.id in seen:
            raise InvalidInput(f"two inputs map to the same article id '{src.id}': {seen[src.id]} and {where}")
        seen[src.id] = where


def jsonl_article(path: Path, stem: str, number: int, line: str) -> ArticleSource:
    """The article on line `number` of a JSONL input read from `path` (a non-blank line): its id is `STEM/ID`
    (the line number without an id), or the bare id when `stem` is empty."""
    try:
        record = json.loads(line)
        text = record["text"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}:{number}: expected a JSON object with a 'text' field ({exc})") from exc
    if not isinstance(text, str):
        raise InvalidInput(f"{path}:{number}: 'text' must be a string")
    article = safe_file_name(str(record.get("id", number)))
    article_id = f"{stem}/{article}" if stem else article
    return ArticleSource(article_id, path, f"{article_id}{TRANSLATION_SUFFIX}", text, number)


def jsonl_articles(lines: Iterable[str], path: Path, stem: str) -> Iterator[ArticleSource]:
    """The articles of a JSONL input (`{"text": ..., "id": ...}` per line) read from `path` (see `jsonl_article`)."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield jsonl_article(path, stem, number, line)


def error_dict(error: NewsMTError | Exception) -> dict[str, str]:
    return {"code": getattr(error, "code", "error"), "message": str(error)}


def result_record(src: ArticleSource, result: ArticleResult, output: str | None,
                  low_confidence: float | None = None, glossary: Glossary | None = None) -> dict[str, Any]:
    """One line of results.jsonl. With `low_confidence` (the threshold), also every sentence with its score and the
    list of those below it; with a glossary, the terms applied and whether each made it into the output."""
    record: dict[str, Any] = {
        "id": src.id,
        "source_path": str(src.path) + (f":{src.line}" if src.line else ""),
        "status": "ok" if result.ok else "error",
        "output": output,
        "detected_language": result.detected_language,
        "language_confidence": result.language_confidence,
        "source_url": result.source_url,
        "translation": result.translation,
        "segments": result.segments,
        "cache_hits": result.cache_hits,
        "cache_misses": result.cache_misses,
        "models": [asdict(m) for m in result.models],
        "elapsed_ms": result.elapsed_ms,
    }
    if low_confidence is not None and result.ok:
        record["sentences"] = [{"paragraph": p, "source": s.source, "translation": s.translation, "score": s.score}
                               for p, paragraph in enumerate(result.paragraphs) for s in paragraph.sentences]
        record["low_confidence"] = [asdict(low) for low in result.low_confidence(low_confidence)]
    if glossary is not None and result.ok:
        record["glossary"] = {"name": glossary.name, "digest": glossary.digest, "terms": result.terms()}
    if result.error is not None:
        record["error"] = error_dict(result.error)
    return record
