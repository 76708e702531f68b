"""Random-weight checkpoints with the real architectures, saved the way the Hub ships them, plus CTranslate2 copies.

Inference cost depends on the shape of a network, not on what its weights learned, so a random model with the real
layer counts, widths and vocabulary costs what the real one costs, provided it generates as many tokens. Two details
make that hold:

* Tokenizers are real (`MarianTokenizer` with sentencepiece models trained on seeds/, `BartTokenizer` with a
  byte-level BPE), taken from the test-suite's tiny builders, and their vocabularies are padded with never-produced
  filler entries up to the real size, so the embedding tables and the output projection (the softmax over the whole
  vocabulary at every step) are the real size too.
* `final_logits_bias` bans end-of-sentence, padding and the fillers. Being a weight, it is honoured by `generate`
  and by CTranslate2 (its converter folds the bias into the output projection) alike, so every engine, the newsmt
  pipeline included, decodes until its length limit: exactly `OUTPUT_TOKENS` tokens per segment.

Builds are cached under bench/.models/ with the spec they were built from; a changed spec rebuilds.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    GenerationConfig,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from service.testing.tiny_models import build_tiny_bart, build_tiny_marian, english_corpus, seed_texts

from .config import ARCHITECTURES, BANNED_LOGIT, BEAM_SIZE, MODELS_DIR, SEED, SPM_VOCAB, Architecture

log = logging.getLogger(__name__)

SPEC_FILE = "bench-spec.json"
#: Bump when the build procedure changes, so cached builds are redone.
BUILD_VERSION = 1
FILLER = "<bench-unused-{}>"


def model_dir(key: str) -> Path:
    return MODELS_DIR / ARCHITECTURES[key].checkpoint.split("/")[-1]


def _spec(arch: Architecture, **extra: object) -> dict[str, object]:
    return {"build_version": BUILD_VERSION, **asdict(arch), **extra}


def _is_current(path: Path, spec: dict[str, object]) -> bool:
    try:
        return json.loads((path / SPEC_FILE).read_text(encoding="utf-8")) == spec
    except (OSError, ValueError):
        return False


def _publish(tmp: Path, dest: Path, spec: dict[str, object]) -> Path:
    """Write the spec last and rename into place: an interrupted build is never mistaken for a finished one."""
    (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _allowed_ids(tiny_dir: Path) -> list[int]:
    """The readable target-side tokens the tiny builder left unbanned in its `final_logits_bias`."""
    bias = AutoModelForSeq2SeqLM.from_pretrained(tiny_dir).get_buffer("final_logits_bias")[0]
    return (bias == 0).nonzero().flatten().tolist()


def _force_length(model: PreTrainedModel, allowed: list[int]) -> None:
    bias = model.get_buffer("final_logits_bias")
    bias.fill_(BANNED_LOGIT)
    bias[0, allowed] = 0.0


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path, **special_ids: object) -> None:
    model.generation_config = GenerationConfig(num_beams=BEAM_SIZE, do_sample=False, **special_ids)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_marian(arch: Architecture, out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tiny = build_tiny_marian(Path(scratch), seed_texts(), english_corpus(), seed=SEED, vocab_size=SPM_VOCAB)
        allowed = _allowed_ids(tiny)
        vocab: dict[str, int] = json.loads((tiny / "vocab.json").read_text(encoding="utf-8"))
        for name in ("source.spm", "target.spm"):
            shutil.copy(tiny / name, out / name)
    # OPUS-MT layout: <pad> is the last row (CTranslate2's Marian converter drops it), fillers go before it.
    vocab.pop("<pad>")
    vocab.update({FILLER.format(i): i for i in range(len(vocab), arch.vocab_size - 1)})
    pad = vocab["<pad>"] = arch.vocab_size - 1
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                                vocab=str(out / "vocab.json"), model_max_length=arch.max_positions)
    config = MarianConfig(
        vocab_size=arch.vocab_size, d_model=arch.d_model, encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers, encoder_attention_heads=arch.heads, decoder_attention_heads=arch.heads,
        encoder_ffn_dim=arch.ffn_dim, decoder_ffn_dim=arch.ffn_dim, activation_function=arch.activation,
        max_position_embeddings=arch.max_positions, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
        scale_embedding=True,
    )
    torch.manual_seed(SEED)
    model = MarianMTModel(config).eval()
    _force_length(model, allowed)
    _save(model, tokenizer, out, decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=0)


def _build_bart(arch: Architecture, out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tiny = build_tiny_bart(Path(scratch), english_corpus(), seed=SEED)
        allowed = _allowed_ids(tiny)
        tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.add_tokens([FILLER.format(i) for i in range(len(tokenizer), arch.vocab_size)])
    tokenizer.model_max_length = arch.max_positions
    config = BartConfig(
        vocab_size=arch.vocab_size, d_model=arch.d_model, encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers, encoder_attention_heads=arch.heads, decoder_attention_heads=arch.heads,
        encoder_ffn_dim=arch.ffn_dim, decoder_ffn_dim=arch.ffn_dim, activation_function=arch.activation,
        max_position_embeddings=arch.max_positions,
    )
    config.normalize_before = False  # CTranslate2's BART loader reads it; transformers 5 configs lack it
    torch.manual_seed(SEED)
    model = BartForConditionalGeneration(config).eval()
    _force_length(model, allowed)
    _save(model, tokenizer, out, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
          pad_token_id=config.pad_token_id, decoder_start_token_id=config.decoder_start_token_id)


_BUILDERS = {"marian": _build_marian, "bart": _build_bart}


def ensure_model(key: str) -> Path:
    """The Hugging Face-format directory for `key`, built (once per spec) when missing."""
    arch, dest = ARCHITECTURES[key], model_dir(key)
    spec = _spec(arch)
    if _is_current(dest, spec):
        return dest
    log.warning("building a random-weight %s (%s) in %s ...", key, arch.checkpoint, dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _BUILDERS[arch.family](arch, tmp)
    return _publish(tmp, dest, spec)


def ensure_ct2(key: str, quantization: str) -> Path:
    """A CTranslate2 copy of `key` converted with CTranslate2's own converter (for the raw engine cases)."""
    from ctranslate2.converters import TransformersConverter

    source = ensure_model(key)
    dest = source.with_name(f"{source.name}-ct2-{quantization}")
    spec = _spec(ARCHITECTURES[key], quantization=quantization)
    if _is_current(dest, spec):
        return dest
    log.warning("converting %s to CTranslate2 %s ...", key, quantization)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    TransformersConverter(str(source)).convert(str(tmp), quantization=quantization, force=True)
    return _publish(tmp, dest, spec)
