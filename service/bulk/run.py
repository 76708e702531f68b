"""Bulk translation of files and folders: discovery, per-article output files, results.jsonl.

Output files are written atomically (`service.files.write_atomic`), so a run killed at any point leaves every
`NAME.en.txt` either complete or absent. A rerun goes through the same pipeline, whose article and segment caches
make finished work free: nothing is lost and no segment is translated twice.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from service.bulk.report import ReportArticle, render_report
from service.bulk.stats import BulkSummary
from service.config import TARGET_LANGUAGE
from service.errors import InvalidInput, NewsMTError
from service.files import TEMP_NAME, TEMP_SUFFIX, write_atomic
from service.pipeline.documents import translate_document
from service.pipeline.summarize import (
    SUMMARIZE_THEN_TRANSLATE,
    TRANSLATE_THEN_SUMMARIZE,
    Summarizer,
    SummaryOptions,
    SummaryResult,
)
from service.pipeline.translate import ArticleResult, ParagraphResult, Pipeline
from service.text.documents import FORMATS, parse_document
from service.text.glossary import Glossary

INPUT_SUFFIXES = (".txt", ".md")
#: Files translated unit by unit with their format kept: NAME.en.EXT is written beside NAME.en.txt.
DOCUMENT_SUFFIXES = tuple(suffix for suffix in FORMATS if suffix not in INPUT_SUFFIXES)
JSONL_SUFFIX = ".jsonl"
RESULTS_FILE = "results.jsonl"
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


def discover(paths: Sequence[Path], *, documents: bool = True) -> list[ArticleSource]:
    """Articles under the given files and folders (folders recursively), in a stable order. `documents`: also
    .html, .htm, .srt and .docx files, each one article whose translated file keeps its format."""
    sources: list[ArticleSource] = []
    suffixes = (*INPUT_SUFFIXES, JSONL_SUFFIX, *(DOCUMENT_SUFFIXES if documents else ()))
    for root in paths:
        if not root.exists():
            raise InvalidInput(f"input path {root} does not exist")
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
        )
        base = root.parent if root.is_file() else root
        for file in files:
            rel = file.relative_to(base).with_suffix("")
            stem = "/".join(safe_file_name(part) for part in rel.parts)
            if file.suffix.lower() == JSONL_SUFFIX:
                with file.open(encoding="utf-8") as fh:
                    sources.extend(jsonl_articles(fh, file, stem))
            else:
                suffix = file.suffix.lower()
                document = f"{stem}.{TARGET_LANGUAGE}{suffix}" if suffix != ".txt" else None
                sources.append(ArticleSource(stem, file, f"{stem}{TRANSLATION_SUFFIX}", document_name=document))
    check_unique_ids(sources)
    return sources


def check_unique_ids(sources: Sequence[ArticleSource]) -> None:
    """Ids name output files and records, so two articles may not share one."""
    seen: dict[str, str] = {}
    for src in sources:
        where = str(src.path) + (f":{src.line}" if src.line else "")
        if src.id in seen:
            raise InvalidInput(f"two inputs map to the same article id '{src.id}': {seen[src.id]} and {where}")
        seen[src.id] = where


def jsonl_articles(lines: Iterable[str], path: Path, stem: str) -> Iterator[ArticleSource]:
    """The articles of a JSONL input (`{"text": ..., "id": ...}` per line) read from `path`; ids are
    `STEM/ID` (the line number without an id), or the bare id when `stem` is empty."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path}:{number}: expected a JSON object with a 'text' field ({exc})") from exc
        if not isinstance(text, str):
            raise InvalidInput(f"{path}:{number}: 'text' must be a string")
        article = safe_file_name(str(record.get("id", number)))
        article_id = f"{stem}/{article}" if stem else article
        yield ArticleSource(article_id, path, f"{article_id}{TRANSLATION_SUFFIX}", text, number)


def remove_stale_temp_files(folder: Path, name: str = "*", *, recursive: bool = True) -> None:
    """Delete the temp files a killed run left in `folder` for outputs matching `name`, so they never pile up;
    finished outputs are never touched. Two runs writing into one folder at once are not supported anyway (the
    second's results.jsonl would replace the first's)."""
    pattern = f".{name}.*{TEMP_SUFFIX}"
    for path in list(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        if path.is_file() and TEMP_NAME.match(path.name):
            path.unlink(missing_ok=True)


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


def summary_fields(out: Path, src: ArticleSource, summary: SummaryResult) -> dict[str, Any]:
    """Write NAME.summary.txt (atomically) and return what results.jsonl says about the summary."""
    fields: dict[str, Any] = {"summary": summary.summary, "summary_output": None, "summarizer": summary.describe()}
    if summary.ok and summary.summary is not None:
        write_atomic(out / src.summary_name, summary.summary + "\n")
        fields["summary_output"] = src.summary_name
    elif summary.error is not None:
        fields["summary_error"] = error_dict(summary.error)
    return fields


def _translate_file(pipeline: Pipeline, src: ArticleSource, source_lang: str,
                    beam_size: int | None) -> tuple[ArticleResult, bytes | None]:
    """One formatted file: its result (or its error, as for any article) and the translated file's bytes."""
    try:
        doc = parse_document(src.path.name, src.path.read_bytes(), pipeline.settings)
        translated = translate_document(pipeline, doc, source_lang, beam_size=beam_size, article_id=src.id)
    except NewsMTError as exc:
        return ArticleResult(id=src.id, error=exc), None
    except OSError as exc:
        return ArticleResult(id=src.id, error=InvalidInput(f"cannot read {src.path}: {exc}")), None
    return translated.result, translated.content


def translate_tree(pipeline: Pipeline, sources: Sequence[ArticleSource], out: Path, *, source_lang: str = "auto",
                   beam_size: int | None = None, progress: bool | None = None,
                   summarizer: Summarizer | None = None, summary_options: SummaryOptions | None = None,
                   write_translations: bool = True, report: Path | None = None,
                   glossary: Glossary | None = None) -> BulkSummary:
    """Translate every article, writing NAME.en.txt files and results.jsonl under `out`. With a summarizer, also
    NAME.summary.txt and the summary in each record; `write_translations=False` writes summaries only. With
    `report`, also one bilingual HTML file of the whole run (service/bulk/report.py). With a `glossary`, its terms
    are pinned in every translation (whole translations only: summarize_then_translate does not take one)."""
    if summarizer is not None:
        summary_options = summary_options or SummaryOptions.from_settings(pipeline.settings)
        if write_translations and summary_options.strategy == SUMMARIZE_THEN_TRANSLATE:
            raise InvalidInput("summarize_then_translate translates only the picked sentences, so it cannot "
                               "write whole translations; use translate_then_summarize")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)
    if report is not None and report.parent.is_dir():
        remove_stale_temp_files(report.parent, report.name, recursive=False)
    summary = BulkSummary()
    records: list[dict[str, Any]] = []
    paragraphs: list[list[ParagraphResult]] = []  # per record, kept only for the report
    started = time.perf_counter()
    chunk = pipeline.settings.bulk_chunk_articles
    bar = tqdm(total=len(sources), unit="article", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    try:
        for first in range(0, len(sources), chunk):
            part = sources[first:first + chunk]
            texts: list[str] = []
            unreadable: dict[int, ArticleResult] = {}  # and formatted files, translated on their own
            documents: dict[int, bytes] = {}
            for i, src in enumerate(part):
                if src.document_name is not None and src.path.suffix.lower() in DOCUMENT_SUFFIXES:
                    texts.append("")
                    unreadable[i], content = _translate_file(pipeline, src, source_lang, beam_size)
                    if content is not None:
                        documents[i] = content
                    continue
                try:
                    texts.append(src.read())
                except (InvalidInput, OSError) as exc:
                    texts.append("")
                    unreadable[i] = ArticleResult(id=src.id, error=InvalidInput(str(exc)))
            ids = [s.id for s in part]
            summaries: list[SummaryResult | None] = [None] * len(part)
            if summarizer is None or (glossary is not None and summary_options is not None
                                      and summary_options.strategy == TRANSLATE_THEN_SUMMARIZE):
                results = pipeline.translate(texts, source_lang, ids=ids, beam_size=beam_size, glossary=glossary)
                if summarizer is not None:
                    summaries = list(summarizer.summarize_translations(results, summary_options))
            else:
                done = summarizer.summarize(texts, source_lang, ids=ids, beam_size=beam_size, options=summary_options)
                results, summaries = [s.article for s in done], list(done)
            for i, (src, result, summarized) in enumerate(zip(part, results, summaries, strict=True)):
                result = unreadable.get(i, result)
                output = None
                if i in unreadable:
                    summarized = None
                error = result.error or (summarized.error if summarized is not None else None)
                if result.ok and result.translation is not None and write_translations:
                    write_atomic(out / src.output_name, result.translation + "\n")
                    output = src.output_name
                    if src.document_name is not None:
                        write_atomic(out / src.document_name,
                                     documents.get(i) or (result.translation + "\n").encode("utf-8"))
                if error is not None:
                    summary.failed += 1
                    summary.errors.append(f"{src.id}: {error}")
                record = result_record(src, result, output, pipeline.settings.low_confidence, glossary)
                if summarized is not None:
                    record.update(summary_fields(out, src, summarized), status="ok" if error is None else "error")
                    if summarized.ok:
                        summary.summary_engines[str(summarized.engine)] += 1
                records.append(record)
                if report is not None:
                    paragraphs.append(result.paragraphs)
                summary.articles += 1
                summary.segments += result.segments
                summary.cache_hits += result.cache_hits
            bar.update(len(part))
            bar.set_postfix(cache_hits=f"{summary.hit_rate:.0%}", failed=summary.failed)
    finally:
        bar.close()
    write_atomic(out / RESULTS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    summary.seconds = time.perf_counter() - started
    if report is not None:
        articles = [ReportArticle.from_record(r, p) for r, p in zip(records, paragraphs, strict=True)]
        write_atomic(report, render_report(articles, summary, low_confidence=pipeline.settings.low_confidence))
    return summary
