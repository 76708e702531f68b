"""Glossaries: pin how names and terms are translated (`بوتين -> Putin`, `טו לאם -> To Lam`).

Matching is on normalised text, because news spells the same name many ways: Arabic vowel marks, alef and ya/alef
maqsura variants and ta marbuta are folded, Hebrew points are dropped, Latin is lower-cased; and a name carries the
clitics the languages attach to words: Arabic و/ف (and), ب/ل/ك (in, to, like) and ال (the), with لل for ل+ال; Hebrew
ו ש כש מ ה ב כ ל, with an optional hyphen or maqaf (ב-טו לאם). A term that itself starts with ال also matches
without it (القاهرة in بالقاهرة and للقاهرة).

Protection: each matched term is replaced, before translation, by its English rendering, and the prefix is kept
before it as a word of its own (ب Putin): the English term is the placeholder. Why this and not a constrained decode
or numbered placeholders: CTranslate2 has no lexical constraints (only a target prefix) and transformers 5 dropped
`force_words_ids` constrained beam search, so a constrained decode would work on neither backend; numbered tags
(`__T1__`, `<x1>`) are not in the OPUS-MT sentencepiece vocabularies, are cut into meaningless pieces, and a model
never trained on them drops or mangles them, leaving nothing to restore and no word in their place. A Latin-script
name inside Arabic or Hebrew is ordinary input for these models (they copy names, brands and URLs they cannot
translate), it tells the model what stands there (a name, singular), so the words around it come out right, and
when the model does alter it the output still holds a recognisable form. Restoration then looks for the English
term in the output and, when the model changed its case, spacing or punctuation, puts the exact glossary form back.
Each applied term is reported with whether it made it into the output, so a term the model dropped is visible,
never claimed.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from service.errors import InvalidGlossary

#: Arabic harakat, superscript alef and tatweel; Hebrew points and cantillation (not maqaf U+05BE, sof pasuq, ...).
_DROPPED = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u0640\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7]")
_FOLDED = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "׳": "'", "’": "'", "״": '"'})
_ARABIC = re.compile("[\u0600-\u06ff]")
_HEBREW = re.compile("[\u0590-\u05ff]")
#: Clitics a name can carry, in normalised form (see the module docstring). Lazy, so the shortest prefix is tried
#: first: a term that itself starts with ال, ل or ו keeps those letters rather than losing them to the prefix.
_PREFIXES = {
    "ar": "[وف]??(?:[بكل])??(?:ال|ل)??",
    "he": "ו??(?:כש|ש)??מ??[הבכל]??",
}
_ARTICLES = {"ar": "ال", "he": "ה"}
_HYPHENS = "[-\u05be]?"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def term_language(source: str) -> str:
    """The language of a source term, from its script: Arabic or Hebrew letters."""
    if _HEBREW.search(source):
        return "he"
    if _ARABIC.search(source):
        return "ar"
    raise InvalidGlossary(f"glossary term {source!r} has no Arabic or Hebrew letters; source terms are Arabic or "
                          "Hebrew, targets English")


def normalise(text: str) -> tuple[str, list[int]]:
    """Text as matching sees it, and for each of its characters the index of the original one it came from."""
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(unicodedata.normalize("NFC", text) if not text.isascii() else text):
        if _DROPPED.match(char):
            continue
        char = char.translate(_FOLDED)
        lower = char.lower()
        out.append(lower if len(lower) == 1 else char)
        origin.append(index)
    return "".join(out), origin


def _normalised(text: str) -> str:
    return " ".join(normalise(text)[0].split())


@dataclass(frozen=True)
class Term:
    source: str
    target: str

    @property
    def language(self) -> str:
        return term_language(self.source)


@dataclass(frozen=True)
class AppliedTerm:
    """A term found in a sentence: `matched` is the text as written there (clitics excluded)."""

    matched: str
    source: str
    target: str


@dataclass(frozen=True)
class Protected:
    """A sentence ready for the model: glossary terms replaced by their English renderings."""

    text: str
    applied: tuple[AppliedTerm, ...]


def parse_terms(pairs: Iterable[tuple[str, str]]) -> tuple[Term, ...]:
    """Validated terms: both sides non-empty, the source Arabic or Hebrew; the last of duplicate sources wins."""
    terms: dict[str, Term] = {}
    for number, (source, target) in enumerate(pairs, start=1):
        source, target = " ".join(source.split()), " ".join(target.split())
        if not source or not target:
            raise InvalidGlossary(f"glossary entry {number} needs both a source term and an English term")
        if _LONE_SURROGATE.search(source + target):  # JSON can carry one; no file or digest can hold it
            raise InvalidGlossary(f"glossary entry {number} is not valid Unicode (a lone surrogate)")
        term_language(source)
        terms[_normalised(source)] = Term(source, target)
    if not terms:
        raise InvalidGlossary("the glossary has no terms")
    return tuple(terms.values())


@dataclass(frozen=True)
class Glossary:
    """Terms by source language; `name` is None for a glossary sent inline with a request."""

    terms: tuple[Term, ...]
    name: str | None = None

    @cached_property
    def digest(self) -> str:
        """Content hash: part of the cache key of every sentence the glossary changed, and of articles using it."""
        canonical = sorted((_normalised(t.source), t.target) for t in self.terms)
        return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]

    @cached_property
    def _matchers(self) -> dict[str, tuple[re.Pattern[str], dict[str, Term]]]:
        matchers = {}
        for language, prefix in _PREFIXES.items():
            lookup: dict[str, Term] = {}
            for term in self.terms:
                if term.language != language:
                    continue
                core = _normalised(term.source)
                lookup[core] = term
                article = _ARTICLES[language]
                if core.startswith(article) and len(core) > len(article) + 1:
                    lookup.setdefault(core[len(article):], term)
            if not lookup:
                continue
            alternatives = "|".join(r"\s+".join(map(re.escape, core.split()))
                                    for core in sorted(lookup, key=len, reverse=True))
            pattern = re.compile(rf"(?<!\w)(?P<prefix>{prefix}){_HYPHENS}(?P<term>{alternatives})(?!\w)")
            matchers[language] = (pattern, lookup)
        return matchers

    def protect(self, sentence: str, language: str) -> Protected:
        """`sentence` with every term of `language` found in it replaced by its English term (module docstring)."""
        matcher = self._matchers.get(language)
        if matcher is None:
            return Protected(sentence, ())
        pattern, lookup = matcher
        normalised, origin = normalise(sentence)
        pieces: list[str] = []
        applied: list[AppliedTerm] = []
        done = 0  # index in `sentence` up to which it has been copied
        for match in pattern.finditer(normalised):
            term = lookup[" ".join(match["term"].split())]
            start, term_start = origin[match.start()], origin[match.start("term")]
            end = origin[match.end() - 1] + 1
            prefix = sentence[start:term_start].rstrip("-\u05be")
            pieces.append(sentence[done:start])
            pieces.append(f"{prefix} {term.target}" if prefix else term.target)
            applied.append(AppliedTerm(sentence[term_start:end], term.source, term.target))
            done = end
        if not applied:
            return Protected(sentence, ())
        pieces.append(sentence[done:])
        return Protected("".join(pieces), tuple(applied))


def restore(translation: str, applied: Iterable[AppliedTerm]) -> tuple[str, list[bool]]:
    """The translation with each applied English term in its exact glossary form, and for each applied term
    whether it is in the output. A term the model wrote with other case, spacing or punctuation (`PUTIN`,
    `To-Lam`) is put back as written in the glossary; one it dropped or translated away stays missing."""
    applied = list(applied)
    for target in dict.fromkeys(term.target for term in applied):
        if target in translation:
            continue
        letters = [re.escape(char) for char in target if char.isalnum()]
        if letters:
            loose = re.compile(r"(?<!\w)" + r"[\s\-'’.]*".join(letters) + r"(?!\w)", re.IGNORECASE)
            translation = loose.sub(target.replace("\\", "\\\\"), translation)  # the exact form, taken literally
    return translation, [term.target in translation for term in applied]
