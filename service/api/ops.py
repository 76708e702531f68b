"""Operations: liveness, readiness, Prometheus metrics, and the model and cache views under /v1.

Routes that touch the disk (readiness resolves models, listing sums their sizes) are plain `def`, so FastAPI runs
them in its threadpool instead of on the event loop.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import Admitted, State
from service.api.schemas import Readiness
from service.config import SOURCE_LANGUAGES, translation_task
from service.errors import NewsMTError
from service.serving.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])
admin = APIRouter(prefix="/v1", tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about models or cache (see /readyz)."""
    return {"status": "ok"}




@router.get("/readyz", responses={200: {"model": Readiness},
                                  503: {"model": Readiness, "description": "Not ready; `reasons` says why."}})
def readyz(state: State) -> JSONResponse:
    """Readiness: the cache is usable and every translation model is installed (not necessarily loaded yet) and did
    not fail its last load."""
    reasons = []
    if not state.cache.available:
        reasons.append(f"cache unusable: {state.cache.error}")
    for lang in SOURCE_LANGUAGES:
        task = translation_task(lang)
        try:
            state.manager.resolve(task)
        except NewsMTError as exc:
            reasons.append(str(exc))
            continue
        if task in state.manager.load_errors:  # installed, but its last load failed (truncated weights, say)
            reasons.append(state.manager.load_errors[task])
    return JSONResponse({"status": "not_ready" if reasons else "ready", "reasons": reasons},
                        status_code=503 if reasons else 200)


@router.get("/metrics", response_class=Response)
def metrics(state: State) -> Response:
    """Prometheus text format: requests, latency, cache hits and misses, batch sizes, tokens, model load times."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@admin.get("/models")
def list_models(state: Admitted) -> list[dict[str, Any]]:
    """Every task in the registry: configured model, whether it is installed, and its runtime state if loaded."""
    loaded = {m["task"]: m for m in state.manager.loaded()}
    return [{**asdict(row), "loaded": loaded.get(row.task)} for row in state.manager.store.listing()]


@admin.post("/models/{task}/load", responses={404: {"description": "Not a task name."},
                                                503: {"description": "Model not installed or broken."}})
def load_model(task: str, state: Admitted) -> dict[str, Any]:
    """Load a task's model now rather than on its first request (e.g. to warm up after a deploy)."""
    return state.manager.load(task)


@admin.post("/models/{task}/unload", responses={404: {"description": "Not a task name."}})
def unload_model(task: str, state: Admitted) -> dict[str, Any]:
    """Free a task's model once the batches using it are done; the next batch that needs it loads it again."""
    return {"task": task, "unloaded": state.manager.unload(task)}


@admin.get("/cache/stats")
def cache_stats(state: Admitted) -> dict[str, Any]:
    """Entries, size and hit counts of the cache: diskcache, or the Redis tier with NEWSMT_CACHE_URL (the CLI and
    every server count together)."""
    stats = state.cache.stats()
    return {**asdict(stats), "hit_rate": round(stats.hit_rate, 4)}
