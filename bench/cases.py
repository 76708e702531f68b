"""The benchmark's cases, in the order they run, with what each one needs prepared.

Numbers refer to the measurements listed in issue 5 (12: the shared Redis tier of issue 12); the summarization cases
reproduce issue 5's distilbart note.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .config import CT2_BATCH_SIZES, TORCH_INT8_BATCH
from .measure import Context, Outcome

Runner = Callable[[Context], Outcome]


def _lazy(module: str, function: str, **kwargs: object) -> Runner:
    """Import a case's module only in the worker that runs it: a CTranslate2 case must not count torch's (or
    httpx's) memory in its peak RSS."""

    def run(ctx: Context) -> Outcome:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(ctx, **kwargs)

    return run


@dataclass(frozen=True)
class Case:
    name: str
    issue_item: str  # which measurement of issue 5 this is
    title: str  # {precision} and {ct2} are filled in per device
    run: Runner
    models: tuple[str, ...] = ("ar-en",)  # architectures to build
    raw_ct2: tuple[str, ...] = ()  # architectures the raw engine cases need as CTranslate2 copies
    newsmt_tasks: tuple[str, ...] = ()  # tasks newsmt must have installed (and converted, on CTranslate2)
    after: str | None = None  # a case whose outputs this one reuses (selected with it)
    peer: bool = False  # needs the LibreTranslate comparison prepared (issue 14)


CASES: dict[str, Case] = {case.name: case for case in (
    Case("naive", "1", "transformers {precision}, one sentence at a time", _lazy("engines", "naive_loop")),
    *(Case(f"ct2_b{size}", "2", f"CTranslate2 {{ct2}} translate_batch, batch {size}",
           _lazy("engines", "ct2_batch", batch_size=size), raw_ct2=("ar-en",)) for size in CT2_BATCH_SIZES),
    Case(f"torch_int8_b{TORCH_INT8_BATCH}", "2", f"torch dynamic int8 (Linear), batch {TORCH_INT8_BATCH}",
         _lazy("engines", "torch_int8_batch", batch_size=TORCH_INT8_BATCH)),
    Case("bulk_cold", "3", "newsmt translate (bulk CLI), cold cache", _lazy("newsmt_cases", "bulk", warm=False),
         newsmt_tasks=("translate:ar-en",)),
    Case("bulk_warm", "4", "newsmt translate again, warm cache", _lazy("newsmt_cases", "bulk", warm=True),
         newsmt_tasks=("translate:ar-en",), after="bulk_cold"),
    Case("bulk_warm_redis", "12", "newsmt translate again through Redis (NEWSMT_CACHE_URL), warm",
         _lazy("redis_cases", "bulk_warm_redis"), newsmt_tasks=("translate:ar-en",), after="bulk_warm"),
    Case("http", "5", "newsmt HTTP, {clients} clients, cold then warm", _lazy("newsmt_cases", "http_newsmt"),
         newsmt_tasks=("translate:ar-en",)),
    Case("http_bare", "5", "bare FastAPI route, same payload, {clients} clients", _lazy("newsmt_cases", "http_bare"),
         models=(), after="http"),
    Case("http_redis", "12", "newsmt HTTP, {clients} clients, warm: Redis vs diskcache, memory tier on and off",
         _lazy("redis_cases", "http_redis"), newsmt_tasks=("translate:ar-en",), after="http"),
    Case("http_concurrency", "6", "{requests} single-article requests: sequential vs concurrent",
         _lazy("newsmt_cases", "http_concurrency"), newsmt_tasks=("translate:ar-en",)),
    Case("both_models", "7", "ar-en + he-en on CTranslate2 {ct2} in one newsmt process",
         _lazy("newsmt_cases", "both_models"), models=("ar-en", "he-en"),
         newsmt_tasks=("translate:ar-en", "translate:he-en")),
    Case("peer_newsmt", "14", "newsmt defaults, LibreTranslate route, beam 4, 256 tokens",
         _lazy("peer", "run_newsmt"), peer=True),
    Case("peer_lt_shipped", "14", "LibreTranslate {libretranslate} as shipped, same weights",
         _lazy("peer", "run_libretranslate", tuned=False), peer=True),
    Case("peer_lt_tuned", "14", "LibreTranslate {libretranslate} tuned (2x1 threads, cache all)",
         _lazy("peer", "run_libretranslate", tuned=True), peer=True),
    Case("summarize_fp32", "note", "distilbart, transformers {precision}, batch 1",
         _lazy("engines", "summarize_once", engine="torch"), models=("summarize",)),
    Case("summarize_ct2", "note", "distilbart, CTranslate2 {ct2}, batch 1",
         _lazy("engines", "summarize_once", engine="ct2"), models=("summarize",), raw_ct2=("summarize",)),
    Case("summarize_torch_int8", "note", "distilbart, torch dynamic int8, batch 1",
         _lazy("engines", "summarize_once", engine="torch_int8"), models=("summarize",)),
)}


def select(names: list[str] | None) -> list[Case]:
    """The named cases plus the ones they reuse outputs of, in registry order; all cases when `names` is None."""
    if names is None:
        return list(CASES.values())
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    wanted = set(names)
    for name in names:
        while (before := CASES[name].after) is not None:
            wanted.add(before)
            name = before
    return [case for case in CASES.values() if case.name in wanted]
