"""Which engine runs a task: decided in one place, from settings and what is on disk, without loading anything.

The decision feeds two things that must agree: the variant string in every cache key (known before any model is
loaded, so a fully cached article never loads one) and the engine that is eventually loaded, whose `backend`
reports the same string.

- NEWSMT_BACKEND=transformers: always the Hugging Face weights.
- NEWSMT_BACKEND=ctranslate2: the converted copy at NEWSMT_CT2_QUANTIZATION for exactly the resolved model and
  revision; without one, ModelNotInstalled naming the convert command.
- NEWSMT_BACKEND=auto: that copy when present (and the device is one CTranslate2 runs on), else transformers.

The transformers engine is imported only when a task runs on it: it brings torch, about 220 MB of a process's
memory that a server running every model on CTranslate2 never needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings, TaskInfo
from service.engines import ctranslate2_engine
from service.engines.base import Engine
from service.errors import ModelLoadError, ModelNotInstalled
from service.store.convert import ConvertedModel, convert_command, find_converted
from service.store.model_store import ResolvedModel


@dataclass(frozen=True)
class EnginePlan:
    """What `load_engine` will load: a converted copy (CTranslate2) or None (transformers), and its variant."""

    variant: str
    converted: ConvertedModel | None


def plan_engine(resolved: ResolvedModel, settings: Settings) -> EnginePlan:
    if settings.backend != "transformers":
        quantization = settings.ct2_quantization
        converted = find_converted(settings.models_dir, resolved, quantization)
        device = ctranslate2_engine.resolve_device(settings.device)
        if settings.backend == "ctranslate2":
            if converted is None:
                raise ModelNotInstalled(resolved.task, f"{resolved.model_id} converted to CTranslate2 {quantization}",
                                        convert_command(resolved.task, quantization))
            if device not in ctranslate2_engine.DEVICES:
                raise ModelLoadError(f"NEWSMT_BACKEND=ctranslate2 runs on {' or '.join(ctranslate2_engine.DEVICES)}, "
                                     f"not NEWSMT_DEVICE={settings.device}")
        if converted is not None and device in ctranslate2_engine.DEVICES:
            return EnginePlan(ctranslate2_engine.variant_name(quantization, device), converted)
    from service.engines import transformers_engine

    device = transformers_engine.resolve_device(settings.device)
    return EnginePlan(transformers_engine.variant_name(device, settings.cuda_dtype, settings.torch_int8), None)


def load_engine(resolved: ResolvedModel, settings: Settings, info: TaskInfo) -> Engine:
    """Load the engine `plan_engine` chose for this model."""
    plan = plan_engine(resolved, settings)
    if plan.converted is not None:
        return ctranslate2_engine.CTranslate2Engine(
            plan.converted,
            device=settings.device,
            source_lang=info.source_lang,
            target_lang=info.target_lang,
            threads=settings.threads,
            inter_threads=settings.inter_threads,
        )
    from service.engines.transformers_engine import TransformersEngine

    return TransformersEngine(
        resolved.path,
        device=settings.device,
        source_lang=info.source_lang,
        target_lang=info.target_lang,
        allow_pickle_weights=settings.allow_pickle_weights,
        cuda_dtype=settings.cuda_dtype,
        cpu_int8=settings.torch_int8,
        threads=settings.threads,
    )
