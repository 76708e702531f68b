"""`python -m bench.threads`: the measurements behind newsmt's default CPU thread split (NEWSMT_INTER_THREADS x
NEWSMT_THREADS), on the bench's random-weight opus-mt-ar-en in CTranslate2 int8.

For every split of the usable cores into replicas x threads, and for several batch sizes, one `translate_batch` call
on the same segments (the workload of the LibreTranslate comparison: beam 4, every segment decoded to 256 tokens),
the batch split evenly among the replicas as newsmt's engine splits it. Each measurement runs in a fresh process,
so its peak RSS (VmHWM) is its own; the process's RSS after loading the model is reported beside it, so the
difference is the decoding state. Results go to bench/results/threads-<timestamp>.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .config import CT2_QUANTIZATION, PEER_OUTPUT_TOKENS, REPO_DIR, RESULTS_DIR
from .measure import peak_rss_mb

BEAM = 4


def _splits(cores: int) -> list[tuple[int, int]]:
    return [(cores // threads, threads) for threads in range(1, cores + 1) if cores % threads == 0]


def _segments(count: int) -> list[list[str]]:
    """Seed sentences, tokenized by the model's own tokenizer, cycled to `count`."""
    from service.engines.tokenizer import load_tokenizer

    from .corpus import seed_sentences
    from .models import ensure_model

    tokenizer = load_tokenizer(ensure_model("ar-en"))
    sentences = seed_sentences("ar")[:count]
    ids = tokenizer(sentences)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def measure_one(replicas: int, threads: int, segments: int) -> dict[str, float]:
    """One measurement, in this process (the caller starts a fresh one for each)."""
    import ctranslate2

    from .models import ensure_ct2

    sources = _segments(segments)
    translator = ctranslate2.Translator(str(ensure_ct2("ar-en", CT2_QUANTIZATION["cpu"])), device="cpu",
                                        compute_type="int8", inter_threads=replicas, intra_threads=threads)
    translator.translate_batch(sources[:1], beam_size=BEAM, max_decoding_length=8)  # untimed warm-up
    loaded = float(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    started = time.perf_counter()
    results = translator.translate_batch(sources, beam_size=BEAM, max_decoding_length=PEER_OUTPUT_TOKENS,
                                         max_batch_size=math.ceil(len(sources) / replicas))
    seconds = time.perf_counter() - started
    tokens = sum(len(r.hypotheses[0]) for r in results)
    return {"replicas": replicas, "threads": threads, "segments": segments, "output_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "rss_loaded_mb": round(loaded, 1), "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", default="2,4,8", help="batch sizes to measure (comma-separated)")
    parser.add_argument("--one", nargs=3, type=int, metavar=("REPLICAS", "THREADS", "SEGMENTS"),
                        help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(*args.one)))
        return 0
    cores = len(os.sched_getaffinity(0))
    rows = []
    load_before = os.getloadavg()
    for segments in (int(n) for n in args.segments.split(",")):
        for replicas, threads in _splits(cores):
            done = subprocess.run([sys.executable, "-m", "bench.threads", "--one", str(replicas), str(threads),
                                   str(segments)], cwd=REPO_DIR, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{row['replicas']} x {row['threads']}, {segments} segments: {row['tokens_per_s']:,.1f} tok/s, "
                  f"RSS {row['rss_loaded_mb']:,.0f} MB loaded, {row['peak_rss_mb']:,.0f} MB peak", flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"threads-{stamp}.json"
    document = {"command": "python -m bench.threads " + " ".join(sys.argv[1:] if argv is None else argv),
                "cores": cores, "beam": BEAM, "output_tokens": PEER_OUTPUT_TOKENS,
                "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written {path.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
