"""ModelManager: lazy, thread-safe loading and unloading of the engines behind each task, lent out per batch.

One lock per task makes N concurrent first requests cause exactly one load while other tasks load in parallel.
Resolution (what is on disk, at which revision) is separate from loading, so the pipeline can build cache keys
and serve a fully cached article without ever loading a model.

Engines are lent, never handed out: every batch runs inside `with manager.lease(task) as engine`, and `unload`
waits until no batch holds the engine before closing it, while batches that start meanwhile wait and then load
the model again. Closing an engine under a running batch would otherwise fail that batch with whatever the
backend raises on freed weights (a 500, not a domain error). The manager also owns the one `DynamicBatcher`
that every model call goes through, translation and summaries alike, so they share its budgets and fairness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from service.config import TASKS, Settings
from service.engines.base import Engine
from service.engines.batcher import BatchHook, DynamicBatcher
from service.engines.factory import load_engine, plan_engine
from service.errors import ModelLoadError, ModelNotInstalled
from service.store.model_store import ModelStore, ResolvedModel, task_or_error

log = logging.getLogger(__name__)


#: How long a model found missing is taken to be still missing (see `ModelManager.resolve`).
MISSING_RECHECK_SECONDS = 2.0


@dataclass
class LoadedModel:
    task: str
    model: ResolvedModel
    engine: Engine
    load_seconds: float
    loaded_at: float
    #: When a batch last finished with the engine: idle unloading goes by it.
    last_used: float
    #: Batches holding the engine now; it is closed only at zero.
    leases: int = 0

    def describe(self) -> dict[str, object]:
        return {
            "task": self.task,
            "model_id": self.model.model_id,
            "revision": self.model.revision,
            "backend": self.engine.backend,
            "memory_bytes": self.engine.memory_bytes(),
            "load_seconds": round(self.load_seconds, 3),
            "loaded_at": self.loaded_at,
            "last_used": self.last_used,
        }


class ModelManager:
    def __init__(self, settings: Settings, store: ModelStore | None = None,
                 on_load: Callable[[str, float], None] | None = None, on_batch: BatchHook | None = None):
        self.settings = settings
        self.store = store or ModelStore(settings)
        self._on_load = on_load
        self._loaded: dict[str, LoadedModel] = {}
        #: Guards a task's load, leases and unload; waited on by unloads (for leases to end) and by new leases (for
        #: an unload to finish).
        self._task_conds = {task: threading.Condition() for task in TASKS}
        self._unloading: set[str] = set()
        self._held = threading.local()  # task -> leases this thread holds, so a nested lease never waits on itself
        self._resolved: dict[str, ResolvedModel] = {}
        #: A task whose model was not found: the error and when, so it is looked for again only after a moment.
        self._missing: dict[str, tuple[ModelNotInstalled, float]] = {}
        self._variants: dict[str, str] = {}
        self.load_count = 0
        #: Why each task's last load failed (cleared by a successful load): readiness reports it.
        self.load_errors: dict[str, str] = {}
        #: Misses of concurrent callers (server threads) share engine batches; on_batch sees each batch.
        self.batcher = DynamicBatcher(self.lease, settings.batch_size, settings.batch_max_tokens,
                                      settings.batch_max_wait_ms / 1000, on_batch,
                                      max_decoding_tokens=settings.batch_max_decoding_tokens)

    def resolve(self, task: str) -> ResolvedModel:
        """The task's model on disk (memoised until `forget`); raises ModelNotInstalled with the install command.

        A model that is not installed is looked for again at most every MISSING_RECHECK_SECONDS, not on every call:
        every request's cache key names every translation model, so a server with one of them missing would
        otherwise read the model registry and manifests from disk for each request, cache hits included. A model
        installed while the server runs (`newsmt models pull` in another process) is found that much later; an
        import or pull through this process forgets at once."""
        task_or_error(task)
        loaded = self._loaded.get(task)
        if loaded is not None:
            return loaded.model
        found = self._resolved.get(task)
        if found is not None:
            return found
        missing = self._missing.get(task)
        if missing is not None and time.monotonic() - missing[1] < MISSING_RECHECK_SECONDS:
            raise missing[0].with_traceback(None)  # a fresh traceback: one raised again must not grow one
        try:
            found = self._resolved[task] = self.store.resolve(task)
        except ModelNotInstalled as exc:
            self._missing[task] = (exc, time.monotonic())
            raise
        except ModelLoadError as exc:  # e.g. a broken config.json: say which task's model it is
            raise ModelLoadError(f"{task}: {exc}") from exc
        self._missing.pop(task, None)
        return found

    def forget(self, task: str | None = None) -> None:
        """Drop memoised resolutions (after an import or pull changed what is on disk)."""
        if task is None:
            self._resolved.clear()
            self._missing.clear()
            self._variants.clear()
        else:
            self._resolved.pop(task, None)
            self._missing.pop(task, None)
            self._variants.pop(task, None)

    def variant(self, task: str) -> str:
        """The backend variant a task runs (or will run) on, known without loading: it goes into cache keys."""
        loaded = self._loaded.get(task)
        if loaded is not None:
            return loaded.engine.backend
        if task not in self._variants:  # memoised with the resolution: it is asked once per segment
            self._variants[task] = plan_engine(self.resolve(task), self.settings).variant
        return self._variants[task]

    @contextmanager
    def lease(self, task: str) -> Iterator[Engine]:
        """The task's engine for one batch, loading it if needed (once, whatever the concurrency). It is not closed
        before the block ends; leave the block before waiting on anything else, or an unload waits that long."""
        loaded = self._acquire(task)
        try:
            yield loaded.engine
        finally:
            self._release(loaded)

    def _acquire(self, task: str) -> LoadedModel:
        task_or_error(task)
        held: dict[str, int] = self._held.__dict__.setdefault("tasks", {})
        with self._task_conds[task]:
            if held.get(task):  # this thread's own lease keeps it loaded, even while an unload waits for it
                loaded = self._loaded[task]
            else:
                self._task_conds[task].wait_for(lambda: task not in self._unloading)
                loaded = self._loaded.get(task) or self._load(task)
            loaded.leases += 1
        held[task] = held.get(task, 0) + 1
        return loaded

    def _release(self, loaded: LoadedModel) -> None:
        self._held.tasks[loaded.task] -= 1
        with self._task_conds[loaded.task]:
            loaded.leases -= 1
            loaded.last_used = time.time()
            self._task_conds[loaded.task].notify_all()

    def load(self, task: str) -> dict[str, object]:
        """Load a task's model now rather than for its first batch (warm-up); what `loaded()` says about it."""
        with self.lease(task):
            return self._loaded[task].describe()

    def _load(self, task: str) -> LoadedModel:
        resolved = self.resolve(task)
        info = TASKS[task]
        started = time.perf_counter()
        try:
            engine = load_engine(resolved, self.settings, info)
        except ModelLoadError as exc:
            # Forgotten, so the next request re-resolves (and re-fingerprints) a model that was repaired meanwhile.
            self.forget(task)
            error = self.load_errors[task] = f"{task}: {exc}"
            raise ModelLoadError(error) from exc
        self.load_errors.pop(task, None)
        elapsed = time.perf_counter() - started
        self.load_count += 1
        now = time.time()
        loaded = self._loaded[task] = LoadedModel(task, resolved, engine, elapsed, now, now)
        log.info("loaded %s (%s@%s) with %s in %.2fs", task, resolved.model_id, resolved.revision,
                 engine.backend, elapsed)
        if self._on_load is not None:
            self._on_load(task, elapsed)
        return loaded

    def unload(self, task: str) -> bool:
        """Free a task's model once no batch holds it; returns False when it was not loaded."""
        return self._unload(task, idle_since=None)

    def unload_idle(self) -> list[str]:
        """Unload every model no batch has used for NEWSMT_MODEL_IDLE_UNLOAD_SECONDS (none when it is unset); the
        tasks unloaded."""
        idle = self.settings.model_idle_unload_seconds
        if idle is None:
            return []
        cutoff = time.time() - idle
        return [task for task in list(self._loaded) if self._unload(task, idle_since=cutoff)]

    def _unload(self, task: str, idle_since: float | None) -> bool:
        """With `idle_since`, only a model unused since then, checked under the task's lock so that a batch
        starting at that moment keeps it. New leases wait from here until the engine is closed, then load afresh."""
        task_or_error(task)
        cond = self._task_conds[task]
        with cond:
            cond.wait_for(lambda: task not in self._unloading)
            loaded = self._loaded.get(task)
            if idle_since is not None and (loaded is None or loaded.leases or loaded.last_used > idle_since):
                return False
            self.forget(task)
            if loaded is None:
                return False
            self._unloading.add(task)
            cond.wait_for(lambda: loaded.leases == 0)
            del self._loaded[task]
        try:
            loaded.engine.close()
            log.info("unloaded %s", task)
        finally:
            with cond:
                self._unloading.discard(task)
                cond.notify_all()
        return True

    def loaded(self) -> list[dict[str, object]]:
        return [m.describe() for m in list(self._loaded.values())]

    def close(self) -> None:
        for task in list(self._loaded):
            self.unload(task)
