"""Seq2seq inference through `transformers`: Marian (OPUS-MT), M2M100/NLLB and BART behind one class.

Loading rules: safetensors only unless the user allowed pickle weights, never `trust_remote_code`, local files
only (installing is a separate, explicit step: `newsmt models pull`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from ..errors import ModelLoadError
from .base import GenerationSettings

#: NLLB's language codes; M2M100 uses `__xx__` tokens built from the ISO code itself.
_NLLB_CODES = {"ar": "arb_Arab", "he": "heb_Hebr", "en": "eng_Latn"}


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA, then Apple MPS, then CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def variant_name(device: str) -> str:
    """Backend, precision and device: part of every cache key, because fp16 on a GPU can differ from fp32."""
    dtype = "float16" if device == "cuda" else "float32"
    return f"transformers-{dtype}-{device}"


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
    ):
        self.device = resolve_device(device)
        self._lock = threading.Lock()
        if not allow_pickle_weights and not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"{path} has no .safetensors weights; reinstall it with `newsmt models pull` (which converts "
                "legacy .bin weights safely) or set NEWSMT_ALLOW_PICKLE_WEIGHTS=true"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            dtype = torch.float16 if self.device == "cuda" else torch.float32
            model: PreTrainedModel = AutoModelForSeq2SeqLM.from_pretrained(
                path,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=None if allow_pickle_weights else True,
                dtype=dtype,
            )
        except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors, ...
            raise ModelLoadError(f"cannot load model from {path}: {type(exc).__name__}: {exc}") from exc
        self.model = model.to(self.device).eval()
        #: Learned position tables bound both sides; generating past them crashes instead of degrading.
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 1024)
        self.backend = variant_name(self.device)
        self._forced_bos = self._language_setup(source_lang, target_lang)

    def _language_setup(self, source_lang: str | None, target_lang: str | None) -> int | None:
        """Multilingual models need the source code on the tokenizer and the target forced as first token."""
        if self.model.config.model_type != "m2m_100" or not source_lang or not target_lang:
            return None
        vocab = self.tokenizer.get_vocab()
        nllb_src, nllb_tgt = _NLLB_CODES.get(source_lang), _NLLB_CODES.get(target_lang)
        if nllb_src in vocab and nllb_tgt in vocab:
            self.tokenizer.src_lang = nllb_src
            return int(vocab[nllb_tgt])
        if f"__{source_lang}__" in vocab and f"__{target_lang}__" in vocab:  # M2M100 takes the bare ISO code
            self.tokenizer.src_lang = source_lang
            return int(vocab[f"__{target_lang}__"])
        raise ModelLoadError(f"multilingual model has no language codes for {source_lang}->{target_lang}")

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
            output = self.model.generate(**batch, **kwargs)
            return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device == "cuda":
            torch.cuda.empty_cache()
