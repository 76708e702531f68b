"""Named glossaries on disk (`NEWSMT_GLOSSARIES_DIR`), shared by the CLI and the server: one JSON file per glossary.

Files come in as TSV or CSV (source term, English term; a header row and `#` comments are skipped) and are stored
parsed and validated, so a broken file is refused when it is added, not when a translation needs it. Writes are
atomic (temp file + rename), so a server reading a glossary never sees half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.errors import GlossaryNotFound, InvalidGlossary
from service.text.glossary import Glossary, Term, parse_terms, term_language

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_SUFFIX = ".json"


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith(_SUFFIX):
        raise InvalidGlossary(f"glossary name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with "
                              "a letter or digit")
    return name


def parse_table(text: str) -> tuple[Term, ...]:
    """Terms from TSV (any line with a tab) or CSV text. Rows whose first cell has no Arabic or Hebrew letter (a
    header such as `source,target`) and lines starting with `#` are skipped; a row needs exactly two cells."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    delimiter = "\t" if any("\t" in line for line in lines) else ","
    pairs = []
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    except csv.Error as exc:  # a NUL byte, a field over the csv module's limit
        raise InvalidGlossary(f"glossary table cannot be read: {exc}") from exc
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if number == 1 and cells and not _is_source_term(cells[0]):
            continue  # header
        if len(cells) != 2:
            raise InvalidGlossary(f"glossary row {number} has {len(cells)} cells; each row is: source term, "
                                  "English term (TSV or CSV)")
        pairs.append((cells[0], cells[1]))
    return parse_terms(pairs)


def _is_source_term(cell: str) -> bool:
    try:
        term_language(cell)
    except InvalidGlossary:
        return False
    return True


@dataclass(frozen=True)
class GlossaryInfo:
    name: str
    terms: int
    languages: list[str]
    digest: str


class GlossaryStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}{_SUFFIX}"

    def save(self, name: str, terms: tuple[Term, ...]) -> Glossary:
        """Create or replace a glossary."""
        glossary = Glossary(terms, name=check_name(name))
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"name": name, "terms": [{"source": t.source, "target": t.target} for t in terms]},
                          ensure_ascii=False, indent=1)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(temp, self._path(name))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return glossary

    def get(self, name: str) -> Glossary:
        try:
            data = json.loads(self._path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GlossaryNotFound(name) from None
        except (OSError, ValueError) as exc:
            raise InvalidGlossary(f"glossary {name!r} cannot be read: {exc}") from exc
        return Glossary(tuple(Term(t["source"], t["target"]) for t in data["terms"]), name=name)

    def remove(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise GlossaryNotFound(name) from None

    def listing(self) -> list[GlossaryInfo]:
        if not self.directory.is_dir():
            return []
        infos = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            glossary = self.get(path.stem)
            infos.append(GlossaryInfo(path.stem, len(glossary.terms),
                                      sorted({t.language for t in glossary.terms}), glossary.digest))
        return infos

    def resolve(self, name_or_file: str) -> Glossary:
        """A stored glossary by name, else a TSV/CSV file by path (the bulk CLI's `--glossary NAME|FILE`)."""
        if _NAME.match(name_or_file) and self._path(name_or_file).is_file():
            return self.get(name_or_file)
        path = Path(name_or_file)
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidGlossary(f"cannot read glossary file {path}: {exc}") from exc
            return Glossary(parse_table(text), name=path.name)
        raise GlossaryNotFound(name_or_file)
