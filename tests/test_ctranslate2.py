"""Backends end to end: converted CTranslate2 copies (`newsmt models convert`), backend selection, torch int8, and
the backend and precision in every cache key. Tiny real models, the real CTranslate2 converter, the real CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from service.config import TASKS
from service.engines.base import GenerationSettings
from service.engines.factory import load_engine
from service.errors import ModelNotInstalled
from service.store.convert import CT2_MANIFEST, convert_model, converted_dir
from service.store.model_store import ModelStore
from service.testing.tiny_models import build_tiny_bart, build_tiny_m2m100, english_corpus, seed_texts
from service.text.cleaning import clean_document, split_sentences
from tests.conftest import env_for, make_pipeline, seed, settings_for

AR, HE = "translate:ar-en", "translate:he-en"
ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u06ff]")
GEN = GenerationSettings(beam_size=2, max_output_tokens=12, max_input_tokens=100)


@pytest.fixture(scope="module")
def converted_root(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Path:
    """A models folder holding int8 CTranslate2 copies of both tiny translation models."""
    root = tmp_path_factory.mktemp("ct2")
    settings = settings_for(root, tiny_models)
    store = ModelStore(settings)
    for task in (AR, HE):
        convert_model(settings.models_dir, store.resolve(task), "int8")
    return settings.models_dir


def _sentences(name: str, lang: str) -> list[str]:
    return [s for p in clean_document(seed(name)).paragraphs for s in split_sentences(p, lang)]


def test_convert_command_writes_a_copy_that_auto_then_runs(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models)
    done = subprocess.run([sys.executable, "-m", "service.cli", "models", "convert", AR, "--quantization", "int8"],
                          env=env_for(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resolved = ModelStore(settings).resolve(AR)
    copy = converted_dir(settings.models_dir, resolved, "int8")
    assert str(copy) in done.stdout
    manifest = json.loads((copy / CT2_MANIFEST).read_text(encoding="utf-8"))
    assert (manifest["source_model_id"], manifest["source_revision"], manifest["quantization"]) == (
        resolved.model_id, resolved.revision, "int8")
    names = {p.name for p in copy.iterdir()}
    assert {"model.bin", "source.spm", "target.spm", "vocab.json", "tokenizer_config.json"} <= names

    pipeline, batches = make_pipeline(settings)  # backend=auto: the converted ar-en copy, transformers for he-en
    assert pipeline.manager.variant(AR) == "ctranslate2-int8-cpu"
    assert pipeline.manager.variant(HE) == "transformers-float32-cpu"
    ar, he = pipeline.translate([seed("001"), seed("000")])
    assert ar.ok and he.ok, (ar.error, he.error)
    assert ar.models[0].backend == "ctranslate2-int8-cpu" and he.models[0].backend == "transformers-float32-cpu"
    assert pipeline.manager.load(AR)["backend"] == pipeline.manager.variant(AR)  # loaded engine agrees with the key
    assert not ARABIC_OR_HEBREW.search(ar.translation or "") and batches.segments[AR] >= ar.segments


def test_pipeline_on_ctranslate2_translates_every_seed(
    tmp_path: Path, tiny_models: dict[str, Path], converted_root: Path
) -> None:
    pipeline, batches = make_pipeline(settings_for(tmp_path, tiny_models, backend="ctranslate2",
                                                   models_dir=converted_root))
    names = ["000", "001", "002", "003", "004"]
    results = pipeline.translate([seed(name) for name in names])
    assert all(r.ok for r in results), [r.error for r in results]
    assert {r.detected_language for r in results} == {"ar", "he"}
    for result in results:
        assert result.translation and not ARABIC_OR_HEBREW.search(result.translation)
        assert all(m.backend == "ctranslate2-int8-cpu" for m in result.models)
    assert {row["backend"] for row in pipeline.manager.loaded()} == {"ctranslate2-int8-cpu"}
    assert batches.total >= sum(r.segments for r in results)


def test_a_ctranslate2_only_process_never_imports_torch(
    tmp_path: Path, tiny_models: dict[str, Path], converted_root: Path
) -> None:
    """torch is ~220 MB of a process's memory: the bulk CLI on converted copies translates both languages without
    it (`-X importtime` lists every module the process imported)."""
    settings = settings_for(tmp_path, tiny_models, backend="ctranslate2", models_dir=converted_root)
    articles = tmp_path / "in"
    articles.mkdir()
    for name in ("000", "001"):
        (articles / f"{name}.txt").write_text(seed(name), encoding="utf-8")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "service.cli", "translate", str(articles),
                           "--out", str(tmp_path / "out"), "--no-progress"],
                          env=env_for(settings), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "ctranslate2" in imported and "sentencepiece" in imported
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}
    assert len(list((tmp_path / "out").glob("*.txt"))) == 2


def test_backends_never_share_cache_entries(
    tmp_path: Path, tiny_models: dict[str, Path], converted_root: Path
) -> None:
    text = seed("004")
    on_torch, _ = make_pipeline(settings_for(tmp_path, tiny_models, backend="transformers",
                                             models_dir=converted_root))
    [cold] = on_torch.translate([text])
    assert cold.ok and cold.models[0].backend == "transformers-float32-cpu"  # never the copy, even when present
    on_ct2, batches = make_pipeline(settings_for(tmp_path, tiny_models, backend="ctranslate2",
                                                 models_dir=converted_root))
    [other] = on_ct2.translate([text])
    assert other.ok and other.cache_hits == 0 and other.cache_misses == other.segments > 0
    assert batches.total >= other.segments
    again, batches = make_pipeline(settings_for(tmp_path, tiny_models, backend="ctranslate2",
                                                models_dir=converted_root))
    [warm] = again.translate([text])
    assert warm.translation == other.translation and warm.cache_misses == 0
    assert batches.total == 0 and again.manager.load_count == 0


def test_ctranslate2_without_a_copy_names_the_convert_command(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    pipeline, batches = make_pipeline(settings_for(tmp_path, tiny_models, backend="ctranslate2",
                                                   ct2_quantization="int8_float16"))
    [result] = pipeline.translate([seed("004")])
    assert isinstance(result.error, ModelNotInstalled)
    assert "newsmt models convert translate:ar-en --quantization int8_float16" in str(result.error)
    assert batches.total == 0 and pipeline.manager.load_count == 0


def test_a_copy_of_older_weights_is_never_used(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    model = tmp_path / "ar-en"
    shutil.copytree(tiny_models["ar"], model)
    settings = settings_for(tmp_path, tiny_models, ar_en_model=str(model))
    convert_model(settings.models_dir, ModelStore(settings).resolve(AR), "int8")
    assert make_pipeline(settings)[0].manager.variant(AR) == "ctranslate2-int8-cpu"
    config = model / "generation_config.json"  # the model is updated in place; its copy is now stale
    config.write_text(config.read_text(encoding="utf-8").replace('"num_beams": 1', '"num_beams": 2'), encoding="utf-8")
    assert make_pipeline(settings)[0].manager.variant(AR) == "transformers-float32-cpu"
    strict, _ = make_pipeline(settings.model_copy(update={"backend": "ctranslate2"}))
    [result] = strict.translate([seed("004")])
    assert isinstance(result.error, ModelNotInstalled) and "newsmt models convert translate:ar-en" in str(result.error)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "m2m100": lambda out: build_tiny_m2m100(out, seed_texts() + english_corpus()),
    "bart": lambda out: build_tiny_bart(out, english_corpus()),
}


@pytest.mark.parametrize("kind", ["marian", *BUILDERS])
def test_float32_copy_translates_exactly_like_transformers(
    tmp_path: Path, tiny_models: dict[str, Path], kind: str
) -> None:
    """Same tokenizer, same decoding defaults, same length cut: the float32 copy must give identical outputs, which
    pins down tokenization, the M2M100 target-language prefix and the length limit of the CTranslate2 engine."""
    model = tiny_models["ar"] if kind == "marian" else BUILDERS[kind](tmp_path / kind)
    settings = settings_for(tmp_path, tiny_models, ar_en_model=str(model), ct2_quantization="float32")
    resolved = ModelStore(settings).resolve(AR)
    convert_model(settings.models_dir, resolved, "float32")
    texts = _sentences("001", "ar")[:6] if kind != "bart" else english_corpus()[:6]
    ct2 = load_engine(resolved, settings, TASKS[AR])
    torch_engine = load_engine(resolved, settings.model_copy(update={"backend": "transformers"}), TASKS[AR])
    assert ct2.backend == "ctranslate2-float32-cpu" and torch_engine.backend == "transformers-float32-cpu"
    outputs = ct2.generate(texts, GEN)
    assert all(outputs) and outputs == torch_engine.generate(texts, GEN)
    assert ct2.count_tokens(texts) == torch_engine.count_tokens(texts)
    # Loaded without AutoTokenizer (which would import torch), yet the very class AutoTokenizer picks.
    assert type(ct2.tokenizer) is type(AutoTokenizer.from_pretrained(resolved.path, local_files_only=True))


def test_a_copy_stored_in_16_bit_names_its_cpu_compute_type(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models, backend="ctranslate2", ct2_quantization="float16")
    convert_model(settings.models_dir, ModelStore(settings).resolve(AR), "float16")
    pipeline, _ = make_pipeline(settings)
    before = pipeline.manager.variant(AR)
    assert before == "ctranslate2-float16-as-float32-cpu"
    [result] = pipeline.translate([seed("004")])
    assert result.ok and pipeline.manager.load(AR)["backend"] == before


def test_torch_dynamic_int8(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    fp32, _ = make_pipeline(settings_for(tmp_path, tiny_models, backend="transformers"))
    [reference] = fp32.translate([seed("004")])
    int8, batches = make_pipeline(settings_for(tmp_path, tiny_models, backend="transformers", torch_int8=True))
    assert int8.manager.variant(AR) == "transformers-int8-cpu"
    [result] = int8.translate([seed("004")])
    assert result.ok and result.models[0].backend == "transformers-int8-cpu"
    assert result.cache_hits == 0 and batches.total >= result.segments  # fp32 entries are not reused
    assert result.translation and not ARABIC_OR_HEBREW.search(result.translation)
    engine, full = int8.manager.load(AR), fp32.manager.load(AR)
    assert engine["backend"] == "transformers-int8-cpu" and engine["memory_bytes"] < full["memory_bytes"]
    assert reference.ok


def test_cpu_threads_by_default_give_each_replica_up_to_four_cores() -> None:
    from service.engines.ctranslate2_engine import cpu_threads

    assert cpu_threads(0, 0, cores=2) == (1, 2)  # a lone batch runs on every core
    assert cpu_threads(0, 0, cores=1) == (1, 1)
    assert cpu_threads(0, 0, cores=16) == (4, 4)  # more cores: more replicas of AUTO_THREADS_PER_REPLICA threads
    assert cpu_threads(0, 1, cores=8) == (1, 8)  # one side set: the other fills the cores
    assert cpu_threads(2, 0, cores=8) == (4, 2)
    assert cpu_threads(3, 2, cores=8) == (2, 3)  # both set: as given


def test_concurrent_requests_on_two_replicas_each_get_their_own_translations(
    tmp_path: Path, tiny_models: dict[str, Path], converted_root: Path
) -> None:
    """Two replicas take two batch leaders at once: every request still gets exactly its own segments back."""
    import threading

    texts = [p for name in ("001", "002", "003") for p in clean_document(seed(name)).paragraphs][:12]
    settings = settings_for(tmp_path, tiny_models, backend="ctranslate2", models_dir=converted_root,
                            inter_threads=2, threads=1, batch_size=2, batch_max_wait_ms=0)
    pipeline, batches = make_pipeline(settings)
    with pipeline.manager.lease(AR) as engine:
        assert engine.replicas == 2
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(texts))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = pipeline.translate([texts[i]], "ar")[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done = [results[i] for i in range(len(texts))]
    assert all(r.ok and r.translation for r in done), [r.error for r in done]  # type: ignore[attr-defined]
    distinct = {s for t in texts for p in clean_document(t).paragraphs for s in split_sentences(p, "ar")}
    assert batches.total >= len(distinct) and batches.batches >= len(distinct) // 2  # pieces: long ones are split
    # Each answer is its own text's: the same text alone, through the same cache, gives the same translation.
    again = pipeline.translate(texts, "ar")
    assert [r.translation for r in again] == [r.translation for r in done]  # type: ignore[attr-defined]
