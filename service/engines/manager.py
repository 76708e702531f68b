"""ModelManager: lazy, thread-safe loading and unloading of the engines behind each task.

One lock per task makes N concurrent first requests cause exactly one load while other tasks load in parallel.
Resolution (what is on disk, at which revision) is separate from loading, so the pipeline can build cache keys
and serve a fully cached article without ever loading a model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.config import TASKS, Settings
from service.engines.base import Engine
from service.engines.factory import load_engine, plan_engine
from service.errors import ModelLoadError
from service.store.model_store import ModelStore, ResolvedModel, task_or_error

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    task: str
    model: ResolvedModel
    engine: Engine
    load_seconds: float
    loaded_at: float
    last_used: float

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
                 on_load: Callable[[str, float], None] | None = None):
        self.settings = settings
        self.store = store or ModelStore(settings)
        self._on_load = on_load
        self._loaded: dict[str, LoadedModel] = {}
        self._task_locks = {task: threading.Lock() for task in TASKS}
        self._resolved: dict[str, ResolvedModel] = {}
        self._variants: dict[str, str] = {}
        self.load_count = 0
        #: Why each task's last load failed (cleared by a successful load): readiness reports it.
        self.load_errors: dict[str, str] = {}

    def resolve(self, task: str) -> ResolvedModel:
        """The task's model on disk (memoised until `forget`); raises ModelNotInstalled with the install command."""
        task_or_error(task)
        loaded = self._loaded.get(task)
        if loaded is not None:
            return loaded.model
        found = self._resolved.get(task)
        if found is None:
            try:
                found = self._resolved[task] = self.store.resolve(task)
            except ModelLoadError as exc:  # e.g. a broken config.json: say which task's model it is
                raise ModelLoadError(f"{task}: {exc}") from exc
        return found

    def forget(self, task: str | None = None) -> None:
        """Drop memoised resolutions (after an import or pull changed what is on disk)."""
        if task is None:
            self._resolved.clear()
            self._variants.clear()
        else:
            self._resolved.pop(task, None)
            self._variants.pop(task, None)

    def variant(self, task: str) -> str:
        """The backend variant a task runs (or will run) on, known without loading: it goes into cache keys."""
        loaded = self._loaded.get(task)
        if loaded is not None:
            return loaded.engine.backend
        if task not in self._variants:  # memoised with the resolution: it is asked once per segment
            self._variants[task] = plan_engine(self.resolve(task), self.settings).variant
        return self._variants[task]

    def engine(self, task: str) -> Engine:
        """The loaded engine for `task`, loading it on first use (once, whatever the concurrency)."""
        task_or_error(task)
        loaded = self._loaded.get(task)
        if loaded is None:
            with self._task_locks[task]:
                loaded = self._loaded.get(task)
                if loaded is None:
                    loaded = self._load(task)
        loaded.last_used = time.time()
        return loaded.engine

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
        """Free a task's model; returns False when it was not loaded."""
        task_or_error(task)
        with self._task_locks[task]:
            loaded = self._loaded.pop(task, None)
        self.forget(task)
        if loaded is None:
            return False
        loaded.engine.close()
        return True

    def loaded(self) -> list[dict[str, object]]:
        return [m.describe() for m in list(self._loaded.values())]

    def close(self) -> None:
        for task in list(self._loaded):
            self.unload(task)
