"""Pure text processing for scraped Hebrew/Arabic news: normalise, clean, segment, and cut to size.

Nothing here does I/O or touches a model, so every step is deterministic and unit-testable on the
real scraped articles in ``seeds/``.  The pipeline is::

    clean_document(raw) -> paragraphs -> split_sentences(p, lang) -> split_to_fit(s, limit, counter)
    ... translate ...   -> join_paragraphs(translated, doc.separator)

Why ``sentencex`` for sentence segmentation
-------------------------------------------
``sentencex`` (Wikimedia, the segmenter behind MinT / Content Translation) is maintained, has no runtime
downloads and covers ~300 languages through a CLDR-based fallback chain, with real rules for Arabic
(``؟``, ``!``, ``.`` and Arabic quotation marks) and Hebrew.  Its output pieces concatenate back to the
exact input, so no text can be lost.  The alternatives are worse for this service: ``pysbd`` has Arabic
and Persian rules but no Hebrew at all, and NLTK's punkt needs a separate ``nltk.download`` of pickled
models (a network fetch at deploy time) and ships no Hebrew model either.

Two ``sentencex`` quirks are corrected here (see ``split_sentences``): an ASCII ``"`` used as Hebrew
gershayim (``צה"ל``, ``ארה"ב``) is taken for a quotation mark, which silently disables splitting
between two such abbreviations, and a single-letter initial (``ك. توكاييف``, ``د. محمد``) ends a
sentence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import sentencex

__all__ = [
    "CleanedDocument",
    "clean_document",
    "join_paragraphs",
    "normalize",
    "split_sentences",
    "split_to_fit",
]


@dataclass(frozen=True)
class CleanedDocument:
    """A scraped article reduced to the paragraphs worth translating.

    ``separator`` remembers how the source laid out paragraphs so the translation can be put back
    together in the same shape; ``removed`` keeps a human-readable trail of everything dropped so
    that an over-eager rule is visible in metadata instead of silently eating content.
    """

    paragraphs: list[str]
    separator: str
    source_url: str | None
    removed: list[str]


# --------------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------------

# Invisible characters that only carry rendering hints.  They break exact-match de-duplication, split
# words for tokenizers, and leak into translations as garbage, so they go:
#   bidi marks/embeddings/isolates: U+200E U+200F U+202A-U+202E U+2066-U+2069, Arabic letter mark U+061C;
#   zero-width: U+200B-U+200D, word joiner U+2060, BOM/ZWNBSP U+FEFF; soft hyphen U+00AD;
#   C0/C1 controls other than tab/newline (scraper debris).
# U+0640 tatweel is calligraphic stretching ("الـــسلام"); removing it restores the plain word.
_INVISIBLE_RE = re.compile(
    "[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c\u200b-\u200d\u2060\ufeff\u00ad\u0640"
    "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]"
)
# Everything Python's str.splitlines() treats as a line break becomes "\n" so paragraphs survive.
_LINEBREAK_RE = re.compile("\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Any run of horizontal whitespace (space, tab, NBSP, thin space, ideographic space ...).
_HSPACE_RE = re.compile(r"[^\S\n]+")


def normalize(text: str) -> str:
    """Return ``text`` in the canonical form every later step (and the cache key) relies on.

    Unicode NFC so that visually identical strings compare equal; invisible bidi/zero-width
    characters and tatweel removed; horizontal whitespace collapsed to one space and each line
    stripped; newlines kept because they carry the paragraph structure.  Invisible characters are
    removed *before* NFC so that a base letter and a combining mark separated by one of them still
    compose, which makes the function idempotent.
    """
    text = _LINEBREAK_RE.sub("\n", text)
    text = _INVISIBLE_RE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _HSPACE_RE.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n"))


# --------------------------------------------------------------------------------------------------
# boilerplate removal
# --------------------------------------------------------------------------------------------------

# "[ad_1]", "[ad_2]" ... left behind by WordPress ad plugins (seed 004).
_AD_MARKER_RE = re.compile(r"\[\s*ad[_\- ]?\d+\s*\]", re.IGNORECASE)

# A line ending in an image file name is an <img> alt/caption that survived scraping (seeds 001, 003):
#   "فنا بوتال تونغ بي ثو إلى لام ح 7041 3043 1746747632.jpg", "السيد بوتن 17151391638251627662991.jpeg".
# The file name must be the last token, so a sentence that merely mentions "photo.jpg" mid-way stays.
_IMAGE_FILE_RE = re.compile(
    r"(?:^|\s)(\S*[\w\-)]\.(?:jpe?g|png|gif|webp|bmp|tiff?|avif|heic|svg))(?:\?\S*)?\s*$",
    re.IGNORECASE,
)
# Longer than this, a line ending in a file name is treated as content with a glued-on file name:
# only the file name is cut.  Real captions in the seeds are well under it.
_CAPTION_MAX_CHARS = 200

# Comment counters rendered from the page chrome: "تعليق (0)", "תגובה (0)", "Comments (3)", "12 تعليقات".
_COMMENT_WORDS = r"(?:comments?|تعليق|تعليقات|التعليقات|תגובה|תגובות|התגובות)"
_COMMENT_RE = re.compile(
    rf"^(?:{_COMMENT_WORDS}\s*[:：]?\s*[(\[]?\s*\d+\s*[)\]]?|[(\[]?\d+[)\]]?\s*{_COMMENT_WORDS})$",
    re.IGNORECASE,
)

# "Source: URL", "المصدر: URL", "מקור: URL" (seeds 000-002), or the bare label with nothing after it
# (seed 004).  A label followed by a *name* ("Source: Reuters") is real attribution and is kept.
_SOURCE_WORDS = r"(?:source|sources|المصدر|مصدر|מקור|המקור)"
_URL = r"(?:https?://|www\.)[^\s<>\"']+"
_SOURCE_RE = re.compile(
    rf"^{_SOURCE_WORDS}\s*(?:[:：]\s*<?(?P<url>{_URL})>?\s*[.,;]?|[:：]?)$",
    re.IGNORECASE,
)

# A line that is nothing but a host name ("Tuoitre.vn", seed 000) is the publisher's signature.
# Full URLs with a path are left alone: they may be references the reader wants.
_SITE_NAME_RE = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z]{2,24}/?$", re.IGNORECASE
)

# Line ends that finish a sentence (for telling hard-wrapped text from one-paragraph-per-line text).
_TERMINAL_CHARS = ".!?؟。۔:…\"'”’»)]"
_LIST_MARKER_RE = re.compile(r"^(?:[-*•–—]\s|\d{1,3}[.)]\s)")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _classify_line(line: str, removed: list[str], sources: list[str]) -> str | None:
    """Return the line with boilerplate cut out, or ``None`` if the whole line is boilerplate."""
    if _AD_MARKER_RE.search(line):
        for marker in _AD_MARKER_RE.findall(line):
            removed.append(f"ad marker: {marker}")
        line = _HSPACE_RE.sub(" ", _AD_MARKER_RE.sub(" ", line)).strip()
        if not line:
            return None
    m = _SOURCE_RE.match(line)
    if m:
        if m.group("url"):
            sources.append(m.group("url").rstrip(".,;)"))
        removed.append(f"source line: {_short(line)}")
        return None
    if _COMMENT_RE.match(line):
        removed.append(f"comment counter: {line}")
        return None
    m = _IMAGE_FILE_RE.search(line)
    if m:
        if len(line) <= _CAPTION_MAX_CHARS:
            removed.append(f"image caption: {_short(line)}")
            return None
        removed.append(f"image file name: {m.group(1)}")
        line = line[: m.start(1)].rstrip()
    if _SITE_NAME_RE.match(line):
        removed.append(f"site name: {line}")
        return None
    return line


def _looks_hard_wrapped(lines: list[str]) -> bool:
    """Whether a blank-line-delimited block is one paragraph hard-wrapped at a fixed width.

    Scraped articles put one paragraph per line, so by default every line is a paragraph (seed 003
    has a headline glued under a paragraph with a single newline and must keep both).  Text pasted
    from e-mail or PDF instead breaks lines mid-sentence at a fixed column; translating those
    fragments one by one ruins the translation.  That shape is recognised conservatively: at least
    three lines, most of them ending mid-sentence, all but the last of similar width, no list items.
    """
    if len(lines) < 3 or any(_LIST_MARKER_RE.match(line) for line in lines):
        return False
    body = lines[:-1]
    open_ends = sum(1 for line in body if not line.endswith(tuple(_TERMINAL_CHARS)))
    widths = [len(line) for line in body]
    return (
        open_ends * 3 >= len(body) * 2
        and min(widths) >= 30
        and max(widths) - min(widths) <= 0.35 * max(widths)
    )


def clean_document(text: str) -> CleanedDocument:
    """Normalise a scraped article and drop the boilerplate the scrapers actually leave behind.

    Removed (each recorded in ``removed``): ``[ad_N]`` markers, image-caption lines ending in an image
    file name, comment counters, bare publisher host names, and the ``Source:``/``المصدر:``/``מקור:``
    line, whose URL becomes ``source_url``.  Consecutive duplicate paragraphs (a headline printed
    twice, blank lines and removed boilerplate in between ignored) are kept once.  Every rule matches
    whole lines of a specific shape, so a sentence that merely mentions "source" or a file name is
    never dropped.
    """
    lines = normalize(text).split("\n")

    # Blocks are runs of non-empty lines between blank lines; boilerplate goes line by line inside them.
    raw_blocks: list[list[str]] = [[]]
    for line in lines:
        if line:
            raw_blocks[-1].append(line)
        elif raw_blocks[-1]:
            raw_blocks.append([])
    removed: list[str] = []
    sources: list[str] = []
    blocks = [[c for c in (_classify_line(line, removed, sources) for line in block) if c] for block in raw_blocks]
    blocks = [b for b in blocks if b]

    # Layout: blank lines between blocks vs plain newlines inside them.  Only a document that uses blank
    # lines at all can contain hard-wrapped blocks (otherwise a wrapped-looking "block" is the whole text).
    wrapped = [len(blocks) > 1 and _looks_hard_wrapped(b) for b in blocks]
    blank_gaps = len(blocks) - 1
    plain_gaps = sum(len(b) - 1 for b, w in zip(blocks, wrapped, strict=True) if not w)
    separator = "\n\n" if blank_gaps and blank_gaps >= plain_gaps else "\n"

    candidates: list[str] = []
    for block, is_wrapped in zip(blocks, wrapped, strict=True):
        if is_wrapped:
            candidates.append(" ".join(block))
        else:
            candidates.extend(block)

    paragraphs: list[str] = []
    previous_key: str | None = None
    for para in candidates:
        key = para.casefold()
        if key == previous_key:
            removed.append(f"duplicate paragraph: {_short(para)}")
            continue
        paragraphs.append(para)
        previous_key = key

    for extra in sources[1:]:
        removed.append(f"additional source url: {extra}")
    return CleanedDocument(
        paragraphs=paragraphs,
        separator=separator,
        source_url=sources[0] if sources else None,
        removed=removed,
    )


def join_paragraphs(paragraphs: list[str], separator: str) -> str:
    """Reassemble (translated) paragraphs with the source document's separator.

    Empty or whitespace-only entries (e.g. a paragraph the model returned nothing for) are skipped so
    they do not turn into stray blank lines.
    """
    return separator.join(p.strip() for p in paragraphs if p and p.strip())


# --------------------------------------------------------------------------------------------------
# sentence segmentation
# --------------------------------------------------------------------------------------------------

_HEBREW_LETTER = "\u05d0-\u05ea"
# ASCII '"' between two Hebrew letters is gershayim (abbreviation mark), not a quotation mark.
_GERSHAYIM_RE = re.compile(rf'(?<=[{_HEBREW_LETTER}])"(?=[{_HEBREW_LETTER}])')
# A piece ending in a one-letter token plus "." is an initial or abbreviation ("ك.", "د.", "J."),
# not the end of a sentence.
_INITIAL_END_RE = re.compile(r"(?:^|[\s(\"'«“])[^\W\d_]\.\s*$")
_LANG_ALIASES = {"iw": "he", "ji": "yi", "in": "id", "und": "en", "": "en"}


def _segmenter_lang(lang: str) -> str:
    base = (lang or "").replace("_", "-").split("-")[0].lower()
    return _LANG_ALIASES.get(base, base)


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def split_sentences(paragraph: str, lang: str) -> list[str]:
    """Split one paragraph into sentences with ``sentencex``.

    The result is stripped, non-empty, and ``" ".join(result).split() == paragraph.split()``: only
    slices of the input are returned and boundaries are only accepted at whitespace, so nothing can
    be lost or reordered (a segmenter bug falls back to the whole paragraph rather than dropping text).
    On top of ``sentencex`` three repairs make the pieces better translation units:

    * ASCII gershayim in Hebrew abbreviations is masked while segmenting (``sentencex`` would pair
      the two ``"`` of ``צה"ל ... ארה"ב`` as quotes and never split between them);
    * a piece ending in a single-letter initial (``ك.``, ``د.``) is joined to the next one;
    * a piece with no letters -- stray punctuation such as the ``.`` after ``”.`` in seed 004, or a
      bare list number ``2.`` -- is attached to its neighbour instead of being sent alone.
    """
    if not paragraph or not paragraph.strip():
        return []
    masked = _GERSHAYIM_RE.sub("\u05f4", paragraph)  # same length, so offsets carry over
    try:
        pieces = sentencex.segment(_segmenter_lang(lang), masked)
    except Exception:  # pragma: no cover - defensive: a segmenter crash must not lose the paragraph
        pieces = [masked]
    if "".join(pieces) != masked:  # pragma: no cover - sentencex guarantees this today
        pieces = [masked]

    # Boundaries as offsets; keep only those that fall on whitespace (never split inside a word).
    spans: list[list[int]] = []
    pos = 0
    for piece in pieces:
        end = pos + len(piece)
        if spans and not (paragraph[pos - 1].isspace() or paragraph[pos].isspace()):
            spans[-1][1] = end
        else:
            spans.append([pos, end])
        pos = end
    spans = [s for s in spans if paragraph[s[0] : s[1]].strip()]

    merged: list[list[int]] = []
    for span in spans:
        text = paragraph[span[0] : span[1]]
        if merged:
            prev = paragraph[merged[-1][0] : merged[-1][1]]
            if not _has_alnum(text) or _INITIAL_END_RE.search(prev) or not _has_letters(prev):
                merged[-1][1] = span[1]
                continue
        merged.append(span)
    # A trailing letterless piece (e.g. a final list number) joins the previous sentence.
    if len(merged) > 1 and not _has_letters(paragraph[merged[-1][0] : merged[-1][1]]):
        last = merged.pop()  # popped first: `merged[-2][1] = merged.pop()[1]` indexes after the pop
        merged[-1][1] = last[1]

    result = [paragraph[a:b].strip() for a, b in merged]
    result = [r for r in result if r]
    if " ".join(result).split() != paragraph.split():  # pragma: no cover - invariant guard
        return [paragraph.strip()]
    return result


# --------------------------------------------------------------------------------------------------
# fitting sentences into the model's input limit
# --------------------------------------------------------------------------------------------------

# Clause boundaries, tried first.  Arabic comma/semicolon split even without a following space (they
# never occur inside numbers); "," ";" ":" only before whitespace so "1,000", "10:30" and URLs stay
# whole; dashes only when spaced, so "2024-2030" and "דו-צדדי" stay whole.
_CLAUSE_SPLIT_RE = re.compile(r"(?<=[،؛])\s*|(?<=[,;:])\s+|(?<=\s[-–—])\s+|(?<=\S[–—])\s+")
_LEVEL_CLAUSE, _LEVEL_SPACE, _LEVEL_CHAR = 0, 1, 2
# Pieces are packed to this fraction of the limit by *estimate* so that most of them fit on the first
# real count; the estimate is never trusted, every emitted piece is counted.
_FILL = 0.9


def _units(text: str, level: int) -> list[str]:
    if level == _LEVEL_CLAUSE:
        return [u.strip() for u in _CLAUSE_SPLIT_RE.split(text) if u.strip()]
    return text.split()


def _pack(units: list[str], total_tokens: int, text_len: int, budget: float) -> list[str]:
    """Group consecutive units into balanced pieces whose *estimated* size is at most ``budget``.

    Sizes are estimated from the parent's measured token density (tokens per character) instead of
    counting every unit, so the number of ``count_tokens`` calls stays proportional to the number of
    pieces, not words or clauses.
    """
    density = total_tokens / max(text_len, 1)
    k = max(2, math.ceil(total_tokens / budget))
    target = total_tokens / k
    groups: list[str] = []
    current: list[str] = []
    current_est = 0.0
    for unit in units:
        est = (len(unit) + 1) * density
        if current and current_est + est > budget:
            groups.append(" ".join(current))
            current, current_est = [], 0.0
        current.append(unit)
        current_est += est
        if current_est >= target:
            groups.append(" ".join(current))
            current, current_est = [], 0.0
    if current:
        groups.append(" ".join(current))
    return groups


def _cut_chars(text: str, total_tokens: int, budget: float) -> list[str]:
    """Cut a string with no usable boundary into chunks sized by the measured token density."""
    density = total_tokens / len(text)
    size = max(1, int(budget / density))
    if size >= len(text):  # the estimate says it fits but it does not: make progress anyway
        size = max(1, len(text) // 2)
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        # Never separate a base letter from its combining marks (Arabic harakat, Hebrew niqqud).
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        chunks.append(text[start:end])
        start = end
    return chunks


def split_to_fit(sentence: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Split a sentence so every piece satisfies ``count_tokens(piece) <= max_tokens``, losing nothing.

    A sentence longer than the model's input limit would otherwise be truncated by the tokenizer and
    its tail silently dropped from the translation.  Boundaries are tried from most to least natural:
    clause punctuation (``،`` ``؛`` ``,`` ``;`` ``:`` spaced dashes), then whitespace, then characters.
    Pieces are balanced using the measured token density, and each emitted piece is verified with one
    ``count_tokens`` call (an oversized one is split again), so the number of calls is proportional
    to the number of pieces and a 1 MB string without spaces or punctuation is handled in linear time.
    ``" ".join(pieces)`` keeps every non-space character of the input in order.

    Raises ``ValueError`` if ``max_tokens < 1`` or a single character alone exceeds the limit (e.g. a
    counter that adds special tokens), since no split can satisfy the contract then.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    text = sentence.strip()
    if not text:
        return []
    n = count_tokens(text)
    if n <= max_tokens:
        return [text]

    budget = max(1.0, max_tokens * _FILL)
    out: list[str] = []
    # Explicit stack (children pushed in reverse) keeps order without deep recursion.
    stack: list[tuple[str, int, int]] = [(text, n, _LEVEL_CLAUSE)]
    while stack:
        piece, tokens, level = stack.pop()
        if tokens <= max_tokens:
            out.append(piece)
            continue
        children: list[str] = []
        while level < _LEVEL_CHAR:
            units = _units(piece, level)
            if len(units) >= 2:
                children = _pack(units, tokens, len(piece), budget)
                if len(children) >= 2:
                    break
            level += 1
        if level == _LEVEL_CHAR:
            if len(piece) == 1:
                raise ValueError(
                    f"cannot fit {piece!r} into {max_tokens} tokens: a single character counts {tokens}"
                )
            children = _cut_chars(piece, tokens, budget)
        for child in reversed(children):
            stack.append((child, count_tokens(child), level))
    return out
