"""Bulk translation of files and folders: discovery, per-article output files, results.jsonl.

Output files are written atomically (`service.files.write_atomic`), so a run killed at any point leaves every
`NAME.en.txt` either complete or absent. A rerun goes through the same pipeline, whose article and segment caches
make finished work free: nothing is lost and no segment is translated twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from service.bulk.report import ReportArticle, render_report
from service.bulk.stats import BulkSummary
from service.config import TARGET_LANGUAGE
from service.errors import InvalidInput, NewsMTError
from service.files import TEMP_NAME, TEMP_SUFFIX, open_atomic, write_atomic
from service.pipeline.articles import (
    JSONL_SUFFIX,
    TRANSLATION_SUFFIX,
    ArticleSource,
    check_unique_ids,
    error_dict,
    jsonl_articles,
    result_record,
    safe_file_name,
)
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
RESULTS_FILE = "results.jsonl"


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


def remove_stale_temp_files(folder: Path, name: str = "*", *, recursive: bool = True) -> None:
    """Delete the temp files a killed run left in `folder` for outputs matching `name`, so they never pile up;
    finished outputs are never touched. Two runs writing into one folder at once are not supported anyway (the
    second's results.jsonl would replace the first's)."""
    pattern = f".{name}.*{TEMP_SUFFIX}"
    for path in list(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        if path.is_file() and TEMP_NAME.match(path.name):
            path.unlink(missing_ok=True)


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
