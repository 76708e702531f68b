"""The local model store: where each task's model lives on disk, and how it gets there.

Installing is separate from serving (as in LibreTranslate): `pull` downloads from the Hugging Face hub into
`models/`, `import` registers a directory the user already has, and the server only ever reads local files.
Every resolved model carries a revision for the cache key: the hub commit it was pulled at, or a content
fingerprint of a local directory, so replacing the weights can never serve stale cached translations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from service.config import TASKS, Settings
from service.errors import ModelLoadError, ModelNotInstalled, NewsMTError, UnknownTask
from service.files import write_atomic

log = logging.getLogger(__name__)

MANIFEST = "newsmt-model.json"
REGISTRY = "imported.json"
#: Files a model needs at run time: weights, configs and tokenizer files. Nothing else is downloaded.
RUNTIME_PATTERNS = ["*.json", "*.spm", "*.model", "*.txt", "*.tiktoken", "*.safetensors"]
LEGACY_WEIGHTS = "pytorch_model*.bin"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FINGERPRINT_FILES = re.compile(r".*\.(json|spm|model|txt|safetensors|bin|tiktoken)$")

Origin = Literal["hub", "local", "imported"]


class DownloadFailed(NewsMTError):
    code = "download_failed"


@dataclass(frozen=True)
class ResolvedModel:
    """A task's model as found on disk; `revision` identifies its exact weights for the cache key."""

    task: str
    model_id: str
    path: Path
    revision: str
    origin: Origin


@dataclass(frozen=True)
class ModelListing:
    task: str
    configured: str
    installed: bool
    path: str | None
    revision: str | None
    size_bytes: int
    origin: Origin | None
    problem: str | None


def task_or_error(task: str) -> str:
    if task not in TASKS:
        raise UnknownTask(f"unknown task '{task}'; known tasks: {', '.join(TASKS)}")
    return task


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


#: Beside a local model: the fingerprint last computed for it, with the (path, size, mtime) of every file it covers.
FINGERPRINT_RECORD = "newsmt-fingerprint.json"
_fingerprints: dict[tuple, str] = {}
_fingerprint_lock = threading.Lock()


def _fingerprinted_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and _FINGERPRINT_FILES.match(p.name) and
                  p.name not in (MANIFEST, FINGERPRINT_RECORD) and ".cache" not in p.parts)


def fingerprint(path: Path) -> str:
    """Content hash of a local model's runtime files.

    Hashing every weight file costs about a second per few hundred MB, and a server used to pay it at every start.
    So the result is kept, keyed by the directory's absolute path and each file's (name, size, mtime): in memory,
    and in `newsmt-fingerprint.json` beside the model, so that a restart with unchanged files reads it back instead
    of hashing. A replaced or edited file changes its size or mtime and is hashed again; a copied record names
    another directory and is ignored. A model directory that cannot be written to is simply hashed once per
    process."""
    files = _fingerprinted_files(path)
    stat_key = (str(path.resolve()), *((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                                      for p in files))
    with _fingerprint_lock:
        if stat_key in _fingerprints:
            return _fingerprints[stat_key]
    record = path / FINGERPRINT_RECORD
    value = _recorded_fingerprint(record, stat_key)
    if value is None:
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(path)).encode())
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        value = "sha256:" + digest.hexdigest()[:16]
        try:
            _write_json(record, {"files": list(stat_key), "fingerprint": value})
        except OSError as exc:
            log.info("not recording the fingerprint of %s (%s): it is recomputed at each start", path, exc)
    with _fingerprint_lock:
        _fingerprints[stat_key] = value
    return value


def _recorded_fingerprint(record: Path, stat_key: tuple) -> str | None:
    """The recorded fingerprint when it was taken of exactly these files (same directory, names, sizes, mtimes)."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        if [data["files"][0], *map(tuple, data["files"][1:])] == list(stat_key):
            return str(data["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    return None


def validate_model_dir(path: Path) -> None:
    """Cheap structural check before registering or loading: a config and some weights must be present."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory: config.json is missing")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config} is not valid JSON: {exc}") from exc
    if not any(path.glob("*.safetensors")) and not any(path.glob(LEGACY_WEIGHTS)):
        raise ModelLoadError(f"{path} holds no weights (*.safetensors or pytorch_model.bin)")


class ModelStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.models_dir)

    # -- where things are ------------------------------------------------------------------------------------
    def install_dir(self, repo_id: str) -> Path:
        return self.root / repo_id.replace("/", "--")

    def install_command(self, task: str) -> str:
        return f"newsmt models pull {task}"

    def _registry(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / REGISTRY).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.root / REGISTRY, exc)
            return {}
        return {k: str(v) for k, v in data.items() if k in TASKS}

    def resolve(self, task: str) -> ResolvedModel:
        """Find the task's model on disk without loading it. Precedence: an explicitly configured model, then an
        imported directory, then the default hub model pulled into `models/`."""
        task_or_error(task)
        source = self.settings.model_source(task)
        imported = self._registry().get(task)
        if imported and not self.settings.model_explicitly_set(task):
            path = Path(imported)
            validate_model_dir(path)
            return ResolvedModel(task, str(path), path, fingerprint(path), "imported")
        local = Path(source).expanduser()
        if local.is_dir():
            validate_model_dir(local)
            return ResolvedModel(task, str(local.resolve()), local, fingerprint(local), "local")
        if not _REPO_ID.match(source):
            raise ModelNotInstalled(task, source, f"check the path, or run: newsmt models import {task} DIR")
        manifest = self._manifest(self.install_dir(source))
        wanted = self.settings.model_revision(task)
        if manifest is None or wanted not in (manifest["requested_revision"], manifest["revision"]):
            raise ModelNotInstalled(task, f"{source}@{wanted}", self.install_command(task))
        path = self.install_dir(source)
        validate_model_dir(path)
        return ResolvedModel(task, source, path, manifest["revision"], "hub")

    def _manifest(self, path: Path) -> dict | None:
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "revision" in data else None

    def listing(self) -> list[ModelListing]:
        rows = []
        for task in TASKS:
            configured = self.settings.model_source(task)
            try:
                found = self.resolve(task)
            except NewsMTError as exc:
                rows.append(ModelListing(task, configured, False, None, None, 0, None, str(exc)))
                continue
            rows.append(ModelListing(task, configured, True, str(found.path), found.revision,
                                     directory_size(found.path), found.origin, None))
        return rows

    # -- installing ------------------------------------------------------------------------------------------
    def import_dir(self, task: str, directory: Path) -> ResolvedModel:
        """Register a local Hugging Face-format directory for `task` (it is used in place, not copied)."""
        task_or_error(task)
        path = directory.expanduser().resolve()
        validate_model_dir(path)
        registry = self._registry()
        registry[task] = str(path)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root / REGISTRY, registry)
        return ResolvedModel(task, str(path), path, fingerprint(path), "imported")

    def pull(self, target: str, revision: str | None = None) -> Path:
        """Download a task's configured model (or any repo id) into `models/`: weights, config and tokenizer
        files only, resumable (huggingface_hub keeps partial files and continues them)."""
        if target in TASKS:
            repo_id, revision = self.settings.model_source(target), revision or self.settings.model_revision(target)
            if Path(repo_id).expanduser().is_dir():
                return Path(repo_id)  # a local directory is already installed
        else:
            repo_id, revision = target, revision or "main"
        if not _REPO_ID.match(repo_id):
            raise DownloadFailed(f"'{target}' is neither a task ({', '.join(TASKS)}) nor a Hugging Face repo id")
        from huggingface_hub import HfApi, snapshot_download

        dest = self.install_dir(repo_id)
        try:
            info = HfApi().model_info(repo_id, revision=revision)
            names = [s.rfilename for s in (info.siblings or [])]
            has_safetensors = any(n.endswith(".safetensors") for n in names)
            patterns = RUNTIME_PATTERNS if has_safetensors else [*RUNTIME_PATTERNS, LEGACY_WEIGHTS]
            snapshot_download(repo_id, revision=info.sha, local_dir=dest, allow_patterns=patterns)
        except Exception as exc:  # network, auth, 404: huggingface_hub raises many types
            raise DownloadFailed(
                f"cannot download {repo_id}@{revision} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                f"Without hub access, copy the model directory to this machine and run "
                f"`newsmt models import TASK DIR`, or set NEWSMT_*_MODEL to the directory."
            ) from exc
        if not has_safetensors:
            convert_legacy_weights(dest)
        validate_model_dir(dest)
        _write_json(dest / MANIFEST, {
            "repo_id": repo_id,
            "requested_revision": revision,
            "revision": info.sha,
            "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
        return dest


def convert_legacy_weights(path: Path) -> None:
    """Rewrite pickle `.bin` weights as safetensors once, at install time, so serving never unpickles.
    transformers reads `.bin` with torch's weights-only loader, which refuses arbitrary objects."""
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True, use_safetensors=False)
    model.save_pretrained(path, safe_serialization=True)
    for legacy in path.glob(LEGACY_WEIGHTS):
        legacy.unlink()
    shutil.rmtree(path / ".cache", ignore_errors=True)


def _write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
