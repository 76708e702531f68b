"""The printed table, the targets of issues 5 and 12 with PASS/MISS, and the results file.

Every ratio is computed here from figures measured in the same run; a target whose inputs were not measured (case
skipped, failed or not selected) says so instead of guessing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import (
    CT2_BATCH_SIZES,
    RESULTS_DIR,
    TARGET_BOTH_MODELS_RSS_MB,
    TARGET_BULK_VS_NAIVE,
    TARGET_BULK_VS_RAW,
    TARGET_CONCURRENT_VS_SEQUENTIAL,
    TARGET_HTTP_P99_MS,
    TARGET_HTTP_VS_BARE,
    TARGET_PEER_CACHED,
    TARGET_PEER_COLD_MANY,
    TARGET_PEER_COLD_ONE,
    TARGET_PEER_FIRST,
    TARGET_PEER_MANY_VS_ONE,
    TARGET_PEER_RSS,
    TARGET_REDIS_VS_DISKCACHE,
    TARGET_WARM_VS_COLD,
    TORCH_INT8_BATCH,
)

Results = dict[str, dict[str, Any]]
RAW_ENGINE_CASES = (*(f"ct2_b{size}" for size in CT2_BATCH_SIZES), f"torch_int8_b{TORCH_INT8_BATCH}")


def metric(results: Results, case: str, *path: str) -> float | None:
    """A measured figure, or None when its case did not produce one."""
    value: Any = results.get(case, {}).get("metrics")
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def best_raw(results: Results) -> tuple[str, float] | None:
    rates = {case: rate for case in RAW_ENGINE_CASES if (rate := metric(results, case, "tokens_per_s"))}
    return max(rates.items(), key=lambda item: item[1]) if rates else None


@dataclass(frozen=True)
class Target:
    label: str
    threshold: float
    higher_is_better: bool
    unit: str
    measure: Callable[[Results], float | None]

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        met = value >= self.threshold if self.higher_is_better else value <= self.threshold
        return "PASS" if met else "MISS"

    def margin(self, value: float | None) -> float | None:
        """How far from the target, as a factor: below 1.0 is a miss by that much."""
        if value is None or value == 0:
            return None
        return value / self.threshold if self.higher_is_better else self.threshold / value


def _bulk_vs_raw(results: Results) -> float | None:
    best = best_raw(results)
    return _ratio(metric(results, "bulk_cold", "tokens_per_s"), best[1] if best else None)


def _peer(figure: str, *path: str, against: str = "peer_lt_tuned") -> Callable[[Results], float | None]:
    """newsmt's figure over tuned LibreTranslate's (or over another figure of newsmt's own)."""
    return lambda r: _ratio(metric(r, "peer_newsmt", figure, *path), metric(r, against, figure, *path))


def _peer_rss(results: Results) -> float | None:
    newsmt, tuned = (results.get(case, {}).get("peak_rss_mb") for case in ("peer_newsmt", "peer_lt_tuned"))
    return _ratio(newsmt, tuned) if "metrics" in results.get("peer_newsmt", {}) else None


TARGETS = (
    Target("bulk end to end / best raw engine call", TARGET_BULK_VS_RAW, True, "x", _bulk_vs_raw),
    Target("bulk end to end / naive loop", TARGET_BULK_VS_NAIVE, True, "x",
           lambda r: _ratio(metric(r, "bulk_cold", "tokens_per_s"), metric(r, "naive", "tokens_per_s"))),
    Target("warm rerun speed-up over cold", TARGET_WARM_VS_COLD, True, "x",
           lambda r: _ratio(metric(r, "bulk_cold", "seconds"), metric(r, "bulk_warm", "seconds"))),
    Target("cache-hit HTTP req/s / bare FastAPI", TARGET_HTTP_VS_BARE, True, "x",
           lambda r: _ratio(metric(r, "http", "warm", "req_per_s"), metric(r, "http_bare", "req_per_s"))),
    Target("HTTP p99, warm clients", TARGET_HTTP_P99_MS, False, "ms", lambda r: metric(r, "http", "warm", "p99_ms")),
    Target("concurrent / sequential speed-up", TARGET_CONCURRENT_VS_SEQUENTIAL, True, "x",
           lambda r: metric(r, "http_concurrency", "speedup")),
    Target("both models on CTranslate2: peak RSS", TARGET_BOTH_MODELS_RSS_MB, False, "MB",
           lambda r: metric(r, "both_models", "peak_rss_mb")),
    Target("cache-hit HTTP req/s: Redis / diskcache", TARGET_REDIS_VS_DISKCACHE, True, "x",
           lambda r: _ratio(metric(r, "http_redis", "redis", "req_per_s"),
                            metric(r, "http_redis", "diskcache", "req_per_s"))),
    Target("cache-hit HTTP p99: diskcache / Redis", TARGET_REDIS_VS_DISKCACHE, True, "x",
           lambda r: _ratio(metric(r, "http_redis", "diskcache", "p99_ms"),
                            metric(r, "http_redis", "redis", "p99_ms"))),
    Target("bulk warm rerun speed: Redis / diskcache", TARGET_REDIS_VS_DISKCACHE, True, "x",
           lambda r: _ratio(metric(r, "bulk_warm", "seconds"), metric(r, "bulk_warm_redis", "seconds"))),
    Target("cold, 1 client: newsmt / LibreTranslate tuned", TARGET_PEER_COLD_ONE, True, "x",
           _peer("one_client", "tokens_per_s")),
    Target("cold, 8 clients: newsmt / LibreTranslate tuned", TARGET_PEER_COLD_MANY, True, "x",
           _peer("concurrent", "tokens_per_s")),
    Target("cold, newsmt 8 clients / its 1 client", TARGET_PEER_MANY_VS_ONE, True, "x",
           lambda r: _ratio(metric(r, "peer_newsmt", "concurrent", "tokens_per_s"),
                            metric(r, "peer_newsmt", "one_client", "tokens_per_s"))),
    Target("cached, 8 clients: req/s newsmt / LibreTranslate tuned", TARGET_PEER_CACHED, True, "x",
           _peer("cached", "req_per_s")),
    Target("cached: server CPU per request newsmt / LibreTranslate tuned", 1.0, False, "x",
           _peer("cached", "server_cpu_ms_per_request")),
    Target("peak RSS, 8 clients: newsmt / LibreTranslate tuned", TARGET_PEER_RSS, False, "x", _peer_rss),
    Target("first translation after start: newsmt / LibreTranslate tuned", TARGET_PEER_FIRST, False, "x",
           _peer("first_translation_s")),
)


def evaluate(results: Results) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        value = target.measure(results)
        margin = target.margin(value)
        rows.append({"target": target.label, "measured": None if value is None else round(value, 3),
                     "threshold": target.threshold, "op": ">=" if target.higher_is_better else "<=",
                     "unit": target.unit, "verdict": target.verdict(value),
                     "margin": None if margin is None else round(margin, 3)})
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    render = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in [headers, *rows]]
    return "\n".join([render[0], line, *render[1:]])


def _number(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if unit == "ms" else f"{value:,.0f} {unit}" if unit == "MB" else f"{value:,.2f}x"


def render(results: Results, titles: dict[str, tuple[str, str]], targets: list[dict[str, Any]]) -> str:
    naive = metric(results, "naive", "tokens_per_s")
    rows = []
    for name, result in results.items():
        item, title = titles[name]
        rate = metric(results, name, "tokens_per_s")
        vs_naive = _ratio(rate, naive) if name != "naive" and "summarize" not in name else None
        rss = result.get("peak_rss_mb")
        rows.append([item, name, title, result["summary"], f"{vs_naive:,.1f}x" if vs_naive else "",
                     f"{rss:,.0f}" if rss else ""])
    measured = _table(["#", "case", "what", "result", "vs naive", "peak RSS MB"], rows)
    target_rows = [
        [t["target"], "" if t["measured"] is None else _number(t["measured"], t["unit"]),
         f"{t['op']} {_number(t['threshold'], t['unit'])}", t["verdict"],
         f"{t['margin']:.2f} of target" if t["verdict"] == "MISS" and t["margin"] is not None else ""]
        for t in targets
    ]
    checked = _table(["target (issues 5, 12, 14)", "measured", "wanted", "verdict", "miss by"], target_rows)
    notes = [f"- {name}: {note}" for name, result in results.items() for note in result.get("notes", [])]
    return "\n\n".join(part for part in (measured, checked, "\n".join(notes)) if part)


def machine(device: str) -> dict[str, Any]:
    """What the figures were measured on; the load average shows how busy a shared box was."""
    import ctranslate2
    import psutil
    import torch
    import transformers

    info: dict[str, Any] = {
        "device": device,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "ctranslate2": ctranslate2.__version__,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write(document: dict[str, Any], stamp: str, device: str) -> Path:
    """bench/results/<timestamp>-<device>.json, and a copy as latest.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{stamp}-{device}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copyfile(path, RESULTS_DIR / "latest.json")
    return path
