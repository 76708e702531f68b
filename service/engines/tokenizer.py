"""The tokenizer side both engines share: loading a checkpoint's tokenizer and the language codes of multilingual
checkpoints (M2M100, NLLB).

Kept apart from the engines, and free of torch, so that a server running only CTranslate2 copies never imports
torch (about 220 MB of its memory): transformers' tokenizer classes do not need it, but `AutoTokenizer` imports
transformers' configuration machinery, which does.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers
from transformers import PreTrainedTokenizerBase

from service.errors import ModelLoadError

TOKENIZER_CONFIG = "tokenizer_config.json"


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer class the checkpoint's tokenizer_config.json names, loaded directly: the class AutoTokenizer
    picks from the same field, without what AutoTokenizer imports. A config naming no class (or one this
    transformers lacks) goes through AutoTokenizer, which then works it out from the model type."""
    try:
        name = json.loads((path / TOKENIZER_CONFIG).read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        name = None
    tokenizer_class = getattr(transformers, name, None) if isinstance(name, str) else None
    if tokenizer_class is None:
        tokenizer_class = transformers.AutoTokenizer
    tokenizer: PreTrainedTokenizerBase = tokenizer_class.from_pretrained(path, local_files_only=True,
                                                                        trust_remote_code=False)
    return tokenizer


#: NLLB's language codes; M2M100 uses `__xx__` tokens built from the ISO code itself.
_NLLB_CODES = {"ar": "arb_Arab", "he": "heb_Hebr", "en": "eng_Latn"}


def target_language_token(
    tokenizer: PreTrainedTokenizerBase, model_type: str, source_lang: str | None, target_lang: str | None
) -> str | None:
    """Multilingual models (M2M100, NLLB) need the source code set on the tokenizer (done here) and the target
    code forced as the first output token (returned). Bilingual models need neither: None."""
    if model_type != "m2m_100" or not source_lang or not target_lang:
        return None
    vocab = tokenizer.get_vocab()
    nllb_src, nllb_tgt = _NLLB_CODES.get(source_lang), _NLLB_CODES.get(target_lang)
    if nllb_src in vocab and nllb_tgt in vocab:
        tokenizer.src_lang = nllb_src
        return nllb_tgt
    if f"__{source_lang}__" in vocab and f"__{target_lang}__" in vocab:  # M2M100 takes the bare ISO code
        tokenizer.src_lang = source_lang
        return f"__{target_lang}__"
    raise ModelLoadError(f"multilingual model has no language codes for {source_lang}->{target_lang}")
