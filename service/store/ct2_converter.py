"""CTranslate2's Transformers converter with newsmt's loading rules, for `newsmt models convert`
(service/store/convert.py).

A module of its own because `ctranslate2.converters` imports torch: a server that only runs converted copies never
imports it, and saves the ~220 MB torch takes.
"""

from __future__ import annotations

from typing import Any

from ctranslate2.converters import TransformersConverter


class LocalConverter(TransformersConverter):
    """CTranslate2's converter with newsmt's loading rules: local files only, safetensors unless pickle weights are
    allowed, never remote code, and the config field its BART loader needs."""

    def __init__(self, path: str, *, copy_files: list[str], allow_pickle_weights: bool):
        super().__init__(path, copy_files=copy_files, trust_remote_code=False)
        self._use_safetensors = None if allow_pickle_weights else True

    def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
        model = super().load_model(model_class, model_name_or_path, local_files_only=True,
                                   use_safetensors=self._use_safetensors, **kwargs)
        # The BART loader reads `normalize_before`, which transformers 5 configs no longer carry; BART is post-norm
        # (the Marian and M2M100 loaders set the field themselves).
        if not hasattr(model.config, "normalize_before"):
            model.config.normalize_before = False
        return model

    def load_tokenizer(self, tokenizer_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
        return super().load_tokenizer(tokenizer_class, model_name_or_path, local_files_only=True, **kwargs)
