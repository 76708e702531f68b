"""The translation pipeline end to end on tiny real models: what a user gets back, and what reaches a model."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from service.config import Settings
from service.errors import EmptyText, InputTooLarge, ModelNotInstalled, UnsupportedLanguage
from service.text.cleaning import clean_document, split_sentences
from tests.conftest import make_pipeline, seed, settings_for

ARABIC_OR_HEBREW = re.compile(r"[\u0590-\u06ff]")
PERSIAN = (
    "وزیر امور خارجه ایران روز دوشنبه در سفری رسمی به مسکو با همتای روسی خود دیدار و گفتگو کرد. "
    "در این دیدار دو طرف درباره گسترش همکاری‌های اقتصادی و تجاری و همچنین تحولات منطقه تبادل نظر کردند."
)


def test_arabic_article_translated_with_structure_and_metadata(settings: Settings) -> None:
    pipeline, batches = make_pipeline(settings)
    text = seed("001")
    [result] = pipeline.translate([text])
    assert result.ok, result.error
    doc = clean_document(text)
    assert result.detected_language == "ar"
    assert result.source_url == "https://vietnamnet.vn/tong-bi-thu-viet-nam-dac-biet-coi-trong-quan-he-voi-nga-2399238.html"
    assert [p.source for p in result.paragraphs] == doc.paragraphs
    assert result.translation is not None
    assert result.translation.count("\n\n") == len(doc.paragraphs) - 1  # paragraph structure preserved
    assert not ARABIC_OR_HEBREW.search(result.translation)  # a model produced it; nothing echoed
    assert all(p.translation.strip() for p in result.paragraphs)
    assert result.segments == sum(len(split_sentences(p, "ar")) for p in doc.paragraphs)
    assert (result.cache_hits, result.cache_misses) == (0, result.segments)
    assert result.models[0].task == "translate:ar-en" and result.models[0].revision.startswith("sha256:")
    assert batches.segments["translate:ar-en"] > 0
    assert pipeline.manager.load_count == 1


def test_repeat_is_served_from_cache_without_loading_a_model(settings: Settings) -> None:
    first, _ = make_pipeline(settings)
    texts = [seed("000"), seed("002")]
    cold = first.translate(texts)
    second, batches = make_pipeline(settings)  # a new process would look the same: fresh manager, same cache dir
    warm = second.translate(texts)
    assert [r.translation for r in warm] == [r.translation for r in cold]
    assert all(r.cache_hits == r.segments and r.cache_misses == 0 for r in warm)
    assert batches.total == 0 and second.manager.load_count == 0
    assert {r.detected_language for r in warm} == {"he", "ar"}


def test_one_edited_sentence_retranslates_one_segment(settings: Settings) -> None:
    pipeline, batches = make_pipeline(settings)
    text = seed("002")
    pipeline.translate([text])
    calls_before = batches.total
    edited = text.replace("وقعت الدولتان اتفاقية", "وقعت الدولتان أمس اتفاقية", 1)  # a short sentence: one piece
    assert edited != text
    [after] = pipeline.translate([edited])
    assert after.cache_misses == 1 and after.cache_hits == after.segments - 1
    assert batches.total - calls_before == 1


def test_settings_change_invalidates(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    text = seed("004")
    pipeline, _ = make_pipeline(settings_for(tmp_path, tiny_models))
    pipeline.translate([text])
    [same] = pipeline.translate([text])
    [other_beam] = pipeline.translate([text], beam_size=2)
    assert same.cache_misses == 0 and other_beam.cache_hits == 0
    # Another model for the same task (a different revision fingerprint) must not reuse cached output.
    swapped, _ = make_pipeline(settings_for(tmp_path, tiny_models, ar_en_model=str(tiny_models["he"])))
    [other_model] = swapped.translate([text])
    assert other_model.cache_hits == 0 and other_model.translation != same.translation


def test_english_passes_through_and_needs_no_model(settings: Settings) -> None:
    pipeline, batches = make_pipeline(settings)
    text = "The minister met his counterpart in Moscow on Monday.\n\nBoth sides discussed trade and energy."
    [result] = pipeline.translate([text])
    assert result.ok and result.detected_language == "en"
    assert result.translation == text and result.segments == 0
    assert batches.total == 0 and pipeline.manager.load_count == 0


def test_mixed_article_translates_only_the_foreign_paragraphs(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    english = "The foreign ministers of both countries signed several agreements on energy cooperation."
    arabic = clean_document(seed("003")).paragraphs[:3]
    [result] = pipeline.translate(["\n\n".join([*arabic, english])])
    assert result.ok and result.detected_language == "ar"
    assert [p.language for p in result.paragraphs] == ["ar", "ar", "ar", "en"]
    assert result.paragraphs[-1].translation == english


def test_persian_is_unsupported_not_translated_as_arabic(settings: Settings) -> None:
    pipeline, batches = make_pipeline(settings)
    [result] = pipeline.translate([PERSIAN])
    assert isinstance(result.error, UnsupportedLanguage) and result.error.detected == "fa"
    assert "detected 'fa'" in str(result.error) and result.translation is None
    assert batches.total == 0


def test_explicit_source_overrides_detection(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    [result] = pipeline.translate([PERSIAN], source="ar")
    assert result.ok and result.detected_language == "ar"
    assert result.models[0].task == "translate:ar-en"


def test_bad_inputs_fail_alone(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings.model_copy(update={"max_input_chars": 5000}))
    results = pipeline.translate(["   \n ", "[ad_1]\nتعليق (0)", "x" * 5001, seed("004")])
    assert isinstance(results[0].error, EmptyText)
    assert isinstance(results[1].error, EmptyText) and "boilerplate" in str(results[1].error)
    assert isinstance(results[2].error, InputTooLarge) and "5000" in str(results[2].error)
    assert results[3].ok and results[3].translation


def test_missing_model_names_the_install_command(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = Settings(_env_file=None, models_dir=tmp_path / "models", cache_dir=tmp_path / "cache",  # type: ignore[call-arg]
                        ar_en_model=str(tiny_models["ar"]), beam_size=1, max_output_tokens=8)
    pipeline, _ = make_pipeline(settings)
    he, ar = pipeline.translate([seed("000"), seed("004")])
    assert isinstance(he.error, ModelNotInstalled)
    assert "newsmt models pull translate:he-en" in str(he.error)
    assert "Helsinki-NLP/opus-mt-tc-big-he-en" in str(he.error)
    assert ar.ok  # the other task keeps working


def test_over_long_sentence_is_split_never_truncated(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    pipeline, batches = make_pipeline(settings_for(tmp_path, tiny_models, max_input_tokens=24))
    words = clean_document(seed("001")).paragraphs[1].replace("،", "").replace(".", "").split()
    long_sentence = " ".join(words * 3)
    [result] = pipeline.translate([long_sentence], source="ar")
    assert result.ok and result.segments == 1
    assert batches.total > 1  # the one sentence went to the model as several pieces
    assert len(result.translation or "") > 0


def test_concurrent_first_use_loads_once(settings: Settings) -> None:
    pipeline, _ = make_pipeline(settings)
    barrier = threading.Barrier(8)
    engines = []

    def use() -> None:
        barrier.wait()
        with pipeline.manager.lease("translate:ar-en") as engine:
            engines.append(engine)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pipeline.manager.load_count == 1 and len({id(e) for e in engines}) == 1
    assert pipeline.manager.unload("translate:ar-en") and pipeline.manager.loaded() == []


def test_corrupt_cache_still_translates_correctly(settings: Settings) -> None:
    reference, _ = make_pipeline(settings)
    [expected] = reference.translate([seed("004")])
    reference.cache.close()
    (settings.cache_dir / "cache.db").write_bytes(b"\x00garbage" * 512)
    pipeline, batches = make_pipeline(settings)
    [result] = pipeline.translate([seed("004")])
    assert result.ok and result.translation == expected.translation
    assert batches.total > 0 and not pipeline.cache.available
