"""Seq2seq inference through CTranslate2 on a converted copy (`newsmt models convert`): Marian, M2M100/NLLB, BART.

CTranslate2 runs the same network as transformers with quantized weights (int8 on a CPU, int8_float16/float16 on a
GPU) and a C++ decoder, several times faster and in a fraction of the memory. It takes token *strings*, so the
Hugging Face tokenizer copied next to the converted weights does all text <-> token work, exactly as it does for
the transformers backend; decoding defaults come from the copied `generation_config.json`, as `generate` takes them.

On this project's AMD CPUs CTranslate2 picks AVX2 with oneDNN by itself; do not set CT2_USE_MKL=1 (int8 became 15x
slower in our measurements).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, cast

import ctranslate2

from service.engines.base import Generation, GenerationSettings, Hypothesis, ranked
from service.engines.tokenizer import load_tokenizer, target_language_token
from service.errors import ModelLoadError
from service.store.convert import ConvertedModel

#: Devices CTranslate2 runs on (no Apple MPS).
DEVICES = ("cpu", "cuda")


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA when CTranslate2 sees a GPU, else the CPU; other values pass through (and may be ones
    CTranslate2 cannot run on: see DEVICES)."""
    if requested != "auto":
        return requested
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def compute_type(quantization: str, device: str) -> str:
    """The compute type a copy runs in. CTranslate2 refuses a type the device cannot run efficiently (float16 on a
    CPU), so fall back as its own 'default' does: int8 weights stay int8 with float32 elsewhere, 16-bit floats
    become float32. Passed explicitly at load so the cache key never depends on a guess."""
    supported = ctranslate2.get_supported_compute_types(device)
    if quantization in supported:
        return quantization
    fallbacks = ("int8_float32", "int8", "float32") if quantization.startswith("int8") else ("float32",)
    return next(candidate for candidate in fallbacks if candidate in supported)


def variant_name(quantization: str, device: str) -> str:
    """Backend, quantization and device, for cache keys. A copy stored in one type but computed in another
    (float16 weights on a CPU) names both: its outputs differ from a copy converted to float32."""
    computed = compute_type(quantization, device)
    precision = quantization if computed == quantization else f"{quantization}-as-{computed}"
    return f"ctranslate2-{precision}-{device}"


#: Threads the automatic CPU split gives each replica (CTranslate2's own default for one translator): a replica
#: runs a whole batch on all of them; more cores than that become more replicas.
AUTO_THREADS_PER_REPLICA = 4


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads(threads: int, inter_threads: int, cores: int | None = None) -> tuple[int, int]:
    """(replicas, threads per replica) on a CPU; 0 means "choose" for either.

    Why few replicas with several threads each: what bounds the throughput of concurrent requests is the memory of
    the segments decoding at once (NEWSMT_BATCH_MAX_DECODING_TOKENS per replica), and within the same number of
    segments one batch on all cores beat the same segments split among single-threaded replicas: those leave cores
    idle whenever a request has fewer segments than there are replicas (a one-sentence request, the first
    translation after a start), and each replica's share of a batch was smaller. The measurements behind the
    rule, and its caveat for busy shared hosts, are in bench/README.md. A value set for one side is honoured with
    the other derived from it so that replicas x threads fills the cores; both set are taken as given."""
    cores = cores or usable_cores()
    if threads == 0 and inter_threads == 0:
        threads = min(cores, AUTO_THREADS_PER_REPLICA)
    if inter_threads == 0:
        inter_threads = max(1, cores // threads)
    return inter_threads, threads or max(1, cores // inter_threads)


def _decoding_defaults(generation_config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's own decoding knobs that `generate` would apply, as translate_batch options."""
    options: dict[str, Any] = {}
    for hf_name, ct2_name in (("length_penalty", "length_penalty"), ("no_repeat_ngram_size", "no_repeat_ngram_size"),
                              ("repetition_penalty", "repetition_penalty")):
        if generation_config.get(hf_name) is not None:
            options[ct2_name] = generation_config[hf_name]
    # HF's min_length counts the decoder start token; CTranslate2 counts generated tokens only.
    min_new = generation_config.get("min_new_tokens") or max(0, (generation_config.get("min_length") or 0) - 1)
    if min_new:
        options["min_decoding_length"] = min_new
    return options


def _mean_log_prob(score: float, tokens: int, length_penalty: float) -> float:
    """CTranslate2's score is the summed log-probability divided by length ** length_penalty, the length counting
    the hypothesis's tokens and its `</s>`: undo the penalty, so the score is a plain per-token mean on every
    backend whatever the checkpoint's length penalty."""
    length = tokens + 1
    return round(score * length ** length_penalty / length, 4)


class CTranslate2Engine:
    """One converted model + its tokenizer. CTranslate2's Translator is thread-safe and queues concurrent calls
    itself; with inter_threads > 1 a batch is split into one sub-batch per replica so they run in parallel."""

    def __init__(
        self,
        converted: ConvertedModel,
        *,
        device: str = "auto",
        source_lang: str | None = None,
        target_lang: str | None = None,
        threads: int = 0,
        inter_threads: int = 0,
    ):
        self.device = resolve_device(device)
        if self.device not in DEVICES:
            raise ModelLoadError(f"CTranslate2 runs on {' or '.join(DEVICES)}, not '{self.device}'; "
                                 "set NEWSMT_BACKEND=transformers or another NEWSMT_DEVICE")
        self.path = converted.path
        self.compute_type = compute_type(converted.quantization, self.device)
        if self.device == "cpu":
            inter_threads, threads = cpu_threads(threads, inter_threads)
        else:  # intra_threads does not apply to a GPU; replicas there are CUDA streams, one unless asked for more
            inter_threads, threads = inter_threads or 1, 0
        #: Batches split into this many parts, run in parallel (read by the batcher's decoding budget too).
        self.replicas = inter_threads
        try:
            self.tokenizer = load_tokenizer(self.path)
            self.translator = ctranslate2.Translator(
                str(self.path),
                device=self.device,
                compute_type=self.compute_type,
                inter_threads=inter_threads,
                intra_threads=threads,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load CTranslate2 model from {self.path}: {type(exc).__name__}: {exc}") \
                from exc
        self.max_positions = converted.max_positions
        self.backend = variant_name(converted.quantization, self.device)
        target = target_language_token(self.tokenizer, converted.model_type, source_lang, target_lang)
        self._target_prefix = None if target is None else [target]
        generation_file = self.path / "generation_config.json"
        generation = json.loads(generation_file.read_text(encoding="utf-8")) if generation_file.is_file() else {}
        self._defaults = _decoding_defaults(generation)
        # `generate` forces </s> as the last token at the length limit (forced_eos_token_id, as OPUS-MT and BART
        # set it), which leaves one position fewer for text: cut at the same length as the transformers backend.
        self._eos_reserve = 1 if generation.get("forced_eos_token_id") is not None else 0

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]

    def generate(self, texts: list[str], settings: GenerationSettings) -> list[Generation]:
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
        sources = [self.tokenizer.convert_ids_to_tokens(row) for row in ids]
        hypotheses = settings.num_hypotheses or 1
        options: dict[str, Any] = {
            **self._defaults,
            "beam_size": max(settings.beam_size, hypotheses),
            "num_hypotheses": hypotheses,
            "return_scores": True,
            "max_decoding_length": min(settings.max_output_tokens, self.max_positions - 2) - self._eos_reserve,
        }
        overrides = {"min_decoding_length": settings.min_output_tokens, "length_penalty": settings.length_penalty,
                     "no_repeat_ngram_size": settings.no_repeat_ngram_size}
        options.update({name: value for name, value in overrides.items() if value is not None})
        if self._target_prefix is not None:
            options["target_prefix"] = [self._target_prefix] * len(sources)
        if self.replicas > 1:
            options["max_batch_size"] = math.ceil(len(sources) / self.replicas)
        results = self.translator.translate_batch(sources, **options)
        penalty = float(options.get("length_penalty", 1.0))
        outputs = []
        for result in results:
            tokens = [hypothesis for hypothesis in result.hypotheses]
            output_ids = cast(list[list[int]], [self.tokenizer.convert_tokens_to_ids(t) for t in tokens])
            decoded = self.tokenizer.batch_decode(output_ids, skip_special_tokens=True)
            outputs.append(ranked([Hypothesis(text.strip(), _mean_log_prob(score, len(t), penalty))
                                   for text, score, t in zip(decoded, result.scores, tokens, strict=True)]))
        return outputs

    def memory_bytes(self) -> int:
        """The converted weights file: about what CTranslate2 holds in memory (more where it computes a 16-bit
        copy in float32)."""
        return (self.path / "model.bin").stat().st_size

    def close(self) -> None:
        self.translator.unload_model()
