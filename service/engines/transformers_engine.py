"""Seq2seq inference through `transformers`: Marian (OPUS-MT), M2M100/NLLB and BART behind one class.

Loading rules: safetensors only unless the user allowed pickle weights, never `trust_remote_code`, local files
only (installing is a separate, explicit step: `newsmt models pull`).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel

from service.engines.base import GenerationSettings
from service.engines.tokenizer import load_tokenizer, target_language_token
from service.errors import ModelLoadError


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA, then Apple MPS, then CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def precision(device: str, cuda_dtype: str = "float16", cpu_int8: bool = False) -> str:
    """The weight type a model runs in: `cuda_dtype` on a GPU, int8 on a CPU when asked, else float32."""
    if device == "cuda":
        return cuda_dtype
    return "int8" if cpu_int8 and device == "cpu" else "float32"


def variant_name(device: str, cuda_dtype: str = "float16", cpu_int8: bool = False) -> str:
    """Backend, precision and device: part of every cache key, because fp16/bf16 on a GPU and int8 on a CPU give
    slightly different outputs from fp32."""
    return f"transformers-{precision(device, cuda_dtype, cpu_int8)}-{device}"


def _quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 on every nn.Linear: weights stored int8, activations quantized per batch. torch marks the
    eager API deprecated in favour of torchao, but it is still shipped and is the one needing no extra package."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors in a state-dict value; quantized Linear layers keep (weight, bias) as a tuple."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


class TransformersEngine:
    """One loaded model + tokenizer. `generate` is serialised by a lock: torch modules are not re-entrant
    under concurrent generate calls and CPU throughput comes from batching, not from parallel calls."""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "auto",
        source_lang: str | None = None,
        target_lang: str | None = None,
        allow_pickle_weights: bool = False,
        cuda_dtype: str = "float16",
        cpu_int8: bool = False,
        threads: int = 0,
    ):
        if threads > 0:  # process-wide in torch: the last model loaded sets it, and every model gets the same value
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.precision = precision(self.device, cuda_dtype, cpu_int8)
        self._lock = threading.Lock()
        if not allow_pickle_weights and not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"{path} has no .safetensors weights; reinstall it with `newsmt models pull` (which converts "
                "legacy .bin weights safely) or set NEWSMT_ALLOW_PICKLE_WEIGHTS=true"
            )
        try:
            self.tokenizer = load_tokenizer(path)
            dtype = getattr(torch, self.precision) if self.device == "cuda" else torch.float32
            model: PreTrainedModel = AutoModelForSeq2SeqLM.from_pretrained(
                path,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=None if allow_pickle_weights else True,
                dtype=dtype,
            )
        except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors, ...
            raise ModelLoadError(f"cannot load model from {path}: {type(exc).__name__}: {exc}") from exc
        model = model.to(self.device).eval()
        self.model: Any = _quantize_linear_int8(model) if self.precision == "int8" else model
        #: Learned position tables bound both sides; generating past them crashes instead of degrading.
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 1024)
        self.backend = variant_name(self.device, cuda_dtype, cpu_int8)
        self.replicas = 1
        forced = target_language_token(self.tokenizer, model.config.model_type, source_lang, target_lang)
        self._forced_bos = None if forced is None else self.tokenizer.get_vocab()[forced]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]

    @torch.inference_mode()
    def generate(self, texts: list[str], settings: GenerationSettings) -> list[str]:
        if not texts:
            return []
        with self._lock:
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=False).to(self.device)
            kwargs: dict[str, Any] = {
                "num_beams": settings.beam_size,
                "max_new_tokens": min(settings.max_output_tokens, self.max_positions - 2),
                "max_length": None,  # the checkpoint's own max_length would otherwise compete with max_new_tokens
                "do_sample": False,
            }
            if self._forced_bos is not None:
                kwargs["forced_bos_token_id"] = self._forced_bos
            if settings.min_output_tokens is not None:  # takes precedence over the checkpoint's min_length
                kwargs["min_new_tokens"] = settings.min_output_tokens
            if settings.length_penalty is not None and settings.beam_size > 1:  # it only scores beam hypotheses
                kwargs["length_penalty"] = settings.length_penalty
            if settings.no_repeat_ngram_size is not None:
                kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
            output = self.model.generate(**batch, **kwargs)
            return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def memory_bytes(self) -> int:
        # keep_vars returns tied weights (Marian shares one embedding 4 ways) as the same object: count it once.
        tensors = {id(t): t for value in self.model.state_dict(keep_vars=True).values() for t in _tensors(value)}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device == "cuda":
            torch.cuda.empty_cache()
