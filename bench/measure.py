"""What passes between the runner and a case's worker process, and the small measuring helpers cases share.

Each case runs in its own process (`python -m bench.worker`) so that its peak RSS is its own: nothing another case
loaded, imported or freed can show up in it.
"""

from __future__ import annotations

import json
import resource
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import OUTPUT_TOKENS, BenchParams


@dataclass
class Context:
    """Everything a case needs, prepared once by the runner (models built, corpus written, inputs tokenized)."""

    device: str
    threads: int
    params: BenchParams
    work_dir: Path
    models: dict[str, str]  # architecture key -> Hugging Face-format directory
    ct2_models: dict[str, str]  # architecture key -> CTranslate2 copy (raw engine cases)
    ct2_quantization: str
    raw_inputs: Path  # JSON: token ids and token strings of the sampled segments
    summary_input: Path  # JSON: one long English article's token ids and strings
    corpus_dir: Path
    corpus_segments: int  # distinct segments in the corpus, as the pipeline splits it
    newsmt_backend: str  # what newsmt runs on in the bulk/HTTP cases, e.g. "ctranslate2 int8"
    newsmt_ct2: bool  # whether newsmt's CTranslate2 backend is in use
    newsmt_env: dict[str, str] = field(default_factory=dict)
    #: The LibreTranslate comparison: its python, argos packages, target sentencepiece, newsmt's env for it.
    peer: dict[str, Any] = field(default_factory=dict)

    def dump(self, path: Path) -> None:
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Context:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["params"] = BenchParams(**data["params"])
        for name in ("work_dir", "raw_inputs", "summary_input", "corpus_dir"):
            data[name] = Path(data[name])
        return cls(**data)


@dataclass
class Outcome:
    """A case's measured figures. `summary` is the one-line headline the table prints (built from `metrics`)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    #: Set when the process that matters is not the worker itself (an HTTP server).
    peak_rss_mb: float | None = None

    @classmethod
    def skip(cls, reason: str) -> Outcome:
        return cls(skipped=reason, summary=f"skipped: {reason}")


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size of a live process, in MB: VmHWM, the high-water mark of its own address space.

    Not `ru_maxrss`: Linux carries that over exec from the forked parent, so every worker of a runner that has
    imported torch would start out "peaking" at the runner's size. Where there is no /proc (macOS), this process's
    `ru_maxrss` (bytes there) is the fallback.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except FileNotFoundError:
        if pid != "self":
            raise
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 1)
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def percentile(values: list[float], pct: int) -> float:
    """The pct-th percentile (inclusive method: with few samples p99 is close to the maximum, never beyond it)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def check_forced_length(lengths: list[int], expected: int = OUTPUT_TOKENS) -> None:
    """Refuse to report a throughput whose segments did not all decode exactly `expected` tokens."""
    wrong = [n for n in lengths if n != expected]
    if wrong:
        raise RuntimeError(f"{len(wrong)}/{len(lengths)} outputs were not {expected} tokens long (e.g. {wrong[:5]}): "
                           "the forced-length bias did not hold, so token rates would not be comparable")


def translation_metrics(lengths: list[int], source_lengths: list[int], seconds: float) -> dict[str, Any]:
    check_forced_length(lengths)
    return {
        "segments": len(lengths),
        "output_tokens": sum(lengths),
        "mean_source_tokens": round(statistics.fmean(source_lengths), 1),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(sum(lengths) / seconds, 1),
        "segments_per_s": round(len(lengths) / seconds, 2),
    }
