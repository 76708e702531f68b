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

from service.engines.base import Generation, GenerationSettings, Hypothesis, ranked
from service.engines.tokenizer import load_tokenizer, target_language_token
from service.errors import ModelLoadError

#: Logits held at once while scoring outputs (floats): bounds that pass's memory to about 128 MB.
_SCORE_CHUNK_FLOATS = 32 * 1024**2


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
    def generate(self, texts: list[str], settings: GenerationSettings) -> list[Generation]:
        if not texts:
            return []
        hypotheses = settings.num_hypotheses or 1
        with self._lock:
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=False).to(self.device)
            beams = max(settings.beam_size, hypotheses)
            kwargs: dict[str, Any] = {
                "num_beams": beams,
                "num_return_sequences": hypotheses,
                "max_new_tokens": min(settings.max_output_tokens, self.max_positions - 2),
                "max_length": None,  # the checkpoint's own max_length would otherwise compete with max_new_tokens
                "do_sample": False,
            }
            if self._forced_bos is not None:
                kwargs["forced_bos_token_id"] = self._forced_bos
            if settings.min_output_tokens is not None:  # takes precedence over the checkpoint's min_length
                kwargs["min_new_tokens"] = settings.min_output_tokens
            if settings.length_penalty is not None and beams > 1:  # it only scores beam hypotheses
                kwargs["length_penalty"] = settings.length_penalty
            if settings.no_repeat_ngram_size is not None:
                kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
            output = self.model.generate(**batch, **kwargs)
            scores = self._scores(batch, output, hypotheses)
            decoded = [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
        return [ranked([Hypothesis(text, score) for text, score in
                        zip(decoded[i:i + hypotheses], scores[i:i + hypotheses], strict=True)])
                for i in range(0, len(decoded), hypotheses)]

    def _scores(self, batch: Any, sequences: torch.Tensor, per_input: int) -> list[float]:
        """Mean log-probability of each generated sequence's tokens, `</s>` included, from one teacher-forced
        pass over the outputs. Why not `generate(output_scores=True)`: it keeps a batch x beams x vocabulary tensor
        for every step, where this holds one bounded chunk of logits at a time and costs one parallel decoder pass
        next to the step-by-step decode."""
        config = self.model.config
        inputs, targets = sequences[:, :-1], sequences[:, 1:]
        finished = (targets == config.eos_token_id).long()
        after_end = (finished.cumsum(dim=1) - finished) > 0
        counted = ~after_end & (targets != config.pad_token_id)
        if self._forced_bos is not None:  # forced, not chosen: says nothing about the model's confidence
            counted[:, 0] = False
        encoder_ids = batch["input_ids"].repeat_interleave(per_input, dim=0)
        encoder_mask = batch["attention_mask"].repeat_interleave(per_input, dim=0)
        rows = max(1, _SCORE_CHUNK_FLOATS // max(1, inputs.shape[1] * config.vocab_size))
        scores: list[float] = []
        for start in range(0, len(sequences), rows):
            part = slice(start, start + rows)
            logits = self.model(input_ids=encoder_ids[part], attention_mask=encoder_mask[part],
                                decoder_input_ids=inputs[part]).logits
            token_scores = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[part].unsqueeze(-1))
            mask = counted[part]
            means = (token_scores.squeeze(-1) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            scores.extend(round(float(value), 4) for value in means)
        return scores

    def memory_bytes(self) -> int:
        # keep_vars returns tied weights (Marian shares one embedding 4 ways) as the same object: count it once.
        tensors = {id(t): t for value in self.model.state_dict(keep_vars=True).values() for t in _tensors(value)}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device == "cuda":
            torch.cuda.empty_cache()
