"""`newsmt` command line: thin calls into the pipeline, the model store and the cache.

Typer because it derives the interface (help, types, completion) from type hints, so commands stay short and
documented. Exit codes: 0 success, 1 some articles failed or an operation failed, 2 bad usage or input.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .bulk import discover, translate_tree
from .cache import SegmentCache
from .config import TASKS, Settings
from .errors import NewsMTError
from .manager import ModelManager
from .model_store import ModelStore
from .pipeline import SOURCE_CHOICES, Pipeline

app = typer.Typer(help="newsmt: translate Hebrew and Arabic news into English, with a content-hash disk cache.",
                  no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Install and inspect models.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and clear the disk cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _settings() -> Settings:
    return Settings()


def _open_cache(settings: Settings) -> SegmentCache:
    return SegmentCache(settings.cache_dir, settings.cache_size_limit, settings.cache_retry_seconds)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def translate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (*.txt, *.md, *.jsonl with a 'text' field).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for NAME.en.txt and results.jsonl.")],
    source: Annotated[str, typer.Option(help=f"Source language: {'|'.join(SOURCE_CHOICES)}.")] = "auto",
    beam_size: Annotated[int | None, typer.Option(help="Override NEWSMT_BEAM_SIZE.")] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a TTY).")
    ] = None,
) -> None:
    """Bulk-translate articles; a rerun serves finished work from the cache."""
    settings = _settings()
    if source not in SOURCE_CHOICES:
        raise _fail(f"--source must be one of {', '.join(SOURCE_CHOICES)}", 2)
    try:
        sources = discover(paths)
    except NewsMTError as exc:
        raise _fail(str(exc), 2) from exc
    if not sources:
        raise _fail(f"no *.txt, *.md or *.jsonl articles under {', '.join(map(str, paths))}", 2)
    cache = _open_cache(settings)
    manager = ModelManager(settings)
    pipeline = Pipeline(settings, manager, cache)
    try:
        summary = translate_tree(pipeline, sources, out, source_lang=source, beam_size=beam_size,
                                 progress=progress)
    except OSError as exc:
        raise _fail(f"cannot write output under {out}: {exc}") from exc
    finally:
        manager.close()
        cache.close()
    loaded = manager.load_count
    typer.echo(
        f"translated {summary.articles - summary.failed}/{summary.articles} articles in {summary.seconds:.1f}s; "
        f"segments {summary.segments}, cache hits {summary.cache_hits} ({summary.hit_rate:.1%}); "
        f"models loaded: {loaded or 'none'}; results: {out / 'results.jsonl'}"
    )
    if summary.failed:
        for line in dict.fromkeys(summary.errors):
            typer.secho(f"failed: {line}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)


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
            raise _fail(str(exc)) from exc
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
        raise _fail(str(exc), 2) from exc
    typer.echo(f"imported {found.path} for {task} (revision {found.revision})")


@cache_app.command("stats")
def cache_stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Entries, size, hits and misses of the shared disk cache."""
    stats = _open_cache(_settings()).stats()
    if as_json:
        typer.echo(json.dumps({**asdict(stats), "hit_rate": stats.hit_rate}, indent=2))
        return
    if not stats.available:
        raise _fail(f"cache unavailable: {stats.error}")
    typer.echo(f"cache {stats.directory}: {stats.entries} entries, {stats.size_bytes / 1e6:.1f} MB of "
               f"{stats.size_limit / 1e9:.1f} GB; hits {stats.hits}, misses {stats.misses} ({stats.hit_rate:.1%})")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached translation and reset the counters."""
    try:
        removed = _open_cache(_settings()).clear()
    except OSError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"removed {removed} entries")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
