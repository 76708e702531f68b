"""Every number the benchmark depends on, in one place: architectures, workload sizes, targets, server flags.

Why one module: a figure in the results is only meaningful next to the parameters that produced it, so the runner
copies `asdict(params)` and the architectures into every results file, and nothing else in bench/ hard-codes a size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
#: Built random-weight models and their CTranslate2 copies (git-ignored; rebuilt when the spec changes).
MODELS_DIR = BENCH_DIR / ".models"
RESULTS_DIR = BENCH_DIR / "results"
#: Per-run scratch space: corpus, outputs, caches, server logs (git-ignored, removed after the run).
TMP_DIR = RESULTS_DIR / "tmp"

Family = Literal["marian", "bart"]


@dataclass(frozen=True)
class Architecture:
    """The shape of a published checkpoint; the bench builds random weights of exactly this shape."""

    checkpoint: str
    family: Family
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    ffn_dim: int
    vocab_size: int
    activation: str
    max_positions: int


ARCHITECTURES: dict[str, Architecture] = {
    # Helsinki-NLP/opus-mt-ar-en's config.json.
    "ar-en": Architecture("Helsinki-NLP/opus-mt-ar-en", "marian", 512, 6, 6, 8, 2048, 62_834, "swish", 512),
    # Helsinki-NLP/opus-mt-tc-big-he-en: shape from the issue; the vocabulary is derived from the published 476 MB
    # fp16 model.safetensors (tied embeddings), since the config is not reachable offline; +-1% changes nothing.
    "he-en": Architecture("Helsinki-NLP/opus-mt-tc-big-he-en", "marian", 1024, 6, 6, 16, 4096, 58_100, "relu", 1024),
    # sshleifer/distilbart-cnn-12-6's config.json.
    "summarize": Architecture("sshleifer/distilbart-cnn-12-6", "bart", 1024, 12, 6, 16, 4096, 50_264, "gelu", 1024),
}

#: Every generated segment is exactly this long (see README: the forced-length trick).
OUTPUT_TOKENS = 45
#: Greedy decoding everywhere, so every engine does the same work per token.
BEAM_SIZE = 1
#: Source-side sentencepiece size asked of the trainer; seeds/ supports ~1,200 pieces, so this means "as many as
#: the corpus allows" (about 2.5 pieces per Arabic word; a real 32k OPUS-MT vocabulary gives about 1.5).
SPM_VOCAB = 8000
#: Logit bias that keeps a token from ever being generated (random logits stay within a few units).
BANNED_LOGIT = -100.0
SEED = 1234

#: CTranslate2 weight type per device, and the transformers dtype of the naive loop.
CT2_QUANTIZATION = {"cpu": "int8", "cuda": "int8_float16"}
TORCH_DTYPE = {"cpu": "float32", "cuda": "float16"}
CT2_BATCH_SIZES = (16, 64)
#: Input and output length of the untimed summarization call that lets an engine allocate and pick kernels first.
WARMUP_TOKENS = 8
TORCH_INT8_BATCH = 16

#: The same uvicorn flags for the newsmt app and the bare FastAPI route, so only the app differs.
UVICORN_FLAGS = ("--host", "127.0.0.1", "--workers", "1", "--log-level", "warning", "--no-access-log")
#: A load average above this many runnable processes per bench thread before the run means others compete for the
#: cores; OpenMP engines then lose far more than their share (threads wait at every barrier for a descheduled one).
BUSY_LOAD_PER_THREAD = 0.5
SERVER_START_TIMEOUT_S = 180.0
CASE_TIMEOUT_S = 900.0
TRANSLATE_ROUTE = "/v1/translate"

# The LibreTranslate comparison (issue 14): its workload and what is held equal on both sides.
LIBRETRANSLATE_VERSION = "1.9.6"
PEER_SEEDS = ("001", "002", "003", "004")
PEER_TEXTS_PER_SEED = 2
PEER_SENTENCES_PER_TEXT = 3
PEER_CLIENTS = 8
#: CTranslate2's default `max_decoding_length`, which argos leaves as it is; newsmt gets the same cap.
PEER_OUTPUT_TOKENS = 256
HEALTH_ROUTE = "/healthz"


def default_threads() -> int:
    """Cores this process may use: every engine gets all of them, as a deployment on this box would."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class BenchParams:
    """Workload sizes; `QUICK` keeps a 2-core run to a few minutes, `FULL` to about a quarter of an hour."""

    articles: int  # synthetic Arabic articles for the bulk run
    raw_segments: int  # segments each raw engine call translates
    naive_segments: int  # segments the one-at-a-time loop translates
    http_clients: int
    http_cold_articles: int  # distinct articles sent once each while the cache is cold
    http_warm_seconds: float  # how long the clients hammer cached articles
    concurrent_requests: int  # single-article requests, concurrent vs one after another
    summary_input_tokens: int
    summary_output_tokens: int
    peer_texts: int  # texts of the LibreTranslate comparison (issue 14: 8, two from each of seeds 001-004)


QUICK = BenchParams(articles=40, raw_segments=128, naive_segments=6, http_clients=32, http_cold_articles=32,
                    http_warm_seconds=4.0, concurrent_requests=16, summary_input_tokens=300, summary_output_tokens=40,
                    peer_texts=4)
FULL = BenchParams(articles=200, raw_segments=512, naive_segments=16, http_clients=32, http_cold_articles=64,
                   http_warm_seconds=10.0, concurrent_requests=16, summary_input_tokens=900,
                   summary_output_tokens=120, peer_texts=8)

# Targets from issue 5 (ratios measured in one run).
TARGET_BULK_VS_RAW = 0.85
TARGET_BULK_VS_NAIVE = 15.0
TARGET_WARM_VS_COLD = 100.0
TARGET_HTTP_VS_BARE = 0.6  # issue 5 asked 0.5; issue 14 raises it
TARGET_HTTP_P99_MS = 50.0
TARGET_CONCURRENT_VS_SEQUENTIAL = 3.0
TARGET_BOTH_MODELS_RSS_MB = 800.0
# Target from issue 12: through Redis on loopback, at least this fraction of the diskcache figures of the same run.
TARGET_REDIS_VS_DISKCACHE = 0.8

# Targets from issue 14 (newsmt at its defaults against LibreTranslate tuned, in one run).
TARGET_PEER_COLD_ONE = 1.5
TARGET_PEER_COLD_MANY = 1.5
TARGET_PEER_MANY_VS_ONE = 1.3
TARGET_PEER_CACHED = 1.5
TARGET_PEER_RSS = 1.2
TARGET_PEER_FIRST = 1.0
