"""The tiny fixture models must load and run exactly like the real Hub checkpoints they stand in for."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import ctranslate2
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianTokenizer

from service.testing.tiny_models import (
    build_tiny_bart,
    build_tiny_m2m100,
    build_tiny_marian,
    english_corpus,
    seed_texts,
)

HEBREW = "ראש הממשלה נפגש עם הנשיא בירושלים."
ARABIC = "التقى الأمين العام برئيس الوزراء في موسكو."
ENGLISH = "The minister visited the new hospital on Monday."

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "marian": lambda out: build_tiny_marian(out, seed_texts(), english_corpus()),
    "bart": lambda out: build_tiny_bart(out, english_corpus()),
    "m2m100": lambda out: build_tiny_m2m100(out, seed_texts() + english_corpus()),
}
INPUTS = {"marian": [HEBREW, ARABIC, "x"], "bart": [ENGLISH, "x"], "m2m100": [HEBREW, ARABIC]}


def _generate(model_dir: Path, texts: list[str], **kwargs: object) -> list[str]:
    """Load both halves from disk, as the service does, and translate greedily."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        output = model.generate(**batch, **kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def test_corpora() -> None:
    english, seeds = english_corpus(), seed_texts()
    assert len(english) >= 40 and all(english)
    assert seeds and all(line == line.strip() and line for line in seeds)
    assert any("\u0590" <= ch <= "\u05ff" for ch in "".join(seeds))  # Hebrew
    assert any("\u0600" <= ch <= "\u06ff" for ch in "".join(seeds))  # Arabic


def test_marian_looks_like_opus_mt(tmp_path: Path) -> None:
    out = BUILDERS["marian"](tmp_path)
    names = {p.name for p in out.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm"}
    assert expected | {"tokenizer_config.json", "vocab.json"} <= names
    config = json.loads((out / "config.json").read_text())
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "marian" and config["vocab_size"] == len(vocab)
    assert vocab["</s>"] == config["eos_token_id"] == 0
    assert vocab["<pad>"] == config["pad_token_id"] == config["decoder_start_token_id"] == len(vocab) - 1
    tokenizer = MarianTokenizer.from_pretrained(out)
    assert isinstance(AutoTokenizer.from_pretrained(out), MarianTokenizer)
    assert tokenizer(HEBREW).input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in tokenizer(HEBREW).input_ids


def test_bart_config_keeps_ctranslate2_field(tmp_path: Path) -> None:
    config = json.loads((BUILDERS["bart"](tmp_path) / "config.json").read_text())
    assert config["model_type"] == "bart" and config["normalize_before"] is False


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_generate_is_non_empty_and_deterministic(tmp_path: Path, kind: str) -> None:
    out = BUILDERS[kind](tmp_path / "a")
    kwargs = {"forced_bos_token_id": AutoTokenizer.from_pretrained(out).get_lang_id("en")} if kind == "m2m100" else {}
    first = _generate(out, INPUTS[kind], **kwargs)
    assert all(isinstance(text, str) and text.strip() for text in first)
    assert len(set(first)) > 1, "outputs should depend on the input"
    assert _generate(out, INPUTS[kind], **kwargs) == first
    assert _generate(BUILDERS[kind](tmp_path / "b"), INPUTS[kind], **kwargs) == first


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_ctranslate2_converts_and_translates(tmp_path: Path, kind: str) -> None:
    out = BUILDERS[kind](tmp_path / "hf")
    converted = ctranslate2.converters.TransformersConverter(str(out)).convert(
        str(tmp_path / "ct2"), quantization="int8"
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    sources = [tokenizer.convert_ids_to_tokens(tokenizer.encode(text, truncation=True)) for text in INPUTS[kind]]
    options: dict[str, object] = {"max_decoding_length": 48}
    if kind == "m2m100":  # no final_logits_bias to keep </s> away: see build_tiny_m2m100
        options.update(target_prefix=[["__en__"]] * len(sources), min_decoding_length=2)
    results = ctranslate2.Translator(converted, device="cpu").translate_batch(sources, **options)
    ids = [tokenizer.convert_tokens_to_ids(result.hypotheses[0]) for result in results]
    texts = tokenizer.batch_decode(cast(list[list[int]], ids), skip_special_tokens=True)  # list in, list out
    assert all(text.strip() for text in texts)
