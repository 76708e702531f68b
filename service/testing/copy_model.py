"""A tiny Marian that has learned to copy its input, trained in seconds: a test model whose output means something.

The random-weight builders in `tiny_models` give real networks with meaningless output that never ends early. Tests
of features that depend on what a model *says* need more: that a protected term comes out exactly, that the N-best
list holds different hypotheses in score order, that a sentence the model handles well scores higher than one it
does not, that outputs end with a real `</s>`. Copying is the simplest task with all of those properties and a known
right answer, and a one-layer encoder-decoder learns it in under a thousand steps.

Shape: one sentencepiece model (trained on the seed articles and the English corpus, so Arabic, Hebrew and Latin all
tokenize into known pieces) serves as both `source.spm` and `target.spm`, so a piece has the same id on both sides and
copying is the identity on ids. Training pairs are random windows of real sentences (never random piece sequences):
the model learns to copy *text like the seeds*, which is what lets a garbled input score lower than a real sentence.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

from service.testing.tiny_models import MAX_POSITIONS, _pieces, _save, _train_spm
from service.text.cleaning import split_sentences

#: Longest training window, in pieces; inputs longer than this copy less reliably (positions it never saw).
MAX_WINDOW = 16
#: Enough for the loss to flatten on this task; a fixed count (not a time budget) keeps builds reproducible.
TRAIN_STEPS = 1000
BATCH = 32
LEARNING_RATE = 3e-3


def _windows(rows: list[list[int]], rng: random.Random, count: int) -> list[list[int]]:
    """Training inputs: half whole sentences (so the model learns where a sentence ends), half random windows of
    1..MAX_WINDOW pieces (so it copies whatever it is given, not only sentences it has seen)."""
    out = []
    for _ in range(count):
        row = rng.choice(rows)
        if len(row) <= MAX_WINDOW and rng.random() < 0.5:
            out.append(row)
            continue
        length = rng.randint(1, min(MAX_WINDOW, len(row)))
        start = rng.randint(0, len(row) - length)
        out.append(row[start:start + length])
    return out


def _batch(windows: list[list[int]], eos: int, pad: int) -> dict[str, torch.Tensor]:
    width = max(len(w) for w in windows) + 1
    ids = torch.full((len(windows), width), pad, dtype=torch.long)
    labels = torch.full((len(windows), width), -100, dtype=torch.long)
    for i, window in enumerate(windows):
        row = torch.tensor([*window, eos])
        ids[i, :len(row)] = row
        labels[i, :len(row)] = row
    return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": labels}


def build_copy_marian(out_dir: Path, texts: list[str], *, seed: int = 0, vocab_size: int = 320,
                      steps: int = TRAIN_STEPS) -> Path:
    """Train and save an OPUS-MT-shaped Marian directory whose model copies its input (see the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = [s for text in texts for s in split_sentences(text, "en")]
    proto = _train_spm(sentences, vocab_size)
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in _pieces(proto):
        vocab.setdefault(piece, len(vocab))
    pad_id = vocab["<pad>"] = len(vocab)
    for name in ("source.spm", "target.spm"):
        (out_dir / name).write_bytes(proto)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    tokenizer = MarianTokenizer(source_spm=str(out_dir / "source.spm"), target_spm=str(out_dir / "target.spm"),
                                vocab=str(out_dir / "vocab.json"), model_max_length=MAX_POSITIONS)
    config = MarianConfig(
        vocab_size=len(vocab), pad_token_id=pad_id, decoder_start_token_id=pad_id, eos_token_id=0,
        forced_eos_token_id=0, activation_function="swish", scale_embedding=True, d_model=64,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=MAX_POSITIONS, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0,
    )
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = MarianMTModel(config)
    rows = [row for row in tokenizer(sentences, add_special_tokens=False)["input_ids"] if row]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from a second thread, and a shared CPU loses
    try:
        for _ in range(steps):
            loss = model(**_batch(_windows(rows, rng, BATCH), 0, pad_id)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    generation = GenerationConfig(max_length=MAX_POSITIONS, num_beams=1, decoder_start_token_id=pad_id,
                                  pad_token_id=pad_id, eos_token_id=0, forced_eos_token_id=0,
                                  bad_words_ids=[[pad_id]])
    return _save(out_dir, model, tokenizer, generation)


#: Sentences the tests translate with the copy model, in its training set so each copies exactly (other text copies
#: well, but not always letter for letter). Glossary-protected forms (an English name inside) are left out on
#: purpose: the tests show those come through by copying, not by having been seen.
EXAMPLES = {
    "ar": "التقى الرئيس بوتين بالوزير.",
    "he": "ראש הממשלה נפגש היום.",
    "he_name": "טו לאם נפגש היום.",
}
ENGLISH_NAMES = ["Putin met To Lam in Cairo.", "Netanyahu and Putin spoke."]
