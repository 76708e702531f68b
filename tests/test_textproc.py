"""Tests for service.textproc, driven by the real scraped articles in seeds/."""

from __future__ import annotations

import random
import time
import unicodedata
from pathlib import Path

import pytest

from service.text.cleaning import (
    CleanedDocument,
    clean_document,
    join_paragraphs,
    normalize,
    split_sentences,
    split_to_fit,
)

SEEDS = Path(__file__).parent.parent / "seeds"


def seed(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def nonspace(text: str) -> str:
    return "".join(text.split())


# --------------------------------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------------------------------


def test_normalize_strips_bidi_zero_width_and_tatweel():
    bidi = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
    zero_width = "\u200b\u200c\u200d\u2060\ufeff"
    text = f"{bidi}الـــسلام{zero_width} عليكم{bidi}\nשלום\u200f עולם"
    assert normalize(text) == "السلام عليكم\nשלום עולם"


def test_normalize_whitespace_and_lines():
    text = "  a \t\t b\u00a0\u00a0c  \r\n\r\n\t d  \u2028e "
    assert normalize(text) == "a b c\n\nd\ne"


def test_normalize_nfc():
    # alef + combining hamza above -> U+0623; e + combining acute -> U+00E9
    assert normalize("\u0627\u0654") == "\u0623"
    assert normalize("e\u0301") == "\u00e9"
    # a zero-width char between base and mark must not block composition
    assert normalize("e\u200b\u0301") == "\u00e9"


def test_normalize_idempotent_fuzz():
    pool = list("اأإبةتيىكلمنهو ـ") + list("אבגדה״׳ ") + list("ab é,.!?") + [
        "\u0301", "\u0654", "\u064e", "\u05b8", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
        "\u202b", "\u2067", "\u061c", "\ufeff", "\u2060", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2028",
    ]
    rng = random.Random(1234)
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        once = normalize(text)
        assert normalize(once) == once
        assert unicodedata.is_normalized("NFC", once)


def test_normalize_seeds_idempotent():
    for path in SEEDS.glob("*.txt"):
        once = normalize(path.read_text(encoding="utf-8"))
        assert normalize(once) == once


# --------------------------------------------------------------------------------------------------
# clean_document on the real seeds
# --------------------------------------------------------------------------------------------------

SEED_EXPECTATIONS = {
    "000": (
        "\n",
        "https://tuoitre.vn/tong-bi-thu-to-lam-hoi-dam-hep-voi-tong-thong-nga-putin-20250510175614884.htm",
    ),
    "001": (
        "\n\n",
        "https://vietnamnet.vn/tong-bi-thu-viet-nam-dac-biet-coi-trong-quan-he-voi-nga-2399238.html",
    ),
    "002": (
        "\n",
        "https://vietnamnet.vn/tong-bi-thu-to-lam-se-tham-4-nuoc-du-le-duyet-binh-chien-thang-tai-nga-2397143.html",
    ),
    "003": ("\n\n", None),
    "004": ("\n\n", None),
}


@pytest.mark.parametrize("prefix", sorted(SEED_EXPECTATIONS))
def test_seed_separator_and_source(prefix):
    separator, url = SEED_EXPECTATIONS[prefix]
    doc = clean_document(seed(prefix))
    assert isinstance(doc, CleanedDocument)
    assert doc.separator == separator
    assert doc.source_url == url
    for para in doc.paragraphs:
        assert para and para == para.strip()
        assert "http" not in para
        assert not para.startswith(("المصدر", "מקור", "Source"))


@pytest.mark.parametrize("prefix", sorted(SEED_EXPECTATIONS))
def test_seed_nothing_real_is_lost(prefix):
    """Every paragraph is a source line, in source order, and every dropped line is accounted for."""
    raw = seed(prefix)
    lines = [line for line in normalize(raw).split("\n") if line]
    doc = clean_document(raw)
    it = iter(lines)
    for para in doc.paragraphs:
        assert any(para == line for line in it), para  # subsequence of the source lines
    assert len(lines) - len(doc.paragraphs) == len(doc.removed)


def test_seed_000_hebrew_boilerplate():
    doc = clean_document(seed("000"))
    assert "תגובה (0)" not in doc.paragraphs
    assert "Tuoitre.vn" not in doc.paragraphs
    assert "comment counter: תגובה (0)" in doc.removed
    assert "site name: Tuoitre.vn" in doc.removed
    assert len(doc.paragraphs) == 14
    # the photo credit line is a real (translatable) caption sentence and stays
    assert doc.paragraphs[0].endswith("צילום: VNA")


def test_seed_001_image_caption():
    doc = clean_document(seed("001"))
    assert not any(".jpg" in p for p in doc.paragraphs)
    assert any(r.startswith("image caption:") and "1746747632.jpg" in r for r in doc.removed)
    # the caption's text line (what the photo shows) is content, and stays
    assert any(p.endswith("الصورة: VNA") for p in doc.paragraphs)
    assert len(doc.paragraphs) == 15


def test_seed_002_comment_counter():
    doc = clean_document(seed("002"))
    assert "تعليق (0)" not in doc.paragraphs
    assert "comment counter: تعليق (0)" in doc.removed
    assert len(doc.paragraphs) == 13


def test_seed_003_duplicates_and_caption():
    doc = clean_document(seed("003"))
    brics = "روسيا تدعم انضمام فيتنام إلى مجموعة البريكس بالشكل المناسب."
    headline = "الأمين العام نجوين فو ترونج يجري محادثات هاتفية رفيعة المستوى مع الرئيس الروسي بوتين"
    assert doc.paragraphs.count(brics) == 1
    assert doc.paragraphs.count(headline) == 1
    # the paragraph glued to the headline by a single newline is still its own paragraph
    assert "روسيا تدعم مشاركة فيتنام في مجموعة البريكس، بالشكل الذي يناسب اختيار فيتنام." in doc.paragraphs
    assert not any(".jpeg" in p for p in doc.paragraphs)
    assert sum(r.startswith("duplicate paragraph:") for r in doc.removed) == 2
    assert doc.source_url is None


def test_seed_004_ads_bare_source_and_repeated_headline():
    doc = clean_document(seed("004"))
    headline = "ووصف وزير خارجية فيتنام زيارة بوتين بأنها قوة دافعة جديدة للتعاون بين الدول"
    assert doc.paragraphs[0] == headline
    assert doc.paragraphs.count(headline) == 1
    assert not any("[ad_" in p for p in doc.paragraphs)
    assert "المصدر" not in doc.paragraphs
    assert doc.source_url is None
    assert "ad marker: [ad_1]" in doc.removed
    assert "ad marker: [ad_2]" in doc.removed
    assert "source line: المصدر" in doc.removed
    assert len(doc.paragraphs) == 7


# --------------------------------------------------------------------------------------------------
# clean_document rules on synthetic input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["تعليق (0)", "תגובה (0)", "Comments (3)", "تعليقات (12)", "comment (1)", "תגובות (25)", "12 تعليقات",
     "التعليقات (٣)"],
)
def test_comment_counters_removed(line):
    doc = clean_document(f"فقرة أولى.\n{line}\nفقرة ثانية.")
    assert doc.paragraphs == ["فقرة أولى.", "فقرة ثانية."]
    assert doc.removed == [f"comment counter: {line}"]


@pytest.mark.parametrize(
    ("line", "url"),
    [
        ("Source: https://example.com/a?b=1", "https://example.com/a?b=1"),
        ("SOURCE : <https://example.com/x>", "https://example.com/x"),
        ("Source: https://example.com/x.html.", "https://example.com/x.html"),
        ("المصدر: https://vietnamnet.vn/a.html", "https://vietnamnet.vn/a.html"),
        ("מקור: https://tuoitre.vn/b.htm", "https://tuoitre.vn/b.htm"),
        ("مصدر: www.example.org/story", "www.example.org/story"),
        ("المصدر", None),
        ("Source:", None),
        ("מקור", None),
    ],
)
def test_source_line(line, url):
    doc = clean_document(f"first paragraph\n{line}")
    assert doc.paragraphs == ["first paragraph"]
    assert doc.source_url == url


def test_first_source_url_wins_and_others_are_recorded():
    doc = clean_document("text\nSource: https://a.example/1\nالمصدر: https://b.example/2")
    assert doc.source_url == "https://a.example/1"
    assert "additional source url: https://b.example/2" in doc.removed


@pytest.mark.parametrize(
    "line",
    [
        "The source said the talks were productive.",
        "قال المصدر إن المحادثات كانت مثمرة.",
        "לדברי מקור בכיר, השיחות היו פוריות.",
        "Source: Reuters",
        "المصدر: وكالة الأنباء الفيتنامية",
        "The leaked file cover.jpg was posted online, officials said.",
        "Comments (3) were closed after the article went viral.",
        "See https://example.com/report for the full report.",
    ],
)
def test_real_content_is_kept(line):
    doc = clean_document(line)
    assert doc.paragraphs == [line]
    assert doc.removed == []
    assert doc.source_url is None


@pytest.mark.parametrize(
    "line",
    ["السيد بوتن 17151391638251627662991.jpeg", "فنا بوتال تونغ بي ثو إلى لام ح 7041 3043 1746747632.jpg",
     "photo.PNG", "Putin arrives in Hanoi putin-hanoi_2024.webp?w=800"],
)
def test_image_caption_lines_removed(line):
    doc = clean_document(f"before\n{line}\nafter")
    assert doc.paragraphs == ["before", "after"]
    assert doc.removed[0].startswith("image caption:")


def test_long_paragraph_ending_in_file_name_keeps_its_text():
    body = "وأكد الأمين العام تو لام أن هذه الزيارة توضح أهمية الحزب والدولة الفيتناميين. " * 4
    doc = clean_document(body + "1746747632.jpg")
    assert doc.paragraphs == [body.strip()]
    assert doc.removed == ["image file name: 1746747632.jpg"]


def test_ad_markers_anywhere():
    doc = clean_document("[ad_1]\nreal text [AD_12] continues\n[ ad_3 ]")
    assert doc.paragraphs == ["real text continues"]
    assert doc.removed == ["ad marker: [ad_1]", "ad marker: [AD_12]", "ad marker: [ ad_3 ]"]


def test_consecutive_duplicates_only():
    doc = clean_document("A\n\nA\n\n[ad_1]\n\na\n\nB\n\nA")
    assert doc.paragraphs == ["A", "B", "A"]
    assert sum(r.startswith("duplicate paragraph") for r in doc.removed) == 2


def test_separator_detection():
    assert clean_document("one\ntwo\nthree").separator == "\n"
    assert clean_document("one\n\ntwo\n\n\nthree").separator == "\n\n"
    assert clean_document("one\n\ntwo\nthree\n\nfour").separator == "\n\n"
    assert clean_document("single paragraph").separator == "\n"


def test_empty_and_boilerplate_only():
    assert clean_document("") == CleanedDocument([], "\n", None, [])
    doc = clean_document("[ad_1]\n\nتعليق (0)\n\nالمصدر")
    assert doc.paragraphs == []
    assert len(doc.removed) == 3


def test_hard_wrapped_block_is_unwrapped_but_headlines_are_not():
    wrapped = (
        "The general secretary arrived in Moscow on Thursday for an\n"
        "official visit that both governments described as a milestone\n"
        "in relations between the two countries, officials said\n"
        "on Friday."
    )
    doc = clean_document(f"Headline without a period\n\n{wrapped}\n\nNext paragraph.")
    assert doc.separator == "\n\n"
    assert doc.paragraphs == ["Headline without a period", " ".join(wrapped.split("\n")), "Next paragraph."]
    # two lines in one block (headline glued to a paragraph, as in seed 003) stay separate
    doc = clean_document("Para one.\n\nShort headline\nBody sentence that follows the headline.\n\nEnd.")
    assert doc.paragraphs == ["Para one.", "Short headline", "Body sentence that follows the headline.", "End."]
    # lists are not unwrapped
    items = "- first item of the list here\n- second item of the list here\n- third item of the list"
    assert clean_document(f"Intro.\n\n{items}").paragraphs == ["Intro.", *items.split("\n")]


def test_join_paragraphs():
    assert join_paragraphs(["a", "b"], "\n\n") == "a\n\nb"
    assert join_paragraphs(["a", "", "  ", " b "], "\n") == "a\nb"
    doc = clean_document(seed("001"))
    assert join_paragraphs(doc.paragraphs, doc.separator).split("\n\n") == doc.paragraphs


# --------------------------------------------------------------------------------------------------
# split_sentences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "lang", "low", "high"),
    [("000", "he", 16, 22), ("001", "ar", 18, 25), ("002", "ar", 17, 24), ("003", "ar", 25, 33),
     ("004", "ar", 12, 18)],
)
def test_segment_seeds(prefix, lang, low, high):
    doc = clean_document(seed(prefix))
    total = 0
    for para in doc.paragraphs:
        sentences = split_sentences(para, lang)
        assert sentences, para
        assert " ".join(sentences).split() == para.split()  # nothing lost, nothing reordered
        assert all(s == s.strip() and s for s in sentences)
        assert all(any(ch.isalpha() for ch in s) for s in sentences)  # no punctuation-only pieces
        total += len(sentences)
    assert low <= total <= high
    assert total > len(doc.paragraphs)  # some paragraphs really are split


def test_segment_hebrew_seed_details():
    doc = clean_document(seed("000"))
    sentences = split_sentences(doc.paragraphs[9], "he")
    assert len(sentences) == 3
    assert sentences[0].endswith("בהשוואה לשנת 2023.")
    # a quotation containing a full stop stays one sentence
    quoted = split_sentences(doc.paragraphs[5], "he")
    assert len(quoted) == 1 and quoted[0].startswith('"אנו')


def test_segment_arabic_seed_details():
    doc = clean_document(seed("002"))
    # "ك. توكاييف": a single-letter initial does not end a sentence
    assert split_sentences(doc.paragraphs[1], "ar") == [doc.paragraphs[1]]
    doc4 = clean_document(seed("004"))
    quote = split_sentences(doc4.paragraphs[2], "ar")
    assert len(quote) == 1 and quote[0].endswith("”. .")  # stray "." stays attached


def test_segment_arabic_punctuation():
    text = "هل ستزور موسكو هذا العام؟ نعم! سأزورها في مايو. وماذا بعد…"
    assert split_sentences(text, "ar") == ["هل ستزور موسكو هذا العام؟", "نعم!", "سأزورها في مايو.", "وماذا بعد…"]


def test_segment_hebrew_gershayim():
    text = 'צה"ל הודיע על כך בבוקר. ארה"ב הגיבה בחריפות. השיחות יימשכו מחר.'
    assert split_sentences(text, "he") == ['צה"ל הודיע על כך בבוקר.', 'ארה"ב הגיבה בחריפות.', "השיחות יימשכו מחר."]


def test_segment_never_splits_inside_a_word():
    text = "انتهت الجلسة.وقال الوزير إن المحادثات مثمرة."
    sentences = split_sentences(text, "ar")
    assert " ".join(sentences).split() == text.split()


def test_segment_edge_cases():
    assert split_sentences("", "ar") == []
    assert split_sentences("   \n ", "he") == []
    assert split_sentences("Hello there. General Kenobi.", "en") == ["Hello there.", "General Kenobi."]
    assert split_sentences("Hi. There.", "und") == ["Hi.", "There."]
    assert split_sentences("שלום. עולם.", "he-IL") == ["שלום.", "עולם."]


# --------------------------------------------------------------------------------------------------
# split_to_fit
# --------------------------------------------------------------------------------------------------


class Counter:
    """A token counter that records how often it is called and on how many characters."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.fn(text)


def words(text: str) -> int:
    return len(text.split())


def test_split_to_fit_short_sentence_untouched():
    counter = Counter(words)
    assert split_to_fit("  قال الوزير.  ", 10, counter) == ["قال الوزير."]
    assert counter.calls == 1
    assert split_to_fit("   ", 10, words) == []


def test_split_to_fit_prefers_arabic_clause_boundaries():
    sentence = clean_document(seed("002")).paragraphs[0]  # one 70-word sentence with many "،"
    counter = Counter(words)
    pieces = split_to_fit(sentence, 12, counter)
    assert len(pieces) > 1
    assert all(words(p) <= 12 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert all(p.endswith("،") for p in pieces[:-1])  # every clause here fits, so only clause cuts
    assert counter.calls <= 2 * len(pieces) + 2


def test_split_to_fit_falls_back_to_whitespace():
    sentence = " ".join(f"كلمة{i}" for i in range(95))
    pieces = split_to_fit(sentence, 10, words)
    assert all(words(p) <= 10 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert len(pieces) <= 12


def test_split_to_fit_clause_then_whitespace():
    long_clause = " ".join(["طويل"] * 30)
    sentence = f"قصير جدا، {long_clause}؛ ثم نهاية: انتهى - حقا"
    pieces = split_to_fit(sentence, 8, words)
    assert all(words(p) <= 8 for p in pieces)
    assert " ".join(pieces).split() == sentence.replace("،", "، ").split()
    assert pieces[0] == "قصير جدا،"


def test_split_to_fit_keeps_numbers_and_urls_whole():
    sentence = "بلغ 1,000 دولار في الساعة 10:30 حسب https://example.com/a:b ثم " + "كلمة " * 20
    pieces = split_to_fit(sentence, 6, words)
    joined = " ".join(pieces).split()
    assert "1,000" in joined and "10:30" in joined and "https://example.com/a:b" in joined


def test_split_to_fit_one_megabyte_without_spaces_is_fast():
    text = "كلمة" * 250_000  # 1,000,000 characters, no spaces, no punctuation
    counter = Counter(lambda s: len(s) // 4 + 1)  # ~sentencepiece density plus </s>
    start = time.perf_counter()
    pieces = split_to_fit(text, 512, counter)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed
    assert "".join(pieces) == text
    assert all(counter.fn(p) <= 512 for p in pieces)
    assert counter.calls <= 2 * len(pieces) + 2  # bounded calls per piece
    assert counter.chars <= 3 * len(text)  # linear work, no quadratic re-counting


def test_split_to_fit_one_megabyte_with_spaces_is_fast():
    text = " ".join(["كلمة"] * 200_000)
    counter = Counter(lambda s: len(s.split()))
    start = time.perf_counter()
    pieces = split_to_fit(text, 200, counter)
    assert time.perf_counter() - start < 2.0
    assert all(len(p.split()) <= 200 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert counter.calls <= 2 * len(pieces) + 2


def test_split_to_fit_non_additive_counter():
    # A counter with a per-call overhead (BOS/EOS) and uneven density (Latin costs more) still converges.
    def count(s: str) -> int:
        return 2 + sum(3 if ch.isascii() and ch.isalpha() else 1 for ch in s if not ch.isspace()) // 2

    sentence = "ABCDEFGHIJ" * 40 + "بببببببببب" * 40
    pieces = split_to_fit(sentence, 20, count)
    assert all(count(p) <= 20 for p in pieces)
    assert "".join(pieces) == sentence


def test_split_to_fit_keeps_combining_marks_with_their_letter():
    text = "بَ" * 5000  # beh + fatha, no spaces
    pieces = split_to_fit(text, 7, len)
    assert "".join(pieces) == text
    assert all(not unicodedata.combining(p[0]) for p in pieces)
    assert all(len(p) <= 7 for p in pieces)


def test_split_to_fit_rejects_impossible_limits():
    with pytest.raises(ValueError):
        split_to_fit("abc def", 0, words)
    with pytest.raises(ValueError):
        split_to_fit("abc", 1, lambda s: len(s) + 1)  # even one character costs 2 tokens
