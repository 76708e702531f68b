"""Glossaries over HTTP: `/v1/glossaries` lists, shows, creates or replaces, and removes the named glossaries the CLI
manages (`newsmt glossary ...`; one store on disk for both). Any valid key may read them, since clients name them in
their requests; only an admin key may change them when keys are configured, because a change alters every client's
translations.

Plain `def` routes: they read and write small files, so FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.deps import AdminOnly, Admitted
from service.store.glossaries import NAME_PATTERN, parse_table
from service.text.glossary import Glossary, parse_terms

router = APIRouter(prefix="/v1", tags=["glossaries"])

GlossaryName = Annotated[str, Path(pattern=NAME_PATTERN, description="Letters, digits, '.', '_' or '-'.")]


class TermIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: str = Field(description="Arabic or Hebrew term, as it appears in articles (without prefixes).")
    target: str = Field(description="The English it must become.")


class GlossaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    terms: list[TermIn] | None = Field(None, description="The terms. Give `terms` or `table`, not both.")
    table: str | None = Field(None, description="The terms as TSV or CSV text: source term, English term per row.")

    @model_validator(mode="after")
    def _one_of(self) -> GlossaryIn:
        if (self.terms is None) == (self.table is None):
            raise ValueError("give exactly one of `terms` (a list) or `table` (TSV or CSV text)")
        return self


class TermOut(BaseModel):
    source: str
    target: str
    language: str = Field(description="`ar` or `he`, from the source term's script.")


class GlossaryOut(BaseModel):
    name: str
    digest: str = Field(description="Content hash; part of the cache key of sentences the glossary changes.")
    terms: list[TermOut]


class GlossarySummary(BaseModel):
    name: str
    terms: int
    languages: list[str]
    digest: str


def _body(glossary: Glossary) -> GlossaryOut:
    return GlossaryOut(name=glossary.name or "", digest=glossary.digest,
                       terms=[TermOut(source=t.source, target=t.target, language=t.language) for t in glossary.terms])


@router.get("/glossaries")
def list_glossaries(state: Admitted) -> list[GlossarySummary]:
    """Every stored glossary: name, number of terms, languages, content hash."""
    return [GlossarySummary(name=g.name, terms=g.terms, languages=g.languages, digest=g.digest)
            for g in state.glossaries.listing()]


@router.get("/glossaries/{name}", responses={404: {"description": "No glossary by that name."}})
def show_glossary(name: GlossaryName, state: Admitted) -> GlossaryOut:
    """One glossary's terms."""
    return _body(state.glossaries.get(name))


@router.put("/glossaries/{name}")
def put_glossary(name: GlossaryName, state: AdminOnly, glossary: Annotated[GlossaryIn, Body(openapi_examples={
    "terms": {"summary": "Terms as a list", "value": {"terms": [{"source": "بوتين", "target": "Putin"},
                                                              {"source": "טו לאם", "target": "To Lam"}]}},
    "table": {"summary": "Terms as TSV", "value": {"table": "بوتين\tPutin\nטו לאם\tTo Lam\n"}},
})]) -> GlossaryOut:
    """Create or replace a glossary (an admin key when keys are configured). Sentences holding its terms are
    translated afresh on their next request; nothing else is."""
    terms = parse_table(glossary.table) if glossary.table is not None else \
        parse_terms((t.source, t.target) for t in glossary.terms or [])
    return _body(state.glossaries.save(name, terms))


@router.delete("/glossaries/{name}", responses={404: {"description": "No glossary by that name."}})
def delete_glossary(name: GlossaryName, state: AdminOnly) -> dict[str, str]:
    """Remove a glossary (an admin key when keys are configured)."""
    state.glossaries.remove(name)
    return {"removed": name}
