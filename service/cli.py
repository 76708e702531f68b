"""`newsmt` command line: thin calls into the pipeline, the model store and the cache.

Typer because it derives the interface (help, types, completion) from type hints, so commands stay short and
documented. Exit codes: 0 success, 1 some articles failed or an operation failed, 2 bad usage or input; domain
errors get theirs from `EXIT_CODES`, as the HTTP routes get statuses from one table.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from service.bulk.run import discover, no_articles_message, translate_tree
from service.bulk.stats import BulkSummary
from service.cache.segment_cache import SegmentCache
from service.config import TASKS, Ct2Quantization, Settings
from service.engines.manager import ModelManager
from service.errors import GlossaryNotFound, InvalidInput, NewsMTError, UnknownTask, UnsupportedLanguage, mapped
from service.pipeline.summarize import METHODS, STRATEGIES, TRANSLATE_THEN_SUMMARIZE, Summarizer, SummaryOptions
from service.pipeline.translate import SOURCE_CHOICES, Pipeline
from service.store.convert import convert_model
from service.store.glossaries import GlossaryStore, parse_table
from service.store.model_store import ModelStore
from service.text.glossary import Glossary

app = typer.Typer(help="newsmt: translate Hebrew and Arabic news into English, with a content-hash disk cache.",
                  no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Install and inspect models.", no_args_is_help=True)
glossary_app = typer.Typer(help="Named glossaries: terms pinned in translations (`--glossary`, the API's `glossary`).",
                           no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and clear the cache (diskcache, or Redis with NEWSMT_CACHE_URL).",
                        no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")
app.add_typer(glossary_app, name="glossary")


EXIT_FAILED, EXIT_USAGE = 1, 2
#: Exit status per domain error (the most specific class in an error's MRO wins); any other is EXIT_FAILED.
EXIT_CODES: dict[type[NewsMTError], int] = {
    InvalidInput: EXIT_USAGE,
    UnsupportedLanguage: EXIT_USAGE,
    UnknownTask: EXIT_USAGE,
    GlossaryNotFound: EXIT_USAGE,
}


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _failed(error: NewsMTError) -> typer.Exit:
    return _fail(str(error), mapped(EXIT_CODES, error, EXIT_FAILED))


def _settings() -> Settings:
    return Settings()


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


Paths = Annotated[list[Path], typer.Argument(
    help="Files or folders: *.txt, *.md, *.jsonl with a 'text' field; `translate` also takes *.html, *.htm, *.srt "
    "and *.docx, writing NAME.en.EXT (format kept) beside NAME.en.txt.")]
Source = Annotated[str, typer.Option(help=f"Source language: {'|'.join(SOURCE_CHOICES)}.")]
BeamSize = Annotated[int | None, typer.Option(help="Override NEWSMT_BEAM_SIZE (translation).")]
Progress = Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a TTY).")]
_RAY = "Cluster (--cluster ray)"
Cluster = Annotated[str | None, typer.Option(
    help="Run on a cluster: 'ray' spreads the work over Ray Data (needs the cluster extra; see docs/cluster.md).",
    rich_help_panel=_RAY)]
RayAddress = Annotated[str | None, typer.Option(
    help="Ray cluster address (default: RAY_ADDRESS, else a cluster running on this machine, else a new local one; "
    "'local': always a new local one).",
    rich_help_panel=_RAY)]
Concurrency = Annotated[str, typer.Option(
    help="Inference actors: N, or MIN,MAX for a pool Ray scales between them.", rich_help_panel=_RAY)]
NumCpus = Annotated[float, typer.Option(help="CPUs reserved per inference actor.", rich_help_panel=_RAY)]
NumGpus = Annotated[float, typer.Option(
    help="GPUs per inference actor (1: one actor per GPU; 0.5: two share one).", rich_help_panel=_RAY)]
RayBatchSize = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Articles per inference-actor call (default NEWSMT_BULK_CHUNK_ARTICLES).",
    rich_help_panel=_RAY)]
MaxRestarts = Annotated[int, typer.Option(
    min=-1, help="Restarts of an inference actor that dies (-1: no limit).", rich_help_panel=_RAY)]
MaxTaskRetries = Annotated[int, typer.Option(
    min=-1, help="Retries of a batch whose actor died (-1: no limit).", rich_help_panel=_RAY)]


@app.command()
def translate(
    paths: Paths,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for NAME.en.txt and results.jsonl.")],
    source: Source = "auto",
    beam_size: BeamSize = None,
    progress: Progress = None,
    with_summary: Annotated[bool, typer.Option(
        "--summarize", help="Also summarize each translation: NAME.summary.txt and `summary` in results.jsonl "
        "(engine per NEWSMT_SUMMARY_METHOD; extractive when no summary model is installed).")] = False,
    report_path: Annotated[Path | None, typer.Option(
        "--report", help="Also write one self-contained HTML file: source and English side by side per paragraph, "
        "summaries, source URLs and run statistics.")] = None,
    cluster: Cluster = None,
    ray_address: RayAddress = None,
    concurrency: Concurrency = "1",
    num_cpus: NumCpus = 1.0,
    num_gpus: NumGpus = 0.0,
    batch_size: RayBatchSize = None,
    max_restarts: MaxRestarts = -1,
    max_task_retries: MaxTaskRetries = 3,
    glossary: Annotated[str | None, typer.Option(
        "--glossary", help="Pin terms: a stored glossary's name (`newsmt glossary list`) or a TSV/CSV file of "
        "source term, English term.")] = None,
) -> None:
    """Bulk-translate articles; a rerun serves finished work from the cache."""
    # The whole translation is written anyway, so its summary is made from it (never from picked sentences).
    summary = {"strategy": TRANSLATE_THEN_SUMMARIZE} if with_summary else None
    ray = _ray_options(cluster, ray_address, concurrency, num_cpus, num_gpus, batch_size, max_restarts,
                       max_task_retries)
    _bulk(paths, out, source=source, beam_size=beam_size, progress=progress, summary=summary,
          report_path=report_path, ray=ray, glossary=glossary)


@app.command()
def summarize(
    paths: Paths,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for NAME.summary.txt and results.jsonl.")],
    source: Source = "auto",
    method: Annotated[str | None, typer.Option(help=f"{'|'.join(METHODS)} (default NEWSMT_SUMMARY_METHOD).")] = None,
    strategy: Annotated[
        str | None, typer.Option(help=f"{'|'.join(STRATEGIES)} (default NEWSMT_SUMMARY_STRATEGY).")
    ] = None,
    max_words: Annotated[int | None, typer.Option(help="Override NEWSMT_SUMMARY_MAX_WORDS.")] = None,
    ratio: Annotated[float | None, typer.Option(help="Also cap at this fraction of the article's words.")] = None,
    max_sentences: Annotated[int | None, typer.Option(help="Override NEWSMT_SUMMARY_MAX_SENTENCES.")] = None,
    beam_size: BeamSize = None,
    progress: Progress = None,
    cluster: Cluster = None,
    ray_address: RayAddress = None,
    concurrency: Concurrency = "1",
    num_cpus: NumCpus = 1.0,
    num_gpus: NumGpus = 0.0,
    batch_size: RayBatchSize = None,
    max_restarts: MaxRestarts = -1,
    max_task_retries: MaxTaskRetries = 3,
) -> None:
    """Summarize articles in English (translating as the strategy needs); a rerun is served from the cache."""
    summary = {"method": method, "strategy": strategy, "max_words": max_words, "ratio": ratio,
               "max_sentences": max_sentences}
    ray = _ray_options(cluster, ray_address, concurrency, num_cpus, num_gpus, batch_size, max_restarts,
                       max_task_retries)
    _bulk(paths, out, source=source, beam_size=beam_size, progress=progress, summary=summary,
          write_translations=False, ray=ray)


def _ray_options(cluster: str | None, address: str | None, concurrency: str, num_cpus: float, num_gpus: float,
                 batch_size: int | None, max_restarts: int, max_task_retries: int) -> dict[str, Any] | None:
    """The --cluster options, checked; None for a local run (which then never imports Ray)."""
    if cluster is None:
        return None
    if cluster != "ray":
        raise _fail(f"--cluster must be 'ray', got '{cluster}'", EXIT_USAGE)
    return {"address": address, "concurrency": concurrency, "num_cpus": num_cpus, "num_gpus": num_gpus,
            "batch_size": batch_size, "max_restarts": max_restarts, "max_task_retries": max_task_retries}


def _bulk(paths: list[Path], out: Path, *, source: str, beam_size: int | None, progress: bool | None,
          summary: dict[str, Any] | None, write_translations: bool = True, report_path: Path | None = None,
          ray: dict[str, Any] | None = None, glossary: str | None = None) -> None:
    """What `translate` and `summarize` share: discover, run the tree (here or on Ray), report; exit 1 if any
    article failed. `summary` (SummaryOptions overrides) switches summaries on."""
    settings = _settings()
    if source not in SOURCE_CHOICES:
        raise _fail(f"--source must be one of {', '.join(SOURCE_CHOICES)}", EXIT_USAGE)
    try:
        options = SummaryOptions.from_settings(settings, **summary) if summary is not None else None
        if ray is not None and glossary is not None:
            raise _fail("--glossary is not supported with --cluster ray yet; run it without --cluster", EXIT_USAGE)
        pinned = GlossaryStore(settings.glossaries_dir).resolve(glossary) if glossary is not None else None
        if ray is None:
            report, loaded = _bulk_here(settings, paths, out, source=source, beam_size=beam_size, progress=progress,
                                        options=options, write_translations=write_translations,
                                        report_path=report_path, glossary=pinned)
        else:
            report, loaded = _bulk_on_ray(settings, paths, out, ray, source=source, beam_size=beam_size,
                                          progress=progress, options=options, write_translations=write_translations,
                                          report_path=report_path)
    except typer.Exit:  # a usage error already reported (click's Exit is a RuntimeError: not the cluster's)
        raise
    except NewsMTError as exc:  # found before any work: bad usage or input (exit 2), or e.g. a model load
        raise _failed(exc) from exc
    except RuntimeError as exc:  # the cluster run failed as a whole
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"cannot write output under {out}: {exc}") from exc
    summaries = ", ".join(f"{engine} {n}" for engine, n in report.summary_engines.most_common()) or "none"
    typer.echo(
        f"{'translated' if write_translations else 'summarized'} {report.articles - report.failed}/"
        f"{report.articles} articles in {report.seconds:.1f}s; "
        f"segments {report.segments}, cache hits {report.cache_hits} ({report.hit_rate:.1%}); "
        f"models loaded: {loaded or 'none'}; {f'summaries by: {summaries}; ' if options else ''}"
        f"results: {out / 'results.jsonl'}"
    )
    if report_path is not None:
        typer.echo(f"report: {report_path}")
    if report.failed:
        for line in dict.fromkeys(report.errors):
            typer.secho(f"failed: {line}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_FAILED)


def _bulk_here(settings: Settings, paths: list[Path], out: Path, *, source: str, beam_size: int | None,
               progress: bool | None, options: SummaryOptions | None, write_translations: bool,
               report_path: Path | None, glossary: Glossary | None = None) -> tuple[BulkSummary, int]:
    """The local run: this process's pipeline. Returns the statistics and how many models it loaded."""
    sources = discover(paths, documents=write_translations)
    if not sources:
        raise _fail(no_articles_message(paths, documents=write_translations), EXIT_USAGE)
    cache = SegmentCache.from_settings(settings)
    manager = ModelManager(settings)
    pipeline = Pipeline(settings, manager, cache)
    try:
        report = translate_tree(pipeline, sources, out, source_lang=source, beam_size=beam_size, progress=progress,
                                summarizer=Summarizer(pipeline) if options else None, summary_options=options,
                                write_translations=write_translations, report=report_path, glossary=glossary)
    finally:
        manager.close()
        cache.close()
    return report, manager.load_count


def _bulk_on_ray(settings: Settings, paths: list[Path], out: Path, ray: dict[str, Any], *, source: str,
                 beam_size: int | None, progress: bool | None, options: SummaryOptions | None,
                 write_translations: bool, report_path: Path | None) -> tuple[BulkSummary, int]:
    """The cluster run (service/bulk/cluster.py), imported only here so that a local run never imports Ray."""
    try:
        from service.bulk.cluster import ActorPool, translate_on_ray
    except ImportError as exc:
        raise _fail(f"--cluster ray needs Ray: pip install -e '.[cluster]' ({exc})", EXIT_USAGE) from exc
    min_size, max_size = ActorPool.parse_concurrency(ray["concurrency"])
    pool = ActorPool(min_size, max_size, ray["num_cpus"], ray["num_gpus"], ray["batch_size"], ray["max_restarts"],
                     ray["max_task_retries"])
    return translate_on_ray(settings, paths, out, address=ray["address"], pool=pool, source_lang=source,
                            beam_size=beam_size, progress=progress, summary_options=options,
                            write_translations=write_translations, report=report_path)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default NEWSMT_HOST: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default NEWSMT_PORT: 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; each loads its own models.")] = 1,
) -> None:
    """Run the HTTP API (native /v1 and LibreTranslate-compatible routes) with uvicorn."""
    import uvicorn

    settings = _settings()
    # The factory string (not an app object) lets uvicorn start workers; each builds Settings from NEWSMT_* itself.
    uvicorn.run("service.api.app:create_app", factory=True, host=host or settings.host, port=port or settings.port,
                workers=workers)


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Configured models per task, whether each is installed, its size and revision."""
    rows = ModelStore(_settings()).listing()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    for r in rows:
        state = f"installed ({r.origin}) {r.size_bytes / 1e6:.1f} MB rev {r.revision} at {r.path}" if r.installed \
            else f"NOT INSTALLED: {r.problem}"
        typer.echo(f"{r.task:18} {r.configured}\n{'':18} {state}")


@models_app.command("pull")
def models_pull(
    targets: Annotated[list[str] | None, typer.Argument(help="Tasks or Hugging Face repo ids; default: every "
                                                              "configured task that is not installed.")] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit (default: the configured one).")] = None,
) -> None:
    """Download models from the Hugging Face hub into the models folder (weights, config, tokenizer only)."""
    store = ModelStore(_settings())
    if not targets:
        targets = [row.task for row in store.listing() if not row.installed]
        if not targets:
            typer.echo("all configured models are installed")
            return
    for target in targets:
        typer.echo(f"pulling {target} ...")
        try:
            path = store.pull(target, revision)
        except NewsMTError as exc:
            raise _failed(exc) from exc
        typer.echo(f"installed {target} at {path}")


@models_app.command("import")
def models_import(
    task: Annotated[str, typer.Argument(help=f"One of: {', '.join(TASKS)}.")],
    directory: Annotated[Path, typer.Argument(help="A local Hugging Face-format model directory.")],
) -> None:
    """Register a model directory you already have for a task (used in place, not copied)."""
    try:
        found = ModelStore(_settings()).import_dir(task, directory)
    except NewsMTError as exc:
        raise _failed(exc) from exc
    typer.echo(f"imported {found.path} for {task} (revision {found.revision})")


@models_app.command("convert")
def models_convert(
    task: Annotated[str, typer.Argument(help=f"One of: {', '.join(TASKS)}.")],
    quantization: Annotated[str | None, typer.Option(
        help=f"{'|'.join(get_args(Ct2Quantization))} (default: NEWSMT_CT2_QUANTIZATION, int8).")] = None,
) -> None:
    """Write a CTranslate2 copy of a task's installed model under the models folder; NEWSMT_BACKEND=auto (the
    default) then runs it, and so does NEWSMT_BACKEND=ctranslate2."""
    settings = _settings()
    quantization = quantization or settings.ct2_quantization
    if quantization not in get_args(Ct2Quantization):
        raise _fail(f"--quantization must be one of {', '.join(get_args(Ct2Quantization))}", EXIT_USAGE)
    try:
        resolved = ModelStore(settings).resolve(task)
        converted = convert_model(settings.models_dir, resolved, quantization,
                                  allow_pickle_weights=settings.allow_pickle_weights)
    except NewsMTError as exc:
        raise _failed(exc) from exc
    typer.echo(f"converted {resolved.model_id} (revision {resolved.revision}) for {task} to CTranslate2 "
               f"{quantization} at {converted.path}")


def _glossaries() -> GlossaryStore:
    return GlossaryStore(_settings().glossaries_dir)


@glossary_app.command("add")
def glossary_add(
    name: Annotated[str, typer.Argument(help="Letters, digits, '.', '_' or '-'.")],
    file: Annotated[Path, typer.Argument(help="TSV or CSV: source term, English term per row (a header row and "
                                              "# comments are skipped).")],
) -> None:
    """Create or replace a glossary from a file; sentences holding its terms are translated afresh next time."""
    try:
        glossary = _glossaries().save(name, parse_table(file.read_text(encoding="utf-8-sig")))
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {exc}", EXIT_USAGE) from exc
    except NewsMTError as exc:
        raise _failed(exc) from exc
    typer.echo(f"glossary {name}: {len(glossary.terms)} terms (digest {glossary.digest})")


@glossary_app.command("list")
def glossary_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Stored glossaries: name, terms, languages."""
    rows = _glossaries().listing()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    for row in rows:
        typer.echo(f"{row.name:24} {row.terms:6} terms  {','.join(row.languages):6} {row.digest}")
    if not rows:
        typer.echo("no glossaries; add one with `newsmt glossary add NAME FILE`")


@glossary_app.command("show")
def glossary_show(name: str) -> None:
    """A glossary's terms, as TSV (what `glossary add` reads back)."""
    try:
        glossary = _glossaries().get(name)
    except NewsMTError as exc:
        raise _failed(exc) from exc
    for term in glossary.terms:
        typer.echo(f"{term.source}\t{term.target}")


@glossary_app.command("remove")
def glossary_remove(name: str) -> None:
    """Delete a glossary."""
    try:
        _glossaries().remove(name)
    except NewsMTError as exc:
        raise _failed(exc) from exc
    typer.echo(f"removed glossary {name}")


@cache_app.command("stats")
def cache_stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Entries, size, hits and misses of the cache (diskcache, or Redis with NEWSMT_CACHE_URL)."""
    stats = SegmentCache.from_settings(_settings()).stats()
    if as_json:
        typer.echo(json.dumps({**asdict(stats), "hit_rate": stats.hit_rate}, indent=2))
        return
    if not stats.available:
        raise _fail(f"cache unavailable: {stats.error}")
    # Redis reports the whole server's memory and its maxmemory (0: none), diskcache its own volume and limit.
    size = f"{stats.size_bytes / 1e6:.1f} MB" + (" used by the server" if stats.backend == "redis" else "")
    limit = f"{stats.size_limit / 1e9:.1f} GB" if stats.size_limit else "no limit"
    typer.echo(f"cache {stats.location} ({stats.backend}): {stats.entries} entries, {size} of {limit}; "
               f"hits {stats.hits}, misses {stats.misses} ({stats.hit_rate:.1%})")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached translation and reset the counters (on Redis: only newsmt's keys)."""
    try:
        removed = SegmentCache.from_settings(_settings()).clear()
    except OSError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"removed {removed} entries")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
