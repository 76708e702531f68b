"""Converted CTranslate2 copies of a task's model: `newsmt models convert` writes them, the engine factory finds them.

A copy lives beside the pulled models as `models/<name>--ct2-<quantization>/`: CTranslate2's `model.bin` and
vocabulary, the tokenizer files and `generation_config.json` copied from the source (the engine tokenizes with the
same Hugging Face tokenizer and decodes with the same defaults), and a manifest naming the source model id, its
revision and the quantization. A copy is used only while its manifest matches the task's currently resolved model
and revision, so replacing or upgrading a model can never run stale converted weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ctranslate2

from service.errors import NewsMTError
from service.store.model_store import ResolvedModel

CT2_MANIFEST = "newsmt-ct2.json"
#: Files the Hugging Face tokenizer and generation defaults are loaded from; weights and config.json are not
#: copied (the copy's config.json is CTranslate2's own).
_COPIED_PATTERNS = ("tokenizer*.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
                    "merges.txt", "*.spm", "*.model", "*.tiktoken", "generation_config.json")
#: Learned or sinusoidal position tables bound both sides; older configs without the field meant 1024.
DEFAULT_MAX_POSITIONS = 1024


class ConversionFailed(NewsMTError):
    code = "conversion_failed"


@dataclass(frozen=True)
class ConvertedModel:
    """A converted copy on disk, as its manifest describes it."""

    path: Path
    source_model_id: str
    source_revision: str
    quantization: str
    model_type: str
    max_positions: int


#: What the manifest records of a `ConvertedModel` (its path is where the manifest is).
_MANIFEST_FIELDS = {f.name for f in fields(ConvertedModel)} - {"path"}


def convert_command(task: str, quantization: str) -> str:
    return f"newsmt models convert {task} --quantization {quantization}"


def converted_dir(models_dir: Path, resolved: ResolvedModel, quantization: str) -> Path:
    """Hub models are named like their pulled directory; a local directory by its name plus a hash of its path,
    so two local models that share a folder name never overwrite each other's copy."""
    if resolved.origin == "hub":
        stem = resolved.model_id.replace("/", "--")
    else:
        stem = f"{resolved.path.name}-{hashlib.sha256(resolved.model_id.encode()).hexdigest()[:8]}"
    return Path(models_dir) / f"{stem}--ct2-{quantization}"


def find_converted(models_dir: Path, resolved: ResolvedModel, quantization: str) -> ConvertedModel | None:
    """The converted copy of exactly this model and revision at this quantization, or None."""
    path = converted_dir(models_dir, resolved, quantization)
    try:
        data = json.loads((path / CT2_MANIFEST).read_text(encoding="utf-8"))
        found = ConvertedModel(path=path, **{k: v for k, v in data.items() if k in _MANIFEST_FIELDS})
    except (OSError, ValueError, TypeError):
        return None
    if (found.source_model_id, found.source_revision, found.quantization) != (
        resolved.model_id, resolved.revision, quantization
    ) or not (path / "model.bin").is_file():
        return None
    return found


def convert_model(
    models_dir: Path, resolved: ResolvedModel, quantization: str, *, allow_pickle_weights: bool = False
) -> ConvertedModel:
    """Convert `resolved` with CTranslate2's own converter into its copy directory (replacing an older copy).

    Written into a temporary sibling first and renamed into place, so an interrupted conversion never leaves a
    half-written copy that `find_converted` would accept.
    """
    config = json.loads((resolved.path / "config.json").read_text(encoding="utf-8"))
    dest = converted_dir(models_dir, resolved, quantization)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    copied = sorted({p.name for pattern in _COPIED_PATTERNS for p in resolved.path.glob(pattern) if p.is_file()})
    from service.store.ct2_converter import LocalConverter  # imports torch, which only converting needs

    converter = LocalConverter(str(resolved.path), copy_files=copied, allow_pickle_weights=allow_pickle_weights)
    try:
        converter.convert(str(tmp), quantization=quantization, force=True)
    except Exception as exc:  # the converter raises ValueError, OSError, KeyError, torch errors, ...
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConversionFailed(
            f"cannot convert {resolved.model_id} to CTranslate2 {quantization}: {type(exc).__name__}: {exc}"
        ) from exc
    converted = ConvertedModel(
        path=dest,
        source_model_id=resolved.model_id,
        source_revision=resolved.revision,
        quantization=quantization,
        model_type=str(config.get("model_type", "")),
        max_positions=int(config.get("max_position_embeddings") or DEFAULT_MAX_POSITIONS),
    )
    manifest: dict[str, Any] = {k: v for k, v in asdict(converted).items() if k in _MANIFEST_FIELDS}
    manifest.update(task=resolved.task, ctranslate2_version=ctranslate2.__version__,
                    converted_at=datetime.now(UTC).isoformat(timespec="seconds"))
    (tmp / CT2_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return converted
