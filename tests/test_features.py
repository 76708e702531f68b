"""Alternatives, per-sentence confidence and glossaries, end to end: matching rules on text, then the pipeline, the
HTTP routes (native and LibreTranslate) and the CLI with the tiny model trained to copy its input
(service/testing/copy_model.py), so what comes out can be checked exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.config import TASKS
from service.engines.base import GenerationSettings
from service.engines.factory import load_engine
from service.errors import InvalidGlossary, InvalidInput
from service.pipeline.sentences import SentenceResult
from service.store.convert import convert_model
from service.store.glossaries import GlossaryStore, parse_table
from service.store.model_store import ModelStore
from service.testing.copy_model import EXAMPLES
from service.text.glossary import Glossary, Term, parse_terms, restore
from tests.conftest import LiveServer, env_for, make_pipeline, settings_for

GARBLED = EXAMPLES["ar"][::-1]  # the same letters reversed: nothing like what the model learned to copy
#: Between a copied sentence's score (about -0.01) and the garbled one's (about -0.1): see test_scores_separate...
THRESHOLD = -0.05
NAMES = Glossary(parse_terms([("بوتين", "Putin"), ("טו לאם", "To Lam"), ("القاهرة", "Cairo")]))


def copy_settings(root: Path, copy_models: dict[str, Path], **overrides: object):
    values: dict[str, object] = {"beam_size": 2, "max_output_tokens": 40, "low_confidence": THRESHOLD,
                                 "backend": "transformers"}
    return settings_for(root, copy_models, **{**values, **overrides})


# -- matching, on text alone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sentence, matched", [
    ("التقى بوتين بالوزير", "بوتين"),
    ("وبوتين قال", "بوتين"),          # and
    ("رسالة لبوتين", "بوتين"),         # to
    ("مع الرئيس ببوتين", "بوتين"),     # with
    ("قال بُوتِين", "بُوتِين"),           # vowel marks
    ("وصل إلى القاهرة", "القاهرة"),
    ("في بالقاهرة", "القاهرة"),        # ب + ال
    ("زيارة للقاهرة", "قاهرة"),        # ل + ال contracts to لل
    ("ולטו לאם", "טו לאם"),           # and + to
    ("פגישה ב-טו לאם", "טו לאם"),      # prefix with a hyphen
    ("פגישה עם טו  לאם", "טו  לאם"),   # other spacing
])
def test_terms_match_with_clitics_and_prefixes(sentence: str, matched: str) -> None:
    language = "he" if any("\u0590" <= c <= "\u05ff" for c in sentence) else "ar"
    protected = NAMES.protect(sentence, language)
    [applied] = protected.applied
    assert applied.matched == matched
    assert applied.target in protected.text and matched not in protected.text


@pytest.mark.parametrize("sentence, language", [("بوتينات كثيرة", "ar"), ("سبوتين", "ar"), ("טו לאמה", "he"),
                                                 ("بوتين", "he")])
def test_no_match_inside_other_words_or_languages(sentence: str, language: str) -> None:
    assert NAMES.protect(sentence, language).applied == ()


def test_prefix_stays_as_its_own_word() -> None:
    protected = NAMES.protect("وصلت رسالة لبوتين أمس", "ar")
    assert protected.text == "وصلت رسالة ل Putin أمس"


def test_restore_puts_back_the_exact_form_and_reports_what_is_missing() -> None:
    applied = NAMES.protect("بوتين وטו", "ar").applied + NAMES.protect("טו לאם", "he").applied
    text, found = restore("PUTIN met to-lam", applied)
    assert text == "Putin met To Lam" and found == [True, True]
    text, found = restore("The president met nobody", applied)
    assert found == [False, False]


def test_glossary_tables_and_bad_input() -> None:
    tsv = parse_table("source\ttarget\n# names\nبوتين\tPutin\nטו לאם\tTo Lam\n")
    csv = parse_table('source,target\n"بوتين",Putin\n')
    assert [t.target for t in tsv] == ["Putin", "To Lam"] and csv == (Term("بوتين", "Putin"),)
    for bad in ("بوتين\n", "Putin\tPutin\n", ""):
        with pytest.raises(InvalidGlossary, match=r"cell|Arabic or Hebrew|no terms"):
            parse_table(bad)
    assert Glossary(tsv).digest != Glossary(tsv[:1]).digest


def test_old_cache_entries_read_as_scoreless_never_crash() -> None:
    assert SentenceResult.from_cache("src", "a plain old translation") == SentenceResult("src",
                                                                                        "a plain old translation")
    assert SentenceResult.from_cache("src", '{"translation": broken') is None


# -- the pipeline with the copy model ------------------------------------------------------------------------
def test_scores_separate_a_copied_sentence_from_a_garbled_one(tmp_path: Path, copy_models: dict[str, Path]) -> None:
    pipeline, _ = make_pipeline(copy_settings(tmp_path, copy_models))
    [result] = pipeline.translate([f"{EXAMPLES['ar']}\n\n{GARBLED}"], "ar")
    copied, garbled = result.sentences
    assert copied.translation == EXAMPLES["ar"]  # a real </s>: the copy ends where the sentence does
    assert copied.score is not None and garbled.score is not None
    assert copied.score > THRESHOLD > garbled.score
    assert [low.source for low in result.low_confidence(THRESHOLD)] == [GARBLED]
    [again] = pipeline.translate([f"{EXAMPLES['ar']}\n\n{GARBLED}"], "ar")  # from the article cache
    assert [s.score for s in again.sentences] == [copied.score, garbled.score] and again.cache_misses == 0
    fresh, _ = make_pipeline(copy_settings(tmp_path, copy_models))
    [segments_only] = fresh.translate([EXAMPLES["ar"]], "ar")  # a new article: its sentence from the segment cache
    assert segments_only.cache_hits == 1 and segments_only.sentences[0].score == copied.score


def test_alternatives_differ_and_are_ordered_by_score(tmp_path: Path, copy_models: dict[str, Path]) -> None:
    pipeline, log = make_pipeline(copy_settings(tmp_path, copy_models))
    [result] = pipeline.translate([EXAMPLES["he"]], "he", alternatives=3)
    [sentence] = result.sentences
    scores = [sentence.score, *(h.score for h in sentence.alternatives)]
    texts = [sentence.translation, *(h.text for h in sentence.alternatives)]
    assert sentence.translation == EXAMPLES["he"] and len(sentence.alternatives) == 3
    assert scores == sorted(scores, reverse=True) and len(set(texts)) == 4
    assert result.alternatives(3) == texts[1:]
    [plain] = pipeline.translate([EXAMPLES["he"]], "he")  # its own cache entries: the beam was wider
    assert plain.sentences[0].alternatives == [] and plain.cache_misses == 1 and log.batches == 2
    with pytest.raises(InvalidInput, match="NEWSMT_ALTERNATIVES_LIMIT"):
        pipeline.translate([EXAMPLES["he"]], "he", alternatives=5)


def test_a_protected_term_comes_out_exactly(tmp_path: Path, copy_models: dict[str, Path]) -> None:
    pipeline, _ = make_pipeline(copy_settings(tmp_path, copy_models))
    ar, he = pipeline.translate([EXAMPLES["ar"], EXAMPLES["he_name"]], "auto", glossary=NAMES)
    assert ar.translation == EXAMPLES["ar"].replace("بوتين", "Putin")
    assert he.translation == EXAMPLES["he_name"].replace("טו לאם", "To Lam")
    assert ar.terms() == [{"source": "بوتين", "target": "Putin", "matched": ["بوتين"], "applied": 1, "found": 1}]
    unknown = Glossary(parse_terms([("بوتين", "Ŧ")]))  # a character the model cannot write
    [missing] = pipeline.translate([EXAMPLES["ar"]], "ar", glossary=unknown)
    assert missing.terms()[0]["found"] == 0  # reported missing, never claimed


def test_editing_a_glossary_retranslates_only_sentences_with_its_terms(tmp_path: Path,
                                                                       copy_models: dict[str, Path]) -> None:
    pipeline, log = make_pipeline(copy_settings(tmp_path, copy_models))
    article = f"{EXAMPLES['ar']}\n\n{GARBLED}"  # one sentence with a term, one without
    pipeline.translate([article], "ar", glossary=NAMES)
    before = log.total
    edited = Glossary(parse_terms([("بوتين", "Vladimir Putin"), ("טו לאם", "To Lam")]))
    [result] = pipeline.translate([article], "ar", glossary=edited)
    assert log.total - before == 1 and result.cache_hits == 1 and result.cache_misses == 1
    assert "Vladimir" in result.sentences[0].translation
    [plain] = pipeline.translate([GARBLED], "ar")  # no term in it: shared with glossary-free requests
    assert plain.cache_hits == 1


# -- HTTP ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer], copy_models: dict[str, Path]) -> LiveServer:
    return live_server(ar_en_model=str(copy_models["ar"]), he_en_model=str(copy_models["he"]), beam_size=2,
                       max_output_tokens=40, low_confidence=THRESHOLD, alternatives_limit=3)


def test_v1_translate_scores_alternatives_and_inline_glossary(server: LiveServer) -> None:
    body = {"text": f"{EXAMPLES['ar']}\n\n{GARBLED}", "source": "ar", "glossary": {"بوتين": "Putin"},
            "options": {"return_segments": True, "alternatives": 2}}
    response = httpx.post(f"{server.url}/v1/translate", json=body, timeout=120)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    first, garbled = (p["sentences"][0] for p in result["paragraphs"])
    assert first["translation"] == EXAMPLES["ar"].replace("بوتين", "Putin") and not first["low_confidence"]
    assert first["terms"] == [{"matched": "بوتين", "source": "بوتين", "target": "Putin", "found": True}]
    assert garbled["low_confidence"] and result["low_confidence"][0]["source"] == GARBLED
    assert len(result["alternatives"]) == 2 and result["translation"] not in result["alternatives"]
    assert [a["score"] for a in first["alternatives"]] == sorted((a["score"] for a in first["alternatives"]),
                                                                reverse=True)
    assert result["glossary_terms"][0]["found"] == 1
    too_many = httpx.post(f"{server.url}/v1/translate", json={**body, "options": {"alternatives": 4}}, timeout=30)
    assert too_many.status_code == 422 and "NEWSMT_ALTERNATIVES_LIMIT" in too_many.text
    missing = httpx.post(f"{server.url}/v1/translate", json={"text": EXAMPLES["ar"], "glossary": "nope"}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "glossary_not_found"
    summary = httpx.post(f"{server.url}/v1/articles", json={"text": EXAMPLES["ar"], "glossary": "x"}, timeout=30)
    assert summary.status_code == 422 and "/v1/translate only" in summary.text


def test_libretranslate_alternatives(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/translate", data={"q": EXAMPLES["he"], "source": "he", "target": "en",
                                                           "alternatives": "2"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["translatedText"] == EXAMPLES["he"]
    assert len(body["alternatives"]) == 2 and EXAMPLES["he"] not in body["alternatives"]
    batch = httpx.post(f"{server.url}/translate", json={"q": [EXAMPLES["he"], EXAMPLES["ar"]], "source": "auto",
                                                        "target": "en", "alternatives": 1}, timeout=120).json()
    assert [len(a) for a in batch["alternatives"]] == [1, 1]
    html = httpx.post(f"{server.url}/translate", json={"q": f"<p>{EXAMPLES['he']}</p>", "source": "he",
                                                       "target": "en", "format": "html", "alternatives": 1}).json()
    assert html["alternatives"] == []  # as LibreTranslate: no whole-document hypotheses for HTML
    over = httpx.post(f"{server.url}/translate", json={"q": "x", "source": "he", "target": "en", "alternatives": 9})
    assert over.status_code == 400 and over.json() == {
        "error": "Invalid request: alternatives parameter must be <= 3 (NEWSMT_ALTERNATIVES_LIMIT)"}


def test_glossary_routes_with_admin_keys(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(api_keys="reader", admin_api_keys="admin")
    url = f"{server.url}/v1/glossaries"
    table = {"table": "source\ttarget\nبوتين\tPutin\n"}

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    assert httpx.put(f"{url}/names", json=table).status_code == 401
    refused = httpx.put(f"{url}/names", json=table, headers=auth("reader"))
    assert refused.status_code == 403 and "NEWSMT_ADMIN_API_KEYS" in refused.text
    created = httpx.put(f"{url}/names", json=table, headers=auth("admin"))
    assert created.status_code == 200 and created.json()["terms"] == [
        {"source": "بوتين", "target": "Putin", "language": "ar"}]
    listing = httpx.get(url, headers=auth("reader")).json()
    assert [(g["name"], g["terms"], g["languages"]) for g in listing] == [("names", 1, ["ar"])]
    assert httpx.get(f"{url}/names", headers=auth("reader")).json()["digest"] == created.json()["digest"]
    bad = httpx.put(f"{url}/names", json={"terms": [{"source": "Putin", "target": "Putin"}]}, headers=auth("admin"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_glossary"
    assert httpx.delete(f"{url}/names", headers=auth("reader")).status_code == 403
    assert httpx.delete(f"{url}/names", headers=auth("admin")).status_code == 200
    assert httpx.get(f"{url}/names", headers=auth("reader")).status_code == 404


# -- CLI ------------------------------------------------------------------------------------------------------
def test_cli_glossary_commands_and_bulk_run(tmp_path: Path, copy_models: dict[str, Path]) -> None:
    settings = copy_settings(tmp_path, copy_models)
    env = env_for(settings)

    def newsmt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, text=True, capture_output=True,
                              timeout=300, cwd=tmp_path)

    (tmp_path / "names.tsv").write_text("بوتين\tPutin\nטו לאם\tTo Lam\n", encoding="utf-8")
    added = newsmt("glossary", "add", "names", str(tmp_path / "names.tsv"))
    assert added.returncode == 0 and "2 terms" in added.stdout, added.stderr
    assert "names" in newsmt("glossary", "list").stdout
    assert newsmt("glossary", "show", "names").stdout.splitlines() == ["بوتين\tPutin", "טו לאם\tTo Lam"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(f"{EXAMPLES['ar']}\n\n{GARBLED}\n", encoding="utf-8")
    run = newsmt("translate", "in", "--out", "out", "--source", "ar", "--glossary", "names", "--report", "r.html")
    assert run.returncode == 0, run.stderr
    [record] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert record["translation"].startswith(EXAMPLES["ar"].replace("بوتين", "Putin"))
    assert [s["score"] < THRESHOLD for s in record["sentences"]] == [False, True]
    assert [low["source"] for low in record["low_confidence"]] == [GARBLED]
    assert record["glossary"]["name"] == "names" and record["glossary"]["terms"][0]["found"] == 1
    report = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert report.count('class="low" title="score') == 1 and 'data-stat="low-confidence">1<' in report
    assert 'data-term="Putin"' in report
    by_file = newsmt("translate", "in", "--out", "out2", "--source", "ar", "--glossary", str(tmp_path / "names.tsv"))
    assert by_file.returncode == 0, by_file.stderr
    assert newsmt("glossary", "remove", "names").returncode == 0
    assert GlossaryStore(settings.glossaries_dir).listing() == []
    gone = newsmt("translate", "in", "--out", "out3", "--glossary", "names")
    assert gone.returncode == 2 and "no glossary named 'names'" in gone.stderr


def test_ctranslate2_scores_and_alternatives_match_transformers(tmp_path: Path, copy_models: dict[str, Path]) -> None:
    """One meaning of a score on both backends: CTranslate2's (length penalty undone) and the transformers pass
    agree, up to the odd token the two decoders split differently (same text, other pieces). On sentences the model
    copies confidently: on a garbled one near-tied tokens may go either way in two different decoders."""
    settings = copy_settings(tmp_path, copy_models, ct2_quantization="float32")
    resolved = ModelStore(settings).resolve("translate:ar-en")
    convert_model(settings.models_dir, resolved, "float32")
    ct2 = load_engine(resolved, settings.model_copy(update={"backend": "ctranslate2"}), TASKS["translate:ar-en"])
    torch_engine = load_engine(resolved, settings, TASKS["translate:ar-en"])
    texts = list(EXAMPLES.values())
    for gen in (GenerationSettings(1, 40, 100), GenerationSettings(4, 40, 100, num_hypotheses=3)):
        ours, theirs = ct2.generate(texts, gen), torch_engine.generate(texts, gen)
        assert [g.best.text for g in ours] == [g.best.text for g in theirs]
        assert all(abs(a.best.score - b.best.score) < 0.02 for a, b in zip(ours, theirs, strict=True))
        for generation in ours:
            scores = [h.score for h in generation.hypotheses]
            assert 1 <= len(scores) <= (gen.num_hypotheses or 1) and scores == sorted(scores, reverse=True)
