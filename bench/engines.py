"""Raw engine calls on pre-tokenized inputs: the baselines newsmt is measured against.

Heavy imports stay inside the functions: each case runs in its own process, and a CTranslate2 case that imported
torch would report torch's memory as its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import BEAM_SIZE, OUTPUT_TOKENS, TORCH_DTYPE, WARMUP_TOKENS
from .measure import Context, Outcome, check_forced_length, translation_metrics

#: One batch of rows (token ids or token strings) and a length limit in, the generated length of each row out.
BatchRunner = Callable[[list[list[Any]], int], list[int]]


def load_inputs(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def length_sorted_batches(rows: Sequence[Sequence[Any]], size: int) -> list[list[int]]:
    """Row indices in batches of `size`, sorted by length so each batch pads little (as newsmt's pipeline does)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    return [order[start:start + size] for start in range(0, len(order), size)]


def timed_translation(rows: list[list[Any]], batch_size: int, run: BatchRunner) -> Outcome:
    """Warm the engine up on a short batch, then time every batch; lengths are checked, never assumed."""
    batches = length_sorted_batches(rows, batch_size)
    run([rows[i] for i in batches[0][:2]], OUTPUT_TOKENS)
    started = time.perf_counter()
    lengths = [n for batch in batches for n in run([rows[i] for i in batch], OUTPUT_TOKENS)]
    seconds = time.perf_counter() - started
    metrics = translation_metrics(lengths, [len(r) for r in rows], seconds)
    metrics["batch_size"] = batch_size
    return Outcome(metrics, f"{metrics['tokens_per_s']:,.0f} tok/s ({metrics['segments']} segments, batch "
                            f"{batch_size}, {metrics['seconds']:.1f} s)")


def _torch_model(ctx: Context, key: str, *, int8: bool) -> tuple[Any, Any]:
    """A transformers model on the bench device: fp32 (fp16 on CUDA), or dynamic int8 on the CPU."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    torch.set_num_threads(ctx.threads)
    dtype = getattr(torch, TORCH_DTYPE[ctx.device])
    model = AutoModelForSeq2SeqLM.from_pretrained(ctx.models[key], dtype=dtype).to(ctx.device).eval()
    if int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return torch, model


def torch_runner(ctx: Context, key: str, pad_id: int, *, int8: bool = False) -> BatchRunner:
    torch, model = _torch_model(ctx, key, int8=int8)

    @torch.inference_mode()
    def run(batch: list[list[int]], max_new_tokens: int) -> list[int]:
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        out = model.generate(input_ids=ids.to(ctx.device), attention_mask=mask.to(ctx.device), num_beams=BEAM_SIZE,
                             do_sample=False, max_new_tokens=max_new_tokens)
        # Column 0 is the decoder start token; a row that stopped early would be padded after its end.
        return (out[:, 1:] != pad_id).sum(dim=1).tolist()

    return run


def ct2_runner(ctx: Context, key: str) -> BatchRunner:
    import ctranslate2

    translator = ctranslate2.Translator(ctx.ct2_models[key], device=ctx.device, compute_type=ctx.ct2_quantization,
                                        intra_threads=ctx.threads if ctx.device == "cpu" else 0)

    def run(batch: list[list[str]], max_decoding_length: int) -> list[int]:
        results = translator.translate_batch(batch, beam_size=BEAM_SIZE, max_decoding_length=max_decoding_length)
        return [len(r.hypotheses[0]) for r in results]

    return run


# -- cases ---------------------------------------------------------------------------------------------------------
def naive_loop(ctx: Context) -> Outcome:
    """The loop most scripts start with: transformers, full precision, one sentence per generate call."""
    inputs = load_inputs(ctx.raw_inputs)
    rows = inputs["ids"][:ctx.params.naive_segments]
    return timed_translation(rows, 1, torch_runner(ctx, "ar-en", inputs["pad_id"]))


def ct2_batch(ctx: Context, batch_size: int) -> Outcome:
    return timed_translation(load_inputs(ctx.raw_inputs)["tokens"], batch_size, ct2_runner(ctx, "ar-en"))


def torch_int8_batch(ctx: Context, batch_size: int) -> Outcome:
    if ctx.device != "cpu":
        return Outcome.skip("torch dynamic int8 (quantize_dynamic) runs on the CPU only")
    inputs = load_inputs(ctx.raw_inputs)
    return timed_translation(inputs["ids"], batch_size, torch_runner(ctx, "ar-en", inputs["pad_id"], int8=True))


def summarize_once(ctx: Context, engine: str) -> Outcome:
    """One long article through the distilbart architecture at batch 1, after a short warm-up call."""
    if engine == "torch_int8" and ctx.device != "cpu":
        return Outcome.skip("torch dynamic int8 (quantize_dynamic) runs on the CPU only")
    inputs = load_inputs(ctx.summary_input)
    wanted = ctx.params.summary_output_tokens
    if engine == "ct2":
        run, row = ct2_runner(ctx, "summarize"), inputs["tokens"]
    else:
        run, row = torch_runner(ctx, "summarize", inputs["pad_id"], int8=engine == "torch_int8"), inputs["ids"]
    run([row[:WARMUP_TOKENS]], WARMUP_TOKENS)
    started = time.perf_counter()
    lengths = run([row], wanted)
    seconds = time.perf_counter() - started
    check_forced_length(lengths, wanted)
    metrics = {"input_tokens": len(inputs["ids"]), "output_tokens": lengths[0], "seconds": round(seconds, 3),
               "tokens_per_s": round(lengths[0] / seconds, 1)}
    return Outcome(metrics, f"{seconds:.2f} s per article ({metrics['input_tokens']} tokens in, {lengths[0]} out)")
