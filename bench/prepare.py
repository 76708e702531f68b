"""Everything done once before the cases run: models, corpus, tokenized inputs, and newsmt's configuration.

None of this is timed. The cases then only load what is prepared here, so each one measures its own work.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .cases import Case
from .config import (
    ARCHITECTURES,
    BEAM_SIZE,
    CT2_BATCH_SIZES,
    CT2_QUANTIZATION,
    MODELS_DIR,
    OUTPUT_TOKENS,
    REPO_DIR,
    SEED,
    BenchParams,
)
from .corpus import article_segments, make_articles, write_articles
from .measure import Context
from .models import SPEC_FILE, ensure_ct2, ensure_model

log = logging.getLogger(__name__)

#: newsmt's own model store for the bench: models laid out as `newsmt models pull` leaves them, plus the converted
#: copies `newsmt models convert` writes next to them (kept between runs; rebuilt when a model changes).
NEWSMT_STORE = MODELS_DIR / "newsmt-store"
#: The LibreTranslate comparison runs newsmt on the model as a local directory (fingerprinted, not pulled), with its
#: converted copy in a store of its own.
PEER_STORE = MODELS_DIR / "peer-store"
PULL_REVISION = "main"


def _union(cases: Iterable[Case], attribute: str) -> list[str]:
    return sorted({item for case in cases for item in getattr(case, attribute)})


def _tokenize_segments(model: str, segments: list[str], path: Path) -> None:
    """Token ids (for transformers) and token strings (CTranslate2 takes strings) of the same segments."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    ids = tokenizer(segments)["input_ids"]
    data = {"ids": ids, "tokens": [tokenizer.convert_ids_to_tokens(row) for row in ids],
            "pad_id": tokenizer.pad_token_id}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _summary_input(model: str, length: int, path: Path) -> None:
    """One English article of exactly `length` tokens (the seed English sentences, repeated), BOS ... EOS."""
    from transformers import AutoTokenizer

    from service.testing.tiny_models import english_corpus

    tokenizer = AutoTokenizer.from_pretrained(model)
    sentence_ids = tokenizer(" ".join(english_corpus()), add_special_tokens=False)["input_ids"]
    body = (sentence_ids * (length // len(sentence_ids) + 1))[:length - 2]
    ids = [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
    data = {"ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids), "pad_id": tokenizer.pad_token_id}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


# -- newsmt --------------------------------------------------------------------------------------------------------
def newsmt_ct2_available() -> bool:
    """newsmt's CTranslate2 backend and `newsmt models convert` (issue 5) are present in this checkout."""
    return all(importlib.util.find_spec(m) for m in ("service.store.convert", "service.engines.ctranslate2_engine"))


def newsmt_values(device: str, threads: int, params: BenchParams, use_ct2: bool) -> dict[str, Any]:
    """newsmt settings for the bench: the fastest backend available, greedy decoding capped at the forced output
    length, and the batch the best raw engine call uses (with a token budget that never binds below it)."""
    from service.config import Settings

    batch = max(CT2_BATCH_SIZES)
    return {
        "models_dir": NEWSMT_STORE,
        "ar_en_model": ARCHITECTURES["ar-en"].checkpoint,
        "he_en_model": ARCHITECTURES["he-en"].checkpoint,
        "device": device,
        "backend": "ctranslate2" if use_ct2 else "transformers",
        "ct2_quantization": CT2_QUANTIZATION[device],
        "torch_int8": not use_ct2 and device == "cpu",
        "threads": threads,
        "beam_size": BEAM_SIZE,
        "max_output_tokens": OUTPUT_TOKENS,
        "batch_size": batch,
        "batch_max_tokens": batch * Settings.model_fields["max_input_tokens"].default,
        "max_inflight_requests": params.http_clients,  # each client has one request in flight at most
    }


def backend_label(values: dict[str, Any]) -> str:
    if values["backend"] == "ctranslate2":
        return f"ctranslate2 {values['ct2_quantization']}"
    return "transformers " + ("torch int8" if values["torch_int8"] else values["device"])


def install_as_pulled(key: str) -> None:
    """Lay a built model out in newsmt's store as `newsmt models pull` leaves a hub download (the files, linked,
    and a pull manifest), so newsmt resolves it as it would in a deployment: revision from the manifest, rather
    than a content hash of a local directory's weights at every process start."""
    from service.config import Settings
    from service.store.model_store import MANIFEST, ModelStore

    source = ensure_model(key)
    repo_id = ARCHITECTURES[key].checkpoint
    dest = ModelStore(Settings(_env_file=None, models_dir=NEWSMT_STORE)).install_dir(repo_id)  # type: ignore[call-arg]
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for file in source.iterdir():
        (dest / file.name).symlink_to(file)
    revision = "bench-" + hashlib.sha256((source / SPEC_FILE).read_bytes()).hexdigest()[:12]
    manifest = {"repo_id": repo_id, "requested_revision": PULL_REVISION, "revision": revision,
                "pulled_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def convert_for_newsmt(task: str, values: dict[str, Any], env: dict[str, str]) -> None:
    """`newsmt models convert TASK --quantization Q`, unless the store already holds that exact copy."""
    from service.config import Settings
    from service.store.convert import find_converted
    from service.store.model_store import ModelStore

    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    if find_converted(settings.models_dir, ModelStore(settings).resolve(task), settings.ct2_quantization):
        return
    log.warning("newsmt models convert %s --quantization %s ...", task, settings.ct2_quantization)
    subprocess.run([sys.executable, "-m", "service.cli", "models", "convert", task, "--quantization",
                    settings.ct2_quantization], env=env, cwd=REPO_DIR, check=True)


def worker_env(newsmt_env: dict[str, str]) -> dict[str, str]:
    """The caller's environment without its NEWSMT_* variables (only the bench's apply), offline hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMT_")}
    return {**env, **newsmt_env, "HF_HUB_OFFLINE": "1"}


def prepare_peer(work: Path, params: BenchParams, settings_given: dict[str, str]) -> dict[str, Any]:
    """The LibreTranslate comparison: newsmt's converted copy of the model as a local directory (converted once, by
    `newsmt models convert`), argos packages over that same copy, LibreTranslate's own venv, the texts.
    `settings_given` (NEWSMT_* names) replace newsmt's defaults on its side of the comparison."""
    from service.config import Settings
    from service.store.convert import find_converted
    from service.store.model_store import ModelStore

    from . import peer

    hf_model = ensure_model("ar-en")
    env = peer.newsmt_env(PEER_STORE, hf_model)
    values = {"models_dir": PEER_STORE, "ar_en_model": str(hf_model)}
    convert_for_newsmt("translate:ar-en", values, worker_env(env))
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    converted = find_converted(PEER_STORE, ModelStore(settings).resolve("translate:ar-en"), settings.ct2_quantization)
    if converted is None:
        raise RuntimeError("newsmt models convert left no converted copy for the LibreTranslate comparison")
    packages = peer.build_packages(converted.path, hf_model / "source.spm", work / "argos-packages")
    peer.peer_texts(work / peer.TEXTS_FILE, params.peer_texts)
    return {"python": str(peer.ensure_venv()), "packages": str(packages),
            "target_spm": str(hf_model / "target.spm"), "newsmt_env": {**env, **settings_given}}


# -- all of it -----------------------------------------------------------------------------------------------------
def prepare(cases: list[Case], params: BenchParams, device: str, threads: int, work: Path,
            peer_settings: dict[str, str] | None = None) -> Context:
    for key in _union(cases, "models"):
        ensure_model(key)
    ct2_models = {key: str(ensure_ct2(key, CT2_QUANTIZATION[device])) for key in _union(cases, "raw_ct2")}

    articles = make_articles(params.articles)
    corpus_dir = write_articles(articles, work / "corpus")
    segments = article_segments(articles)
    raw_inputs = work / "raw-inputs.json"
    if "ar-en" in _union(cases, "models"):
        sample = random.Random(SEED).sample(segments, min(params.raw_segments, len(segments)))
        _tokenize_segments(str(ensure_model("ar-en")), sample, raw_inputs)
    summary_input = work / "summary-input.json"
    if any("summarize" in case.models for case in cases):
        _summary_input(str(ensure_model("summarize")), params.summary_input_tokens, summary_input)

    use_ct2 = newsmt_ct2_available()
    values = newsmt_values(device, threads, params, use_ct2)
    newsmt_env = {f"NEWSMT_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
                  for name, value in values.items()}
    tasks = _union(cases, "newsmt_tasks")
    for task in tasks:
        key = task.split(":")[1]
        install_as_pulled(key)
        if use_ct2:
            convert_for_newsmt(task, values, worker_env(newsmt_env))
    peer = prepare_peer(work, params, peer_settings or {}) if any(case.peer for case in cases) else {}
    return Context(
        device=device, threads=threads, params=params, work_dir=work,
        models={key: str(ensure_model(key)) for key in _union(cases, "models")}, ct2_models=ct2_models,
        ct2_quantization=CT2_QUANTIZATION[device], raw_inputs=raw_inputs, summary_input=summary_input,
        corpus_dir=corpus_dir, corpus_segments=len(segments), newsmt_backend=backend_label(values),
        newsmt_ct2=use_ct2, newsmt_env=newsmt_env, peer=peer,
    )
