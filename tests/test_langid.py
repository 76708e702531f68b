"""Tests for service.langid on the real seeds and on hand-written Persian, Urdu and other samples."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.text import langid
from service.text.cleaning import clean_document, normalize
from service.text.langid import Detection, detect_language, detect_paragraphs

SEEDS = Path(__file__).parent.parent / "seeds"

# Persian news prose (IRNA / BBC Persian register), with the ZWNJ (U+200C) real Persian text contains.
PERSIAN = [
    "به گزارش خبرگزاری جمهوری اسلامی، وزیر امور خارجه کشورمان صبح امروز برای شرکت در نشست وزیران "
    "خارجه کشورهای عضو سازمان همکاری اسلامی وارد استانبول شد.",
    "سخنگوی دولت در نشست خبری هفتگی خود گفت که لایحه بودجه سال آینده تا پایان آذرماه به مجلس شورای "
    "اسلامی تقدیم خواهد شد.",
    "بر اساس اعلام سازمان هواشناسی، از فردا سامانه بارشی جدیدی وارد کشور می\u200cشود و در بیشتر "
    "استان\u200cهای شمالی و غربی باران و برف پیش\u200cبینی شده است.",
    "نرخ تورم نقطه به نقطه در ماه گذشته به ۳۲ درصد رسید که نسبت به ماه قبل کاهش نشان می\u200cدهد.",
    "رئیس\u200cجمهور روسیه در دیدار با همتای ویتنامی خود بر گسترش همکاری\u200cهای اقتصادی و انرژی میان "
    "دو کشور تأکید کرد.",
    "پلیس راهور تهران از محدودیت\u200cهای ترافیکی در برخی خیابان\u200cهای مرکزی شهر به مناسبت برگزاری "
    "این مراسم خبر داد.",
    "تیم ملی فوتبال ایران در دیدار دوستانه مقابل تیم ملی ازبکستان با نتیجه دو بر یک به پیروزی رسید.",
    "وزیر بهداشت اعلام کرد که واکسیناسیون کودکان زیر پنج سال از هفته آینده در همه مراکز درمانی آغاز "
    "می\u200cشود.",
]

# Urdu news prose (Jang / Dawn Urdu register).
URDU = [
    "وزیراعظم نے کہا ہے کہ حکومت مہنگائی پر قابو پانے کے لیے تمام ممکنہ اقدامات کر رہی ہے اور عوام کو "
    "جلد ریلیف ملے گا۔",
    "محکمہ موسمیات کے مطابق آئندہ چوبیس گھنٹوں کے دوران ملک کے بیشتر علاقوں میں موسم گرم اور خشک "
    "رہنے کا امکان ہے۔",
    "پاکستان اور چین کے درمیان اقتصادی راہداری کے منصوبوں پر کام تیزی سے جاری ہے، وزیر منصوبہ بندی "
    "نے پریس کانفرنس میں بتایا۔",
    "کراچی میں شدید بارش کے بعد کئی سڑکیں زیر آب آ گئیں اور شہریوں کو شدید مشکلات کا سامنا کرنا پڑا۔",
    "سپریم کورٹ نے کیس کی سماعت اگلے ہفتے تک ملتوی کر دی۔",
    "لاہور میں ہونے والے کرکٹ میچ میں پاکستان نے سری لنکا کو پانچ وکٹوں سے شکست دے دی۔",
    "وفاقی وزیر خزانہ نے قومی اسمبلی میں بجٹ پیش کرتے ہوئے بتایا کہ ترقیاتی منصوبوں کے لیے اضافی رقم "
    "مختص کی گئی ہے۔",
    "پولیس کا کہنا ہے کہ واقعے کی تحقیقات جاری ہیں اور ملزمان کو جلد گرفتار کر لیا جائے گا۔",
]

ENGLISH = [
    "The minister said the talks had been productive and that both sides would meet again next month.",
    "Trade between the two countries reached 4.58 billion dollars in 2024, up 26.1% on the previous year.",
    "Hello world",
    "Breaking news",
    "Prime Minister",
    "in Moscow on Friday",
]


def seed(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("prefix", "lang"), [("000", "he"), ("001", "ar"), ("002", "ar"), ("003", "ar"),
                                              ("004", "ar")])
def test_seeds_whole_document(prefix, lang):
    det = detect_language(seed(prefix))
    assert det.lang == lang
    assert det.confidence > 0.9


@pytest.mark.parametrize(("prefix", "lang"), [("000", "he"), ("001", "ar"), ("002", "ar"), ("003", "ar"),
                                              ("004", "ar")])
def test_seeds_every_paragraph(prefix, lang):
    paragraphs = clean_document(seed(prefix)).paragraphs
    detections = detect_paragraphs(paragraphs)
    assert len(detections) == len(paragraphs)
    assert {d.lang for d in detections} == {lang}
    assert all(0.0 <= d.confidence <= 1.0 for d in detections)


@pytest.mark.parametrize("sentence", PERSIAN)
def test_persian_sentences(sentence):
    assert detect_language(sentence).lang == "fa"
    assert detect_language(normalize(sentence)).lang == "fa"  # also without ZWNJ


@pytest.mark.parametrize("sentence", URDU)
def test_urdu_sentences(sentence):
    assert detect_language(sentence).lang == "ur"


def test_persian_and_urdu_paragraphs_are_never_arabic():
    fa = detect_language(" ".join(PERSIAN))
    ur = detect_language(" ".join(URDU))
    assert (fa.lang, ur.lang) == ("fa", "ur")
    assert fa.confidence > 0.95 and ur.confidence > 0.95
    # short prefixes (three words) of every sample: never Arabic when a Persian/Urdu letter is present
    for sentence in PERSIAN + URDU:
        prefix = " ".join(sentence.split()[:3])
        if set(prefix) & set("پچژگکیٹڈڑںےہھ"):
            assert detect_language(prefix).lang != "ar", prefix


def test_persian_urdu_with_latin_names_numbers_and_urls():
    fa = "رئیس\u200cجمهور در گفتگو با خبرگزاری Reuters گفت که ایران در سال 2025 با IAEA همکاری خواهد کرد."
    ur = ("وزیراعظم شہباز شریف نے سماجی رابطے کی ویب سائٹ X (سابق ٹویٹر) پر کہا کہ 2025 میں معیشت بہتر "
          "ہوگی۔ https://pmo.gov.pk")
    assert detect_language(fa).lang == "fa"
    assert detect_language(ur).lang == "ur"


def test_other_arabic_script_languages_are_not_arabic():
    pashto = "د افغانستان په ختیځو سیمو کې د سیلابونو له امله لسګونه کسان مړه شوي دي."
    sorani = "سەرۆکی هەرێمی کوردستان ئەمڕۆ لە هەولێر پێشوازی لە شاندێکی ئەوروپی کرد."
    assert detect_language(pashto).lang == "ps"
    assert detect_language(sorani).lang == "ku"


@pytest.mark.parametrize("text", ENGLISH)
def test_english(text):
    assert detect_language(text).lang == "en"


@pytest.mark.parametrize(
    ("text", "lang"),
    [("Le président a annoncé de nouvelles mesures.", "fr"),
     ("Der Bundeskanzler hat heute gesprochen.", "de"),
     ("Президент России прибыл в Ханой.", "ru"),
     ("Tổng Bí thư Tô Lâm hội đàm với Tổng thống Nga.", "vi"),
     ("Cumhurbaşkanı bugün açıklama yaptı.", "tr")],
)
def test_other_languages_still_recognised(text, lang):
    assert detect_language(text).lang == lang


@pytest.mark.parametrize("text", ["وزير الخارجية", "الرئيس بوتين", "السلام عليكم", "اقرأ أيضا", "الأمين العام تو لام"])
def test_short_arabic(text):
    assert detect_language(text).lang == "ar"


@pytest.mark.parametrize("text", ["שלום", "ראש הממשלה", "משרד החוץ", "צילום: VNA", 'צה"ל הודיע'])
def test_short_hebrew(text):
    assert detect_language(text).lang == "he"


@pytest.mark.parametrize("text", ["", "   \n", "12345 - 678.", "!!! ???", "2024-2030", "https://tuoitre.vn/a-b-1.htm",
                                  "info@example.com 050-1234567", "١٢٣ ٤٥٦"])
def test_undetermined(text):
    assert detect_language(text) == Detection("und", 0.0)


def test_robust_to_latin_names_urls_numbers_and_invisibles():
    text = ("\u200fوخاصة في إطار الآليات تحت رعاية رابطة دول جنوب شرق آسيا (ASEAN)، مثل قمة شرق آسيا "
            "https://vietnamnet.vn/x-2397143.html في 22/06/2024 بحضور VNA و TASS\u200f")
    det = detect_language(text)
    assert det.lang == "ar"
    assert det.confidence > 0.6
    assert detect_language("الصورة: VNA").lang == "ar"


def test_mixed_script_lowers_confidence():
    pure = detect_language("وزارة الخارجية الروسية")
    mixed = detect_language("وزارة الخارجية الروسية Ministry of Foreign Affairs of Russia")
    assert mixed.lang == "en"  # Latin letters dominate
    assert mixed.confidence < pure.confidence


def test_orthography_tie_break():
    tie_break = langid._orthography_tie_break
    assert tie_break({"ar": 0.6, "fa": 0.3, "ur": 0.1}, "گفت") == "fa"
    assert tie_break({"ar": 0.6, "fa": 0.3, "ur": 0.1}, "ٹیم") == "ur"
    assert tie_break({"ar": 0.6, "fa": 0.4}, "قال") is None  # no marker letters: detector decides
    assert tie_break({"fa": 0.7, "ar": 0.3}, "مدرسة") == "ar"
    assert tie_break({"ar": 0.99, "fa": 0.01}, "گفت") is None  # fa is not plausible: no override
    # end to end: single words where the model alone is undecided
    assert detect_language("علاقوں").lang == "ur"
    assert detect_language("غربی").lang == "fa"


def test_identifier_is_cached_and_fast():
    first = langid._identifier()
    assert langid._identifier() is first
    text = seed("001")
    start = time.perf_counter()
    for _ in range(20):
        detect_language(text)
    assert (time.perf_counter() - start) / 20 < 0.05


def test_huge_input_is_bounded():
    text = seed("002") * 400  # ~2.4 MB
    langid._identifier()  # the budget is for detection: loading the detector (first use in a process) is not timed
    start = time.perf_counter()
    assert detect_language(text).lang == "ar"
    assert time.perf_counter() - start < 1.0
