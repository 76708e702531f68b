"""All configuration in one place: one pydantic-settings class, every field an env var with the NEWSMT_ prefix.

Why one class: the HTTP app, the CLI and the benchmarks all build the same `Settings`, so a value documented in
the README means the same thing everywhere, and tests can construct a `Settings(...)` with explicit values instead
of patching globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda", "mps"]
Backend = Literal["auto", "transformers", "ctranslate2"]
#: Weight types `newsmt models convert` can write (CTranslate2's quantization names).
Ct2Quantization = Literal["int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32"]
CudaDtype = Literal["float16", "bfloat16", "float32"]
#: URL schemes of NEWSMT_CACHE_URL (what redis-py connects to); Valkey speaks the same protocol.
CACHE_URL_SCHEMES = ("redis", "rediss", "unix")

#: Languages a translation task exists for; English is passed through untranslated.
SOURCE_LANGUAGES: tuple[str, ...] = ("ar", "he")
TARGET_LANGUAGE = "en"
#: English names of every language newsmt reads or writes, for people (the web page, reports, /languages).
LANGUAGE_NAMES = {"ar": "Arabic", "he": "Hebrew", "en": "English"}


#: The abstractive summarizer's task name (`newsmt models pull summarize`).
SUMMARIZE_TASK = "summarize"
SummaryMethod = Literal["auto", "abstractive", "extractive"]
SummaryStrategy = Literal["translate_then_summarize", "summarize_then_translate"]


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
    # Optional: translation never resolves it, and without it summaries fall back to the extractive engine.
    SUMMARIZE_TASK: TaskInfo(SUMMARIZE_TASK, "summary_model", "summary_revision", "en", "en"),
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
    cache_memory_limit: int = Field(
        64 * 1024**2, ge=0, description="Bytes of cached results also kept in process memory (LRU), so hot articles "
        "skip the disk; 0 turns the memory tier off."
    )
    cache_retry_seconds: float = Field(
        30.0, description="While the cache is unusable, how often to try to reopen it (or reconnect to Redis)."
    )
    cache_url: SecretStr | None = Field(
        None, description="Shared cache tier on Redis >= 6 or Valkey: `redis://[user:password@]host:port/db`, "
        "`rediss://...` (TLS) or `unix:///path/to/socket`. Unset: the embedded diskcache at cache_dir. Set, the "
        "same Redis also holds the rate-limit buckets and the claims that coalesce identical work across replicas.",
    )
    cache_ttl_seconds: float | None = Field(
        None, gt=0, description="Optional expiry of every cached entry, in seconds (both backends). Unset: entries "
        "live until evicted (diskcache: cache_size_limit; Redis: maxmemory with allkeys-lru).",
    )
    cache_timeout_seconds: float = Field(
        0.5, gt=0, description="Redis connect and read time-out. A slower answer makes the shared cache count as "
        "unusable (requests go on uncached) until the next retry.",
    )
    coalesce_wait_seconds: float = Field(
        60.0, ge=0, description="With cache_url: how long a replica waits for another replica already translating "
        "the same request before translating it itself. 0: never wait.",
    )
    coalesce_claim_seconds: float = Field(
        10.0, gt=0, description="With cache_url: lifetime of a replica's claim on work it is running, renewed while "
        "it runs; a claimant that dies is noticed by the waiting replicas this long after at most.",
    )

    device: Device = Field("auto", description="auto picks cuda, then mps, then cpu.")
    backend: Backend = Field("auto", description="Inference backend; auto prefers a converted CTranslate2 copy.")
    threads: int = Field(
        0, ge=0, description="Intra-op CPU threads per model replica; 0: torch's default (transformers), or for "
        "ctranslate2 the usable cores up to 4 (with inter_threads set: the cores divided by the replicas)."
    )
    inter_threads: int = Field(
        0, ge=0, description="CTranslate2 replicas per model, each running its own share of a batch on `threads` "
        "threads (the weights are shared). 0 on a CPU: the usable cores divided by the threads per replica (one "
        "replica on up to 4 cores); on a GPU: 1."
    )
    ct2_quantization: Ct2Quantization = Field(
        "int8", description="Which converted CTranslate2 copy (`newsmt models convert --quantization`) the "
        "ctranslate2 and auto backends run; also the convert command's default."
    )
    torch_int8: bool = Field(
        False, description="transformers backend on CPU: dynamic int8 quantization of Linear layers (faster, "
        "outputs differ slightly from fp32, so it is part of the cache key)."
    )
    cuda_dtype: CudaDtype = Field("float16", description="transformers backend on CUDA: weight and compute dtype.")
    batch_max_tokens: int = Field(
        4096, ge=1, description="Token budget of one inference batch (segments x longest segment), filled from "
        "all concurrent requests."
    )
    batch_max_decoding_tokens: int = Field(
        5120, ge=1, description="Decoder positions one replica's share of a batch may hold: its segments x beam x "
        "(longest source + max_output_tokens). Bounds the memory a batch's decoding state takes, which concurrent "
        "requests would otherwise fill up to batch_size."
    )
    batch_max_wait_ms: float = Field(
        100.0, ge=0, description="How long, at most, an idle model waits for requests still being prepared (cleaned, "
        "detected, looked up) to join its next batch. Nothing waits when no other request is in flight."
    )

    ar_en_model: str = Field(
        "Helsinki-NLP/opus-mt-tc-big-ar-en", description="Arabic->English: Hugging Face repo id or local directory."
    )
    ar_en_revision: str = Field("main", description="Hub revision (branch, tag or commit) for ar_en_model.")
    he_en_model: str = Field(
        "Helsinki-NLP/opus-mt-tc-big-he-en", description="Hebrew->English: Hugging Face repo id or local directory."
    )
    he_en_revision: str = Field("main", description="Hub revision (branch, tag or commit) for he_en_model.")

    batch_size: int = Field(16, ge=1, description="Segments per inference batch.")
    model_idle_unload_seconds: float | None = Field(
        None, gt=0, description="The server unloads a model no batch has used for this long (it loads again on the "
        "next request that needs it). Unset: models stay loaded until unloaded explicitly.",
    )
    beam_size: int = Field(4, ge=1, le=16, description="Beam width for translation.")
    max_input_tokens: int = Field(
        256, ge=8, description="Longest segment sent to a model; longer sentences are split, never truncated."
    )
    max_output_tokens: int = Field(512, ge=8, description="Upper bound on generated tokens per segment.")
    max_input_chars: int = Field(200_000, ge=1, description="Largest accepted document, in characters.")
    bulk_chunk_articles: int = Field(
        16, ge=1, description="Articles the bulk CLI sends through the pipeline together, so batches fill up."
    )
    summary_model: str = Field(
        "sshleifer/distilbart-cnn-12-6",
        description="Abstractive English summarizer (a BART-style seq2seq model): hub repo id or local directory.",
    )
    summary_revision: str = Field("main", description="Hub revision (branch, tag or commit) for summary_model.")
    summary_method: SummaryMethod = Field(
        "auto", description="auto: abstractive when summary_model is installed, else extractive (LexRank)."
    )
    summary_strategy: SummaryStrategy = Field(
        "translate_then_summarize",
        description="translate_then_summarize summarizes the English translation; summarize_then_translate picks "
        "key source sentences extractively and translates only those.",
    )
    summary_max_words: int = Field(80, ge=5, description="Longest summary, in words; it ends on a whole sentence.")
    summary_ratio: float | None = Field(
        None, gt=0, le=1, description="Optional: also cap a summary at this fraction of the article's words."
    )
    summary_max_sentences: int = Field(3, ge=1, description="Most sentences an extractive summary picks.")
    summary_beam_size: int = Field(4, ge=1, le=16, description="Beam width for abstractive summaries.")
    summary_max_input_tokens: int = Field(
        1024, ge=32, description="Model window for summarizing (capped by the model's own); longer inputs are "
        "summarized chunk by chunk, then the chunk summaries are summarized (map-reduce)."
    )
    glossaries_dir: Path = Field(Path("glossaries"), description="Named glossaries (`newsmt glossary add`), shared "
                                 "by the CLI and the server.")
    low_confidence: float = Field(
        -0.6, le=0, description="A translated sentence whose score (mean log-probability per token) is below this is "
        "listed as low-confidence: the model gave its average word less than about even odds (e^-0.6 = 0.55).",
    )
    alternatives_limit: int = Field(
        4, ge=0, le=15, description="Most alternative translations one request may ask for (the beam is widened to "
        "alternatives + 1, up to 16).",
    )
    allow_pickle_weights: bool = Field(
        False,
        description="Allow loading legacy .bin weights directly. Off: .bin weights are converted to safetensors "
        "at install time with torch's weights-only loader.",
    )

    # -- HTTP service (`newsmt serve`) ---------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `newsmt serve` binds; loopback unless you mean to expose it.")
    port: int = Field(8000, ge=1, le=65535, description="Port `newsmt serve` listens on.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys. Empty: no authentication. Set: native routes "
        "need `Authorization: Bearer KEY`, LibreTranslate routes an `api_key` field (401 missing, 403 wrong).",
    )
    admin_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys that may also change glossaries over HTTP. With "
        "NEWSMT_API_KEYS set, other keys may only read them; without keys, anyone may.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS (`*` for any). Empty: closed."
    )
    max_request_bytes: int = Field(8 * 1024**2, ge=1, description="Largest accepted HTTP request body (413).")
    max_texts_per_request: int = Field(64, ge=1, description="Most texts in one HTTP request (413).")
    max_inflight_requests: int = Field(
        16, ge=1, description="Translations and summaries the server runs or queues at once; more are refused "
        "with 429 (identical concurrent requests share one and count once).",
    )
    overload_retry_after_seconds: int = Field(2, ge=1, description="Retry-After sent with a 429 when overloaded.")
    request_timeout_seconds: float = Field(
        300.0, gt=0, description="Per-request time limit (504); the translation or summary finishes in the "
        "background and a retry is served from the cache.",
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute allowed to each API key (to each client address when no keys are "
        "set), up to that many at once; more get 429 with Retry-After. Health, metrics, docs and language-list "
        "routes are never limited. 0: off.",
    )

    # -- documents (`POST /translate_file`, `POST /v1/documents`, the bulk CLI) -----------------------------------
    document_max_text_bytes: int = Field(
        1024**2, ge=1, description="Largest accepted .txt, .md or .srt file, in bytes (413)."
    )
    document_max_html_bytes: int = Field(2 * 1024**2, ge=1, description="Largest accepted .html/.htm file (413).")
    document_max_docx_bytes: int = Field(
        5 * 1024**2, ge=1, description="Largest accepted .docx file as uploaded (zipped), in bytes (413)."
    )
    docx_max_unpacked_bytes: int = Field(
        50 * 1024**2, ge=1, description="Most bytes all parts of a .docx may unpack to, as its zip directory "
        "declares them; more is refused as a zip bomb (413) before anything is decompressed."
    )
    docx_max_part_bytes: int = Field(
        20 * 1024**2, ge=1, description="Most bytes one part of a .docx (document.xml, an image) may unpack to (413)."
    )
    documents_dir: Path = Field(
        Path("documents"), description="Where translated files wait for their download (`translatedFileUrl`)."
    )
    document_ttl_seconds: int = Field(
        3600, ge=1, description="How long a translated file can be downloaded; then it is deleted."
    )

    # -- jobs (`POST /v1/jobs`) ----------------------------------------------------------------------------------
    jobs_dir: Path = Field(
        Path("jobs"), description="Job inputs, state and results.jsonl; jobs found here resume when the server starts."
    )
    job_chunk_articles: int = Field(
        4, ge=1, description="Articles a job sends through the pipeline together. Small, because the cache stores a "
        "chunk's sentences when the chunk is done: a server killed mid-job redoes at most the chunk in flight.",
    )
    job_max_articles: int = Field(100_000, ge=1, description="Most articles in one job (413).")
    job_concurrency: int = Field(1, ge=1, description="Jobs run at once; more wait in order of submission.")

    @field_validator("api_keys", "admin_api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Environment variables hold lists as `a,b,c`; blanks are dropped so `NEWSMT_API_KEYS=` means none."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cache_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        """Only schemes redis-py connects to; an empty variable means unset, so `NEWSMT_CACHE_URL=` is diskcache."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str):
            if not raw.strip():
                return None
            if urlsplit(raw.strip()).scheme not in CACHE_URL_SCHEMES:
                raise ValueError(f"cache_url must start with {', '.join(s + '://' for s in CACHE_URL_SCHEMES)}")
            return raw.strip()
        return value

    def model_source(self, task: str) -> str:
        return str(getattr(self, TASKS[task].model_setting))

    def model_revision(self, task: str) -> str:
        return str(getattr(self, TASKS[task].revision_setting))

    def model_explicitly_set(self, task: str) -> bool:
        """True when the user set the model for `task` (env/.env/argument) rather than relying on the default."""
        return TASKS[task].model_setting in self.model_fields_set
