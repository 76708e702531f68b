"""`python -m bench.run [--quick] [--only NAMES] [--device cpu|cuda]`: build, measure side by side, report.

The runner prepares everything once (untimed), then runs each case in a worker process of its own, prints one table
with the ratios issue 5 asks for, and writes bench/results/<timestamp>-<device>.json (and latest.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import report
from .cases import CASES, Case, select
from .config import (
    ARCHITECTURES,
    BUSY_LOAD_PER_THREAD,
    CASE_TIMEOUT_S,
    CT2_QUANTIZATION,
    FULL,
    LIBRETRANSLATE_VERSION,
    QUICK,
    REPO_DIR,
    TMP_DIR,
    TORCH_DTYPE,
    default_threads,
)
from .measure import Context
from .prepare import prepare, worker_env

log = logging.getLogger("bench")
LOG_TAIL_LINES = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small workloads: a few minutes on 2 cores")
    parser.add_argument("--only", help=f"comma-separated cases (plus what they reuse): {', '.join(CASES)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: transformers float16, CTranslate2 int8_float16")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per engine (default: all usable cores)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the run's scratch folder under results/tmp")
    parser.add_argument("--peer-newsmt-env", action="append", default=[], metavar="NEWSMT_NAME=VALUE",
                        help="a setting for newsmt's side of the LibreTranslate comparison instead of its default "
                             "(repeatable; kept in the results file): to measure an alternative to a default")
    args = parser.parse_args(argv)
    for item in args.peer_newsmt_env:
        if not item.startswith("NEWSMT_") or "=" not in item:
            parser.error(f"--peer-newsmt-env takes NEWSMT_NAME=VALUE, not {item!r}")
    return args


def run_case(case: Case, context_file: Path, ctx: Context) -> dict[str, Any]:
    """One worker process; a crash or timeout becomes a failed row with the end of the worker's log."""
    result_file = ctx.work_dir / f"result-{case.name}.json"
    log_file = ctx.work_dir / f"log-{case.name}.txt"
    started = time.perf_counter()
    with log_file.open("wb") as out:
        # A session of its own, so a timeout can stop the worker and any server it started, and nothing else.
        process = subprocess.Popen([sys.executable, "-m", "bench.worker", case.name, str(context_file),
                                    str(result_file)], cwd=REPO_DIR, env=worker_env(ctx.newsmt_env), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=CASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    wall = round(time.perf_counter() - started, 1)
    if code == 0 and result_file.is_file():
        return {**json.loads(result_file.read_text(encoding="utf-8")), "wall_s": wall}
    tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    reason = f"timed out after {CASE_TIMEOUT_S:.0f}s" if code is None else f"worker exited with {code}"
    last = next((line for line in reversed(tail) if line.strip()), "")
    return {"error": reason, "log_tail": tail, "summary": f"FAILED ({reason}): {last[:100]}", "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cases = select(args.only.split(",") if args.only else None)
    params = QUICK if args.quick else FULL
    threads = args.threads or default_threads()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = TMP_DIR / stamp
    work.mkdir(parents=True)
    started = time.perf_counter()
    machine_before = report.machine(args.device)
    load = machine_before["load_average"]
    if load and load[0] > threads * BUSY_LOAD_PER_THREAD:
        log.warning("warning: load average %.1f before the run, for %d bench threads: other processes compete for "
                    "the cores, so the figures will be noisy and multi-threaded engines will look slower", load[0],
                    threads)
    try:
        peer_settings = dict(item.split("=", 1) for item in args.peer_newsmt_env)
        ctx = prepare(cases, params, args.device, threads, work, peer_settings)
        context_file = work / "context.json"
        ctx.dump(context_file)
        log.warning("prepared in %.0fs; newsmt runs on %s; %d cases", time.perf_counter() - started,
                    ctx.newsmt_backend, len(cases))
        results: report.Results = {}
        for number, case in enumerate(cases, start=1):
            results[case.name] = run_case(case, context_file, ctx)
            log.warning("[%d/%d] %s: %s (%.0fs)", number, len(cases), case.name, results[case.name]["summary"],
                        results[case.name]["wall_s"])
    finally:
        if not args.keep_tmp:
            shutil.rmtree(work, ignore_errors=True)
    fill = {"precision": TORCH_DTYPE[args.device], "ct2": CT2_QUANTIZATION[args.device],
            "libretranslate": LIBRETRANSLATE_VERSION,
            "clients": params.http_clients, "requests": params.concurrent_requests}
    titles = {case.name: (case.issue_item, case.title.format(**fill)) for case in cases}
    targets = report.evaluate(results)
    print(report.render(results, titles, targets))
    document = {
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": stamp,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "params": asdict(params),
        "threads": threads,
        "architectures": {key: asdict(arch) for key, arch in ARCHITECTURES.items()},
        "newsmt": {"backend": ctx.newsmt_backend, "env": ctx.newsmt_env,
                   "peer_env": ctx.peer.get("newsmt_env", {})},
        "cases": {name: {"title": titles[name][1], **result} for name, result in results.items()},
        "targets": targets,
    }
    path = report.write(document, stamp, args.device)
    print(f"\nwritten {path.relative_to(REPO_DIR)} (and {path.with_name('latest.json').relative_to(REPO_DIR)}); "
          f"{document['seconds']:.0f}s in all")
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
