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
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from service.bulk.report import ReportArticle, render_report
from service.bulk.stats import BulkSummary
from service.config import TARGET_LANGUAGE
from service.errors import InvalidInput, NewsMTError
from service.files import TEMP_NAME, TEMP_SUFFIX, open_atomic, write_atomic
from service.pipeline.documents import translate_document
from service.pipeline.summarize import (
    SUMMARIZE_THEN_TRANSLATE,
    TRANSLATE_THEN_SUMMARIZE,
    Summarizer,
    SummaryOptions,
    SummaryResult,
)
from service.pipeline.translate import ArticleResult, Pipeline
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


def input_files(paths: Sequence[Path], *, documents: bool = False) -> Iterator[tuple[Path, str]]:
    """Each input file under the given files and folders (folders recursively), in a stable order, with the stem
    its articles' ids and output names start with. `documents`: also .html, .htm, .srt and .docx files."""
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
            yield file, "/".join(safe_file_name(part) for part in rel.parts)


def is_jsonl(file: Path) -> bool:
    return file.suffix.lower() == JSONL_SUFFIX


def discover(paths: Sequence[Path], *, documents: bool = True) -> list[ArticleSource]:
    """Articles under the given files and folders (folders recursively), in a stable order. `documents`: also
    .html, .htm, .srt and .docx files, each one article whose translated file keeps its format."""
    sources: list[ArticleSource] = []
    for file, stem in input_files(paths, documents=documents):
        if is_jsonl(file):
            with file.open(encoding="utf-8") as fh:
                sources.extend(jsonl_articles(fh, file, stem))
        else:
            suffix = file.suffix.lower()
            document = f"{stem}.{TARGET_LANGUAGE}{suffix}" if suffix != ".txt" else None
            sources.append(ArticleSource(stem, file, f"{stem}{TRANSLATION_SUFFIX}", document_name=document))
    check_unique_ids(sources)
    return sources


def no_articles_message(paths: Sequence[Path], *, documents: bool) -> str:
    return (f"no articles (*.txt, *.md, *.jsonl{', documents' if documents else ''}) under "
            f"{', '.join(map(str, paths))}")


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


def read_sources(part: Sequence[ArticleSource]) -> tuple[list[str], dict[int, ArticleResult]]:
    """Each article's text, with "" standing in for one that cannot be read; the failures, by position, as results
    that carry the error (they are recorded, never fatal)."""
    texts: list[str] = []
    unreadable: dict[int, ArticleResult] = {}
    for i, src in enumerate(part):
        try:
            texts.append(src.read())
        except (InvalidInput, OSError) as exc:
            texts.append("")
            unreadable[i] = ArticleResult(id=src.id, error=InvalidInput(str(exc)))
    return texts, unreadable


def check_summary_options(summarizer_on: bool, options: SummaryOptions | None, write_translations: bool) -> None:
    if summarizer_on and options is not None and write_translations \
            and options.strategy == SUMMARIZE_THEN_TRANSLATE:
        raise InvalidInput("summarize_then_translate translates only the picked sentences, so it cannot "
                           "write whole translations; use translate_then_summarize")


class RunOutputs:
    """One run's outputs, written as articles finish and in input order: NAME.en.txt, NAME.summary.txt, the lines of
    results.jsonl (streamed into a temp file that replaces results.jsonl only when the run completes, so memory
    stays flat however many articles there are) and the optional report. The local run and the cluster run
    (service/bulk/cluster.py) both write through it, so their outputs cannot drift apart."""

    def __init__(self, out: Path, *, total: int | None, write_translations: bool = True, report: Path | None = None,
                 progress: bool | None = None, low_confidence: float, glossary: Glossary | None = None):
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)
        if report is not None and report.parent.is_dir():
            remove_stale_temp_files(report.parent, report.name, recursive=False)
        self.out, self.report, self.write_translations = out, report, write_translations
        self.low_confidence, self.glossary = low_confidence, glossary
        self.summary = BulkSummary()
        self._report_rows: list[ReportArticle] = []
        self._started = time.perf_counter()
        self._files = ExitStack()
        self._results = self._files.enter_context(open_atomic(out / RESULTS_FILE))
        self._bar = tqdm(total=total, unit="article", disable=None if progress is None else not progress,
                         dynamic_ncols=True)

    def __enter__(self) -> RunOutputs:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        self._bar.close()
        if kind is not None:  # a failed run leaves every earlier output, results.jsonl included, as it was
            self._files.__exit__(kind, error, trace)

    def add(self, src: ArticleSource, result: ArticleResult, summarized: SummaryResult | None = None,
            document: bytes | None = None) -> None:
        """Write one finished article's files and its results.jsonl line. `document`: a formatted file's
        translated bytes (NAME.en.EXT; without them, the translation as text)."""
        summary, output = self.summary, None
        error = result.error or (summarized.error if summarized is not None else None)
        if result.ok and result.translation is not None and self.write_translations:
            write_atomic(self.out / src.output_name, result.translation + "\n")
            output = src.output_name
            if src.document_name is not None:
                write_atomic(self.out / src.document_name, document or (result.translation + "\n").encode("utf-8"))
        if error is not None:
            summary.failed += 1
            summary.errors.append(f"{src.id}: {error}")
        record = result_record(src, result, output, self.low_confidence, self.glossary)
        if summarized is not None:
            record.update(summary_fields(self.out, src, summarized), status="ok" if error is None else "error")
            if summarized.ok:
                summary.summary_engines[str(summarized.engine)] += 1
        self._results.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.report is not None:
            self._report_rows.append(ReportArticle.from_record(record, result.paragraphs))
        summary.articles += 1
        summary.segments += result.segments
        summary.cache_hits += result.cache_hits

    def advance(self, articles: int) -> None:
        self._bar.update(articles)
        self._bar.set_postfix(cache_hits=f"{self.summary.hit_rate:.0%}", failed=self.summary.failed)

    def finish(self) -> BulkSummary:
        """Put results.jsonl (and the report) in place; call once every article was added."""
        self._files.close()  # results.jsonl replaced
        self.summary.seconds = time.perf_counter() - self._started
        if self.report is not None:
            write_atomic(self.report, render_report(self._report_rows, self.summary,
                                                    low_confidence=self.low_confidence))
        return self.summary


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
    check_summary_options(summarizer is not None, summary_options, write_translations)
    chunk = pipeline.settings.bulk_chunk_articles
    with RunOutputs(out, total=len(sources), write_translations=write_translations, report=report,
                    progress=progress, low_confidence=pipeline.settings.low_confidence,
                    glossary=glossary) as outputs:
        for first in range(0, len(sources), chunk):
            part = sources[first:first + chunk]
            # Formatted files are translated on their own (their unit structure kept); the rest together.
            formatted = {i for i, src in enumerate(part)
                         if src.document_name is not None and src.path.suffix.lower() in DOCUMENT_SUFFIXES}
            texts, unreadable = read_sources([ArticleSource(s.id, s.path, s.output_name, "") if i in formatted else s
                                              for i, s in enumerate(part)])
            documents: dict[int, bytes] = {}
            for i in formatted:
                unreadable[i], content = _translate_file(pipeline, part[i], source_lang, beam_size)
                if content is not None:
                    documents[i] = content
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
                if i in unreadable:
                    result, summarized = unreadable[i], None
                outputs.add(src, result, summarized, documents.get(i))
            outputs.advance(len(part))
        return outputs.finish()
