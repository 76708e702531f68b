"""All configuration in one place: one pydantic-settings class, every field an env var with the NEWSMT_ prefix.

Why one class: the HTTP app, the CLI and the benchmarks all build the same `Settings`, so a value documented in
the README means the same thing everywhere, and tests can construct a `Settings(...)` with explicit values instead
of patching globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda", "mps"]
Backend = Literal["auto", "transformers", "ctranslate2"]

#: Languages a translation task exists for; English is passed through untranslated.
SOURCE_LANGUAGES: tuple[str, ...] = ("ar", "he")
TARGET_LANGUAGE = "en"


@dataclass(frozen=True)
class TaskInfo:
    """What a task name means: which setting holds its model and which languages it joins."""

    name: str
    model_setting: str
    revision_setting: str
    source_lang: str
    target_lang: str


TASKS: dict[str, TaskInfo] = {
    "translate:ar-en": TaskInfo("translate:ar-en", "ar_en_model", "ar_en_revision", "ar", "en"),
    "translate:he-en": TaskInfo("translate:he-en", "he_en_model", "he_en_revision", "he", "en"),
}


def translation_task(source_lang: str) -> str:
    """The task name that translates `source_lang` into English."""
    return f"translate:{source_lang}-{TARGET_LANGUAGE}"


class Settings(BaseSettings):
    """newsmt settings; each field is read from `NEWSMT_<FIELD>` (case-insensitive) or a `.env` file."""

    model_config = SettingsConfigDict(env_prefix="NEWSMT_", env_file=".env", extra="ignore")

    models_dir: Path = Field(Path("models"), description="Local model store: pulled and imported models.")
    cache_dir: Path = Field(Path("cache"), description="Disk-cache directory shared by the CLI and the server.")
    cache_size_limit: int = Field(2 * 1024**3, description="Disk-cache size limit in bytes (LRU eviction).")
    cache_retry_seconds: float = Field(
        30.0, description="While the cache is unusable, how often to try to reopen it."
    )

    device: Device = Field("auto", description="auto picks cuda, then mps, then cpu.")
    backend: Backend = Field("auto", description="Inference backend; auto prefers a converted CTranslate2 copy.")
    threads: int = Field(0, description="Intra-op CPU threads for inference; 0 keeps the library default.")

    ar_en_model: str = Field(
        "Helsinki-NLP/opus-mt-tc-big-ar-en", description="Arabic->English: Hugging Face repo id or local directory."
    )
    ar_en_revision: str = Field("main", description="Hub revision (branch, tag or commit) for ar_en_model.")
    he_en_model: str = Field(
        "Helsinki-NLP/opus-mt-tc-big-he-en", description="Hebrew->English: Hugging Face repo id or local directory."
    )
    he_en_revision: str = Field("main", description="Hub revision (branch, tag or commit) for he_en_model.")

    batch_size: int = Field(16, ge=1, description="Segments per inference batch.")
    beam_size: int = Field(4, ge=1, le=16, description="Beam width for translation.")
    max_input_tokens: int = Field(
        256, ge=8, description="Longest segment sent to a model; longer sentences are split, never truncated."
    )
    max_output_tokens: int = Field(512, ge=8, description="Upper bound on generated tokens per segment.")
    max_input_chars: int = Field(200_000, ge=1, description="Largest accepted document, in characters.")
    bulk_chunk_articles: int = Field(
        16, ge=1, description="Articles the bulk CLI sends through the pipeline together, so batches fill up."
    )
    allow_pickle_weights: bool = Field(
        False,
        description="Allow loading legacy .bin weights directly. Off: .bin weights are converted to safetensors "
        "at install time with torch's weights-only loader.",
    )

    def model_source(self, task: str) -> str:
        return str(getattr(self, TASKS[task].model_setting))

    def model_revision(self, task: str) -> str:
        return str(getattr(self, TASKS[task].revision_setting))

    def model_explicitly_set(self, task: str) -> bool:
        """True when the user set the model for `task` (env/.env/argument) rather than relying on the default."""
        return TASKS[task].model_setting in self.model_fields_set
