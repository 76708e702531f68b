"""Tiny but real Hugging Face seq2seq checkpoints, built offline for the test-suite.

The real OPUS-MT / BART / M2M100 checkpoints are hundreds of MB and need the Hub, so tests build
look-alike directories instead: the same model and tokenizer classes, the same files on disk, loaded
through the same ``from_pretrained`` / CTranslate2 paths, but with a 32-wide, one-layer network and
tokenizers trained in a fraction of a second on the texts passed in.

The networks are random, so two details keep their output useful to tests:

* ``init_std`` is raised from 0.02 to 0.3: with the default, the encoder barely moves the logits and
  every input decodes to the same string; with 0.3 different inputs give different outputs.
* A random decoder picks ``</s>`` first for some inputs, which decodes to an empty string, and also
  picks special tokens, bare bytes and source-language pieces.  Where the architecture has a
  ``final_logits_bias`` (Marian, BART) it is set to ``_BANNED`` for all of those, so only readable
  target-side tokens remain.  Being a weight, it is honoured both by ``generate`` and by CTranslate2
  (whose converter copies a non-zero ``final_logits_bias`` into the output projection), unlike
  generation-config knobs such as ``min_new_tokens``.  The price: these models never end a sentence, so
  every output runs to the length limit (``max_length`` = 48 in the generation config,
  ``max_decoding_length`` in CTranslate2).  M2M100 lacks the bias: see ``build_tiny_m2m100``.
  Greedy decoding and single-threaded tokenizer training make builds byte-identical for the same seed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BartTokenizer,
    GenerationConfig,
    M2M100Config,
    M2M100ForConditionalGeneration,
    M2M100Tokenizer,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

SEEDS_DIR = Path(__file__).resolve().parents[2] / "seeds"
MAX_POSITIONS = 128  # tokenizers truncate to this (model_max_length), like 512/512 on real OPUS-MT
MAX_LENGTH = 48
_BANNED = -100.0  # logits of a random 32-wide model stay within about +-10
_TINY_LAYERS: dict[str, Any] = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=MAX_POSITIONS,
    init_std=0.3,
)

_ENGLISH = (
    "The president met the prime minister in Moscow on Tuesday.",
    "Markets fell sharply after the central bank raised interest rates.",
    "Heavy rain caused flooding across the northern region overnight.",
    "The foreign minister said the talks had been constructive.",
    "Thousands of people gathered in the capital to protest against the new law.",
    "The company reported a record profit for the third quarter.",
    "Officials confirmed that two soldiers were wounded in the attack.",
    "The government announced a new plan to build affordable housing.",
    "Oil prices rose for the fourth day in a row.",
    "The delegation will visit Kazakhstan and Azerbaijan next week.",
    "Doctors warned that the hospital was running out of fuel.",
    "The two countries signed agreements on energy, trade and education.",
    "Police arrested three suspects after a search of the building.",
    "The United Nations called for an immediate ceasefire.",
    "Schools will reopen on Sunday after a two-week closure.",
    "The army said it had intercepted a drone over the border.",
    "Inflation slowed to 3.2 percent in March, the statistics office said.",
    "The parliament approved the budget by a narrow majority.",
    "Rescue teams are still searching for survivors under the rubble.",
    "The minister resigned after weeks of pressure from the opposition.",
    "A new railway line will connect the port to the capital by 2030.",
    "The court postponed the hearing until next month.",
    "Farmers say the drought has destroyed most of this year's harvest.",
    "The summit ended with a joint statement on regional security.",
    "Electricity was restored to most homes by Friday evening.",
    "The ambassador was summoned to the foreign ministry on Monday.",
    "Tourism revenue doubled compared with the same period last year.",
    "The health ministry reported 120 new cases of the disease.",
    "Negotiators are expected to meet again in Cairo on Thursday.",
    "The central bank kept its main interest rate unchanged.",
    "Voters will go to the polls in June to elect a new parliament.",
    "Firefighters brought the forest fire under control after two days.",
    "The leaders discussed cooperation in science and technology.",
    "The airline cancelled dozens of flights because of the storm.",
    "Prices of bread and vegetables have risen sharply since January.",
    "The mayor opened a new bridge over the river on Saturday.",
    "Human rights groups criticised the decision to close the newspaper.",
    "The national team won the final by two goals to one.",
    "Scientists discovered an ancient city near the desert coast.",
    "The president thanked the people for their support and patience.",
)


def english_corpus() -> list[str]:
    """Short English news sentences: training text for target-side tokenizers and BART."""
    return list(_ENGLISH)


def seed_texts(seeds_dir: Path = SEEDS_DIR) -> list[str]:
    """Non-empty lines of the Arabic/Hebrew seed articles: source-side tokenizer training text."""
    return [
        line.strip()
        for path in sorted(seeds_dir.glob("*.txt"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _train_spm(texts: list[str], vocab_size: int, model_type: str = "unigram") -> bytes:
    """Train a sentencepiece model in memory; single-threaded so the same texts give the same bytes."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        model_type=model_type,
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # small corpora cannot always fill vocab_size
        character_coverage=1.0,  # keep every Arabic/Hebrew letter
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def _pieces(proto: bytes) -> list[str]:
    """The ordinary (non-control, non-unknown) pieces of a sentencepiece model, in id order."""
    sp = spm.SentencePieceProcessor(model_proto=proto)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]


def _readable(tokenizer: PreTrainedTokenizerBase, ids: Iterable[int]) -> list[int]:
    """The ids among ``ids`` that decode to visible text (no bare bytes, control characters or U+FFFD)."""
    ids = list(ids)
    texts = tokenizer.batch_decode([[i] for i in ids])
    return [
        i for i, text in zip(ids, texts, strict=True) if text.strip() and text.isprintable() and "\ufffd" not in text
    ]


def _only_emit(model: PreTrainedModel, allowed_ids: Iterable[int]) -> None:
    """Ban every token but ``allowed_ids`` through ``final_logits_bias`` (see module docstring)."""
    bias = model.get_buffer("final_logits_bias")
    bias.fill_(_BANNED)
    bias[0, list(allowed_ids)] = 0.0


def _save(
    out_dir: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, generation: GenerationConfig
) -> Path:
    """Attach a fast greedy generation config and save model + tokenizer the way Hub checkpoints are."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_marian(
    out_dir: Path, source_texts: list[str], target_texts: list[str], *, seed: int = 0, vocab_size: int = 400
) -> Path:
    """Build an OPUS-MT-shaped MarianMT directory (two spm models, one joint vocab.json) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # OPUS-MT layout: </s>=0, <unk>=1, source then target pieces, <pad> last.  CTranslate2's Marian
    # converter relies on <pad> being last: it drops that row because Marian starts from a zero embedding.
    protos = {"source.spm": _train_spm(source_texts, vocab_size), "target.spm": _train_spm(target_texts, vocab_size)}
    vocab = {"</s>": 0, "<unk>": 1}
    for name, proto in protos.items():
        (out_dir / name).write_bytes(proto)
        for piece in _pieces(proto):
            vocab.setdefault(piece, len(vocab))
    pad_id = vocab["<pad>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(out_dir / "source.spm"),
        target_spm=str(out_dir / "target.spm"),
        vocab=str(out_dir / "vocab.json"),
        model_max_length=MAX_POSITIONS,
    )
    config = MarianConfig(
        vocab_size=len(vocab),
        pad_token_id=pad_id,
        decoder_start_token_id=pad_id,
        eos_token_id=0,
        forced_eos_token_id=0,
        activation_function="swish",  # as in the Helsinki-NLP configs
        scale_embedding=True,
        **_TINY_LAYERS,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    _only_emit(model, _readable(tokenizer, (vocab[piece] for piece in _pieces(protos["target.spm"]))))
    generation = GenerationConfig(
        max_length=MAX_LENGTH,
        num_beams=1,
        decoder_start_token_id=pad_id,
        pad_token_id=pad_id,
        eos_token_id=0,
        forced_eos_token_id=0,
        bad_words_ids=[[pad_id]],
    )
    return _save(out_dir, model, tokenizer, generation)


def build_tiny_bart(out_dir: Path, texts: list[str], *, seed: int = 0) -> Path:
    """Build a BART summarizer directory with a byte-level BPE trained on ``texts`` in ``out_dir``."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as BartConfig's defaults expect
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=500, min_frequency=1, special_tokens=specials, show_progress=False)
    trained = json.loads(bpe.to_str())["model"]
    # Pairs as tuples: tokenizers' BPE rejects "a b" strings, whatever the list[str] hint says.
    merges: list[Any] = [tuple(merge) for merge in trained["merges"]]
    tokenizer = BartTokenizer(vocab=trained["vocab"], merges=merges, model_max_length=MAX_POSITIONS)
    config = BartConfig(vocab_size=len(trained["vocab"]), **_TINY_LAYERS)
    config.normalize_before = False  # CTranslate2's BART converter reads it; transformers 5 dropped it
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(config).eval()
    _only_emit(model, _readable(tokenizer, range(len(specials), config.vocab_size)))
    generation = GenerationConfig(
        max_length=MAX_LENGTH,
        num_beams=1,
        bos_token_id=config.bos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        forced_eos_token_id=config.eos_token_id,
    )
    return _save(out_dir, model, tokenizer, generation)


def build_tiny_m2m100(out_dir: Path, texts: list[str], *, seed: int = 0, vocab_size: int = 800) -> Path:
    """Build an M2M100 directory (one BPE spm shared by all languages, ``__xx__`` language tokens).

    M2M100 has no ``final_logits_bias``, so empty outputs are prevented in the generation config only
    (``min_new_tokens`` and ``bad_words_ids``): ``generate`` honours that, CTranslate2 does not (pass
    ``min_decoding_length`` there).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    spm_path = out_dir / "sentencepiece.bpe.model"
    spm_path.write_bytes(proto := _train_spm(texts, vocab_size, model_type="bpe"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # fairseq dictionary order
    for piece in _pieces(proto):
        vocab.setdefault(piece, len(vocab))
    vocab_path = out_dir / "vocab.json"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    # Name the language tokens explicitly, as facebook/m2m100_418M's tokenizer_config.json does: in
    # transformers 5 the constructor's own fallback adds none, so skip_special_tokens would keep
    # "__en__" and CTranslate2's converter would miss 100 vocabulary entries.
    languages = [f"__{code}__" for code in FAIRSEQ_LANGUAGE_CODES["m2m100"]]
    tokenizer = M2M100Tokenizer(
        vocab_file=str(vocab_path),
        spm_file=str(spm_path),
        additional_special_tokens=languages,
        model_max_length=MAX_POSITIONS,
    )
    # Language tokens follow the vocab, then num_madeup_words (8) padding rows, as in facebook/m2m100_418M.
    vocab_rows = len(vocab) + len(languages) + tokenizer.num_madeup_words
    config = M2M100Config(vocab_size=vocab_rows, **_TINY_LAYERS)
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config).eval()
    banned = set(range(config.vocab_size)) - set(_readable(tokenizer, range(4, len(vocab)))) - {config.eos_token_id}
    generation = GenerationConfig(
        max_length=MAX_LENGTH,
        num_beams=1,
        bos_token_id=config.bos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        min_new_tokens=2,  # the forced target-language token, then at least one piece
        bad_words_ids=[[i] for i in sorted(banned)],  # applied before forced_bos_token_id, which still wins
    )
    return _save(out_dir, model, tokenizer, generation)
