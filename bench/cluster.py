"""The bulk CLI on one node, locally and with `--cluster ray`: same corpus, same machine, same cores, one run.

    .venv/bin/python -m bench.cluster [--articles N] [--concurrency N] [--device cpu|cuda] [--threads T] [--rounds 1|2]

Both runs are `newsmt translate CORPUS --out DIR` subprocesses over the benchmark's corpus and random-weight models of
the real opus-mt-ar-en shape (bench/prepare.py: built once, installed as `models pull` leaves them, converted to
CTranslate2), each with a cold cache of its own. The local run gets every core in one engine replica, as the bulk
CLI is meant to run; the Ray run starts a local Ray instance of its own (`--ray-address local`, never joining one
that runs) and gets the same cores: `--concurrency` actors with `T / concurrency` engine threads each, and the
preparing tasks share them. Reported for each: the run's own time (as the CLI prints it: model loads included,
Ray's start-up not) and the wall time of the whole command; then a warm rerun of the Ray run (all cache hits, no
model loaded). Writes bench/results/cluster-<timestamp>-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import FULL, OUTPUT_TOKENS, RESULTS_DIR, TMP_DIR
from .corpus import article_segments, make_articles, write_articles
from .prepare import convert_for_newsmt, install_as_pulled, newsmt_ct2_available, newsmt_values, worker_env

#: The issue's target: the Ray run's throughput on one node at least this share of the local CLI's.
TARGET_RAY_VS_LOCAL = 0.8
_LINE = re.compile(r"translated (\d+)/(\d+) articles in ([\d.]+)s; segments (\d+), cache hits (\d+).*"
                   r"models loaded: (\S+);")


def _run(args: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "service.cli", "translate", *args, "--out", str(out),
                           "--no-progress"], env=env, text=True, capture_output=True, timeout=3600)
    wall = time.perf_counter() - started
    found = _LINE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"newsmt exited {done.returncode}: {done.stdout[-1000:]} {done.stderr[-3000:]}")
    ok, articles, seconds, segments, hits, loaded = found.groups()
    translated = int(segments) - int(hits)
    return {"articles": int(articles), "ok": int(ok), "segments": int(segments), "translated": translated,
            "models_loaded": loaded, "seconds": float(seconds), "wall_s": round(wall, 2),
            "tokens_per_s": round(translated * OUTPUT_TOKENS / float(seconds), 1)}


def _total(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one side added up: throughput over all of them."""
    seconds = sum(r["seconds"] for r in runs)
    translated = sum(r["translated"] for r in runs)
    return {"runs": len(runs), "translated": translated, "seconds": round(seconds, 1),
            "tokens_per_s": round(translated * OUTPUT_TOKENS / seconds, 1)}


def _same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*.en.txt"))
    return names == sorted(p.relative_to(b) for p in b.rglob("*.en.txt")) and \
        all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1, help="inference actors in the Ray run")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores both runs get")
    parser.add_argument("--rounds", type=int, default=2, choices=(1, 2),
                        help="2: local, Ray, Ray, local; 1: local, Ray")
    opts = parser.parse_args(argv)

    work = TMP_DIR / "cluster"
    shutil.rmtree(work, ignore_errors=True)
    articles = make_articles(opts.articles)
    corpus = write_articles(articles, work / "corpus")
    values = newsmt_values(opts.device, opts.threads, FULL, newsmt_ct2_available())
    env = worker_env({f"NEWSMT_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                      for k, v in values.items()})
    install_as_pulled("ar-en")
    if values["backend"] == "ctranslate2":
        convert_for_newsmt("translate:ar-en", values, env)

    per_actor = max(1, opts.threads // opts.concurrency)
    ray_env = {**env, "NEWSMT_THREADS": str(per_actor),
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a local Ray instance on loopback addresses
    ray_args = [str(corpus), "--cluster", "ray", "--ray-address", "local", "--concurrency", str(opts.concurrency),
                "--num-cpus", str(opts.threads / opts.concurrency / 2)]  # half reserved: room for the tasks
    if opts.device == "cuda":
        ray_args += ["--num-gpus", str(1 / opts.concurrency)]
    # Local, Ray, Ray, local (each cold, with a cache of its own): on a shared machine whose load drifts, both
    # sides then see the same drift on average.
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    for i, side in enumerate(("local", "ray", "ray", "local")[:4 if opts.rounds == 2 else 2]):
        cache = {"NEWSMT_CACHE_DIR": str(work / f"cache-{side}-{i}")}
        if side == "local":
            runs[side].append(_run([str(corpus)], {**env, **cache}, work / f"out-local-{i}"))
        else:
            runs[side].append(_run(ray_args, {**ray_env, **cache}, work / f"out-ray-{i}"))
    warm = _run(ray_args, {**ray_env, "NEWSMT_CACHE_DIR": str(work / "cache-ray-1")}, work / "out-ray-warm")
    local, on_ray = (_total(runs[side]) for side in ("local", "ray"))

    ratio = on_ray["tokens_per_s"] / local["tokens_per_s"]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "device": opts.device, "threads": opts.threads,
        "concurrency": opts.concurrency, "corpus_articles": opts.articles,
        "corpus_segments": len(article_segments(articles)), "backend": values["backend"],
        "local_runs": runs["local"], "ray_runs": runs["ray"], "local": local, "ray": on_ray, "ray_warm": warm,
        "ray_vs_local": round(ratio, 3), "load_average": os.getloadavg(),
        "byte_identical": _same_outputs(work / "out-local-0", work / "out-ray-1"),
        "command": " ".join(["python -m bench.cluster", *(argv if argv is not None else sys.argv[1:])]),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"cluster-{stamp}-{opts.device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    verdict = "PASS" if ratio >= TARGET_RAY_VS_LOCAL else "MISS"
    print(f"Ray / local throughput {ratio:.2f}x (target >= {TARGET_RAY_VS_LOCAL}): {verdict}; "
          f"outputs byte-identical: {result['byte_identical']}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
