"""Runs one case in a process of its own: `python -m bench.worker CASE CONTEXT.json RESULT.json`.

The process exists only for that case, so `ru_maxrss` at its end is the case's peak RSS and nothing else's.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from .cases import CASES
from .measure import Context, peak_rss_mb


def main(argv: list[str]) -> None:
    case, context_file, result_file = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    outcome = CASES[case].run(Context.load(Path(context_file)))
    if outcome.peak_rss_mb is None and outcome.skipped is None:
        outcome.peak_rss_mb = peak_rss_mb()
    Path(result_file).write_text(json.dumps(asdict(outcome), indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
