"""Language identification for incoming articles and paragraphs, with ``py3langid``.

``py3langid`` (a maintained fork of Marco Lui's langid.py, naive Bayes over byte n-grams) ships its
trained model *inside the wheel* (``py3langid/data/model.npz.xz``), so detection needs no download,
no network and no model directory, runs in about a millisecond per paragraph on a CPU, and is
deterministic.  That matters here because detection decides routing: Arabic goes to the Arabic model,
Hebrew to the Hebrew model, and everything else -- notably Persian and Urdu, which share the Arabic
script -- must be recognised as *not* Arabic instead of being fed to an Arabic translator.

How a text is classified:

1. URLs, e-mail addresses and digits are removed; they carry no language signal.
2. The dominant script of the letters is found (Arabic, Hebrew, Latin, Cyrillic, ...).  Letters of
   other scripts -- a Latin acronym such as ``(ASEAN)`` or ``VNA`` inside Arabic -- are dropped, and
   the confidence is scaled by the dominant script's share of the letters.
3. The detector, restricted to a curated set of ~70 languages (``LANGUAGES``), ranks the candidates.
   Only languages written in the dominant script compete, so the *detector* chooses between Arabic,
   Persian, Urdu, Pashto, Kurdish and Uyghur, while a Latin-script stray like Fulfulde or Pidgin can
   no longer win a two-word English string.  Labels the model splits finer than we route are folded
   (Egyptian ``arz`` and Moroccan ``ary`` into ``ar``, Biblical ``hbo`` into ``he``, Southern Kurdish
   ``sdh`` -- which is what the model calls Sorani text -- into ``ku``).  English gets a small prior
   over other Latin-script languages (see ``_PRIOR``) so two-word English strings are not called
   Lithuanian; Arabic gets none, so short Persian/Urdu is not pushed towards ``ar``.
4. Only when the detector is *not* decisive (short text), letters that one orthography has and
   another lacks break the tie: Persian/Urdu/Pashto/Kurdish letters absent from Arabic (پ چ ژ گ ک ی),
   Urdu-only letters (ٹ ڈ ڑ ں ے), Pashto-only and Sorani-only letters, and the Arabic ة ى.
5. A text with no letters at all is ``"und"`` with confidence 0.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from py3langid.langid import LanguageIdentifier

__all__ = ["LANGUAGES", "Detection", "detect_language", "detect_paragraphs"]


@dataclass(frozen=True)
class Detection:
    """Detected language (ISO 639-1, or ``"und"`` when the text has no letters) and its confidence."""

    lang: str
    confidence: float


# Candidate languages by script.  Restricting the model to these improves short-text accuracy (the
# full 140-label model calls "Hello world" Fulfulde) while still naming the common "other" languages.
_SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "ARABIC": ("ar", "arz", "ary", "fa", "ur", "ps", "ku", "sdh", "ug"),
    "HEBREW": ("he", "hbo"),
    "LATIN": (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "no", "da", "fi", "pl", "cs", "sk", "hu",
        "ro", "hr", "sr", "sl", "sq", "et", "lv", "lt", "ca", "af", "tr", "az", "uz", "ku", "id",
        "ms", "vi", "tl", "sw", "so", "ha",
    ),
    "CYRILLIC": ("ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "tg", "mn"),
    "GREEK": ("el",),
    "ARMENIAN": ("hy",),
    "GEORGIAN": ("ka",),
    "DEVANAGARI": ("hi", "mr", "ne"),
    "BENGALI": ("bn", "as"),
    "GURMUKHI": ("pa",),
    "GUJARATI": ("gu",),
    "ORIYA": ("or",),
    "TAMIL": ("ta",),
    "TELUGU": ("te",),
    "KANNADA": ("kn",),
    "MALAYALAM": ("ml",),
    "SINHALA": ("si",),
    "THAI": ("th",),
    "LAO": ("lo",),
    "KHMER": ("km",),
    "MYANMAR": ("my",),
    "ETHIOPIC": ("am",),
    "CJK": ("zh", "ja"),
    "HANGUL": ("ko",),
}
# Model labels reported under the code the rest of the service routes on.
_FOLD = {"arz": "ar", "ary": "ar", "hbo": "he", "sdh": "ku"}

#: Every label the identifier is restricted to (model labels, before folding).
LANGUAGES: tuple[str, ...] = tuple(dict.fromkeys(code for codes in _SCRIPT_LANGUAGES.values() for code in codes))

# Detection only needs a sample; bounding it keeps a pathological multi-megabyte input cheap.
_MAX_CHARS = 20_000
# Prior odds for languages this service mostly sees, applied only against same-script rivals.  Latin-script
# input to an English-target news service is overwhelmingly English already (pasted translations, wire
# copy), and on two-word strings the model's likelihoods are nearly flat ("Prime Minister" -> Lithuanian).
# The prior moves only such near-ties; a real French or Turkish sentence outweighs it by orders of
# magnitude.  No prior is given to Arabic: that would push short Persian or Urdu towards "ar".
_PRIOR = {"en": 5.0}
# Above this probability the detector's choice stands; below it, orthography may break the tie.
_DECISIVE = 0.9
# A tie-break may only promote a language the detector itself still finds plausible.
_PLAUSIBLE = 0.02

_URL_RE = re.compile(r"(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", re.IGNORECASE)
_DIGIT_RE = re.compile(r"\d+")
_SPACE_RE = re.compile(r"\s+")
# Invisible formatting characters that only add noise bytes (ZWNJ is kept: it is real Persian spelling).
_INVISIBLE_RE = re.compile("[\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\u061c\ufeff\u0640]")

# Orthography markers (tie-break only).
_PERSO_ARABIC = frozenset("پچژگکی")  # letters of Persian, Urdu, Pashto, Kurdish that Arabic lacks
_URDU_ONLY = frozenset("ٹڈڑںےۓہ")  # incl. heh goal U+06C1 (Persian and Arabic write U+0647)
_DO_CHASHMI = frozenset("ھ")  # U+06BE: Urdu aspirates (بھ، کھ) and Sorani h; not Arabic/Persian/Pashto
_PASHTO_ONLY = frozenset("ټډړږښځڅګېۍ")
_SORANI_ONLY = frozenset("ێۆڵڕە")
_ARABIC_ONLY = frozenset("ةى")
# For each language: marker sets its orthography does not use.
_FOREIGN_MARKERS: dict[str, tuple[frozenset[str], ...]] = {
    "ar": (_PERSO_ARABIC, _URDU_ONLY, _DO_CHASHMI, _PASHTO_ONLY, _SORANI_ONLY),
    "fa": (_URDU_ONLY, _DO_CHASHMI, _PASHTO_ONLY, _SORANI_ONLY, _ARABIC_ONLY),
    "ur": (_PASHTO_ONLY, _SORANI_ONLY, _ARABIC_ONLY),
    "ps": (_URDU_ONLY, _DO_CHASHMI, _SORANI_ONLY, _ARABIC_ONLY),
    "ku": (_URDU_ONLY, _PASHTO_ONLY, _ARABIC_ONLY),
}
_ALL_MARKERS = frozenset().union(*(m for ms in _FOREIGN_MARKERS.values() for m in ms))

_LOCK = threading.Lock()
_IDENTIFIER: LanguageIdentifier | None = None


def _identifier() -> LanguageIdentifier:
    """The process-wide identifier: unpacking the bundled model takes ~0.8 s, so it is done once.

    After ``set_languages`` the object is only read, so sharing it between threads is safe.
    """
    global _IDENTIFIER
    if _IDENTIFIER is None:
        with _LOCK:
            if _IDENTIFIER is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                ident.set_languages(list(LANGUAGES))
                _IDENTIFIER = ident
    return _IDENTIFIER


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    """Script of a letter, from its Unicode name (``ARABIC LETTER BEH`` -> ``ARABIC``)."""
    name = unicodedata.name(ch, "")
    if not name:
        return "UNKNOWN"
    first = name.split(" ", 1)[0]
    if first in ("HIRAGANA", "KATAKANA", "CJK"):
        return "CJK"
    if first in ("FULLWIDTH", "HALFWIDTH") and "LATIN" in name:
        return "LATIN"
    return first


def _prepare(text: str) -> tuple[str, str | None, float]:
    """Strip non-linguistic noise; return (text of the dominant script, that script, its letter share)."""
    text = _INVISIBLE_RE.sub("", text[:_MAX_CHARS])
    text = _DIGIT_RE.sub(" ", _URL_RE.sub(" ", text))
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            s = _script(ch)
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return "", None, 0.0
    script = max(counts, key=lambda s: counts[s])
    share = counts[script] / sum(counts.values())
    if share < 1.0:
        text = "".join(" " if ch.isalpha() and _script(ch) != script else ch for ch in text)
    return _SPACE_RE.sub(" ", text).strip(), script, share


def _orthography_tie_break(probs: dict[str, float], text: str) -> str | None:
    """Pick the most probable plausible language whose orthography admits every marker letter seen.

    Returns ``None`` when the letters say nothing (no markers, or no plausible candidate fits them).
    """
    letters = frozenset(text)
    if not letters & _ALL_MARKERS:
        return None
    fitting = [
        (p, lang)
        for lang, p in probs.items()
        if p >= _PLAUSIBLE and not any(letters & m for m in _FOREIGN_MARKERS.get(lang, ()))
    ]
    return max(fitting)[1] if fitting else None


def detect_language(text: str) -> Detection:
    """Detect the language of ``text`` (a paragraph or a whole article).

    Returns ISO 639-1 codes as the detector names them (``ar``, ``he``, ``en``, ``fa``, ``ur``, ...);
    ``"und"`` with confidence 0.0 when there are no letters (only digits, punctuation, URLs).
    ``confidence`` is the detector's normalised probability among same-script candidates, times the
    share of letters written in that script.
    """
    cleaned, script, share = _prepare(text)
    if script is None or not cleaned:
        return Detection("und", 0.0)

    ranked = _identifier().rank(cleaned)
    candidates = set(_SCRIPT_LANGUAGES.get(script, ()))
    if candidates:
        ranked = [(lang, p) for lang, p in ranked if lang in candidates]
    probs: dict[str, float] = {}
    for lang, p in ranked:
        code = _FOLD.get(lang, lang)
        probs[code] = probs.get(code, 0.0) + p * _PRIOR.get(code, 1.0)
    total = sum(probs.values())
    if total <= 0.0:  # no usable features at all: nothing to go on but the script
        return Detection("und", 0.0)
    probs = {lang: p / total for lang, p in probs.items()}

    best = max(probs, key=lambda lang: probs[lang])
    if script == "ARABIC" and probs[best] < _DECISIVE:
        chosen = _orthography_tie_break(probs, cleaned)
        if chosen is not None and chosen != best:
            # Renormalise over the languages whose spelling is consistent with the letters seen.
            letters = frozenset(cleaned)
            consistent = {
                lang: p
                for lang, p in probs.items()
                if not any(letters & m for m in _FOREIGN_MARKERS.get(lang, ()))
            }
            best = chosen
            probs = {lang: p / sum(consistent.values()) for lang, p in consistent.items()}
    return Detection(best, round(min(1.0, probs[best] * share), 6))


def detect_paragraphs(paragraphs: list[str]) -> list[Detection]:
    """Detect each paragraph independently (articles can mix languages, e.g. a quoted English line)."""
    return [detect_language(p) for p in paragraphs]
