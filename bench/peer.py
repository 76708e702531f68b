"""newsmt against LibreTranslate on the very same CTranslate2 weights (issue 14), both over HTTP on loopback.

LibreTranslate is installed into a virtual environment of its own (`bench/.venv-libretranslate`, git-ignored, pinned
version), never into newsmt's. It serves argos packages built here from newsmt's own converted copy of the bench's
random-weight model: `model/` is that directory (linked: the same `model.bin` file), `sentencepiece.model` is the
model's source sentencepiece, and a reverse package (en -> ar) makes two, so LibreTranslate's start-up does not try to
download its package index. One part of it is replaced: argos' MiniSBD sentence splitter, which downloads an ONNX
model at run time, becomes a regex splitter (`bench/peer_site/sitecustomize.py`). The regex is cheaper than the
model it replaces, so this favours LibreTranslate.

Both sides get the same texts (runs of paragraphs of seeds 001-004, see `peer_texts`), the same beam (4: newsmt's
default, argos' default) and the same cap (256 output tokens: CTranslate2's default, which argos does not change;
`NEWSMT_MAX_OUTPUT_TOKENS=256` for newsmt). The random model never ends a sentence early (see README: the
forced-length trick), so every segment decodes to the cap. Output tokens are counted on both sides the same way:
the segments each server decodes (by its own splitter) x the cap, with the responses re-encoded as a check.

Each configuration runs twice, each time on a fresh server with an empty cache: the first run times the start (from
launching the process to the first successful translation, of a text outside the set) and then sends the texts
one by one; the second sends them from 8 concurrent clients, then (where the server caches) keeps the 8 clients
sending the same texts for a fixed time, all cache hits, while the server's own CPU time is read from /proc. The
clients run in the bench worker, a process apart from the server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .config import (
    BENCH_DIR,
    LIBRETRANSLATE_VERSION,
    PEER_CLIENTS,
    PEER_OUTPUT_TOKENS,
    PEER_SEEDS,
    PEER_SENTENCES_PER_TEXT,
    PEER_TEXTS_PER_SEED,
    SERVER_START_TIMEOUT_S,
)
from .http_load import LoadResult, Server, drive, launch, serve, timed_drive
from .measure import Context, Outcome

PEER_VENV = BENCH_DIR / ".venv-libretranslate"
PEER_SITE = BENCH_DIR / "peer_site"
ROUTE = "/translate"  # LibreTranslate's route, and newsmt's LibreTranslate-compatible one
NEWSMT_FACTORY = "service.api.app:create_app"
TEXTS_FILE = "peer-texts.json"
#: LibreTranslate "tuned": the settings an operator would change first (issue 14).
TUNED_ENV = {"ARGOS_INTER_THREADS": "2", "ARGOS_INTRA_THREADS": "1"}
TUNED_FLAGS = ("--translation-cache", "all")


# -- preparing (untimed) -----------------------------------------------------------------------------------------
def ensure_venv() -> Path:
    """The LibreTranslate virtual environment's python, created and installed once (pinned version). Its dependency
    tree (checked with `pip install --dry-run --report`) holds no torch; if a later version pulled one, torch would
    have to be pinned to the local CPU build first, as newsmt's own set-up does."""
    python = PEER_VENV / "bin" / "python"
    marker = PEER_VENV / f"libretranslate-{LIBRETRANSLATE_VERSION}.installed"
    if marker.is_file():
        return python
    shutil.rmtree(PEER_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"libretranslate=={LIBRETRANSLATE_VERSION}"],
                   check=True)
    marker.write_text(LIBRETRANSLATE_VERSION + "\n", encoding="utf-8")
    return python


def build_packages(converted: Path, source_spm: Path, dest: Path) -> Path:
    """Two installed argos packages (ar -> en, and en -> ar so that there are two) over the same converted model.
    Layout and metadata fields as argostranslate's `Package` reads them."""
    shutil.rmtree(dest, ignore_errors=True)
    for from_code, to_code in (("ar", "en"), ("en", "ar")):
        package = dest / f"translate-{from_code}_{to_code}"
        package.mkdir(parents=True)
        (package / "model").symlink_to(converted.resolve(), target_is_directory=True)
        (package / "sentencepiece.model").symlink_to(source_spm.resolve())
        names = {"ar": "Arabic", "en": "English"}
        metadata = {"package_version": "1.0", "argos_version": "1.0", "from_code": from_code,
                    "from_name": names[from_code], "to_code": to_code, "to_name": names[to_code], "links": []}
        (package / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return dest


def peer_texts(path: Path, count: int) -> Path:
    """The workload: `count` texts, two from each of seeds 001-004 in turn, each a run of consecutive paragraphs (as
    newsmt's cleaner leaves them, so neither side sees boilerplate) of at least `PEER_SENTENCES_PER_TEXT` sentences
    by newsmt's splitter, the size of a short news item; plus the sentence after them in seed 001, used only to time
    the start."""
    from service.text.cleaning import clean_document, split_sentences

    from .corpus import SEEDS_DIR

    texts: list[str] = []
    probe = ""
    for prefix in PEER_SEEDS:
        (seed,) = SEEDS_DIR.glob(f"{prefix}_*.txt")
        runs: list[list[str]] = [[]]
        for paragraph in clean_document(seed.read_text(encoding="utf-8")).paragraphs:
            if sum(len(split_sentences(p, "ar")) for p in runs[-1]) >= PEER_SENTENCES_PER_TEXT:
                runs.append([])
            runs[-1].append(paragraph)
        texts.extend("\n\n".join(run) for run in runs[:PEER_TEXTS_PER_SEED])
        probe = probe or split_sentences(runs[PEER_TEXTS_PER_SEED][0], "ar")[0]
    path.write_text(json.dumps({"texts": texts[:count], "probe": probe}, ensure_ascii=False), encoding="utf-8")
    return path


def newsmt_env(models_dir: Path, hf_model: Path) -> dict[str, str]:
    """newsmt at its defaults, on the bench's model as a local directory, capped like argos."""
    return {"NEWSMT_MODELS_DIR": str(models_dir), "NEWSMT_AR_EN_MODEL": str(hf_model),
            "NEWSMT_MAX_OUTPUT_TOKENS": str(PEER_OUTPUT_TOKENS)}


# -- measuring ---------------------------------------------------------------------------------------------------
def _request(text: str) -> bytes:
    return json.dumps({"q": text, "source": "ar", "target": "en"}, ensure_ascii=False).encode()


def newsmt_segments(text: str) -> int:
    """Segments newsmt's pipeline decodes for `text`: its cleaner's paragraphs, split by its sentence splitter."""
    from service.text.cleaning import clean_document, split_sentences

    return sum(len(split_sentences(p, "ar")) for p in clean_document(text).paragraphs)


def libretranslate_segments(text: str) -> int:
    """Segments argos decodes for `text`, by the splitter the bench gives it."""
    sys.path.insert(0, str(PEER_SITE))
    try:
        from peer_split import count_segments
    finally:
        sys.path.remove(str(PEER_SITE))
    return int(count_segments(text))


class TokenCounter:
    """Output tokens of a run: the segments each server decodes (counted by its own splitter, applied here to the
    same texts) x the cap every segment runs to. Also the responses' text re-encoded with the model's target
    sentencepiece, as a check that the outputs are that long; it is only a check, since LibreTranslate re-cases an
    output whose source has a lowercase Latin word (`improve_translation_formatting`), and a lower-cased output
    re-encodes into more pieces than were decoded."""

    def __init__(self, target_spm: Path, segments: Callable[[str], int]):
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(target_spm))
        self._segments = segments

    def __call__(self, texts: list[str], result: LoadResult) -> dict[str, float]:
        decoded = sum(self._segments(texts[i]) for i in result.bodies) * PEER_OUTPUT_TOKENS
        reencoded = sum(len(self._sp.encode(json.loads(body)["translatedText"])) for body in result.bodies.values())
        return {"output_tokens": decoded, "reencoded_tokens": reencoded, "seconds": round(result.seconds, 2),
                "tokens_per_s": round(decoded / result.seconds, 1), "load_average": round(os.getloadavg()[0], 1)}


def _first_translation(server: Server, probe: bytes) -> float:
    """Seconds from launching the server to its first successful translation, polling every 50 ms."""
    deadline = server.started + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}")
        try:
            request = urllib.request.Request(server.url + ROUTE, probe, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=SERVER_START_TIMEOUT_S) as response:
                if "translatedText" not in json.loads(response.read()):
                    raise RuntimeError("the first answer holds no translation")
            return time.monotonic() - server.started
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"the server answered {exc.code}: {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"no translation within {SERVER_START_TIMEOUT_S:.0f}s of launching the server")


Start = Callable[[str], AbstractContextManager[Server]]


def measure(ctx: Context, start: Start, cached: bool, segments: Callable[[str], int]) -> Outcome:
    """The figures of one configuration; `start(name)` launches a fresh server with an empty cache `name`."""
    data = json.loads((ctx.work_dir / TEXTS_FILE).read_text(encoding="utf-8"))
    texts = data["texts"]
    requests, probe = [_request(t) for t in texts], _request(data["probe"])
    count = TokenCounter(Path(ctx.peer["target_spm"]), segments)
    with start("first") as server:
        first_s = _first_translation(server, probe)
        one = drive(server.url, requests, 1, route=ROUTE)
    with start("concurrent") as server:
        _first_translation(server, probe)
        many = drive(server.url, requests, PEER_CLIENTS, route=ROUTE)
        warm: dict[str, float] = {}
        if cached:
            hits, cpu_ms = timed_drive(server, requests, PEER_CLIENTS, ctx.params.http_warm_seconds, route=ROUTE)
            warm = {**hits.summary(), "server_cpu_ms_per_request": cpu_ms}
    metrics: dict[str, Any] = {"texts": len(requests), "first_translation_s": round(first_s, 2),
                               "segments": sum(map(segments, texts)), "one_client": count(texts, one),
                               "concurrent": count(texts, many), "cached": warm}
    summary = (f"first translation {first_s:.1f} s; cold {metrics['one_client']['tokens_per_s']:,.0f} tok/s "
               f"(1 client), {metrics['concurrent']['tokens_per_s']:,.0f} tok/s ({PEER_CLIENTS} clients)")
    if warm:
        summary += (f"; cached {warm['req_per_s']:,.0f} req/s at {warm['server_cpu_ms_per_request']:.2f} ms "
                    "server CPU each")
    notes = [f"peak RSS is the {PEER_CLIENTS}-client server's"]
    return Outcome(metrics, summary, notes, peak_rss_mb=server.peak_rss_mb)


def run_newsmt(ctx: Context) -> Outcome:
    """newsmt at its defaults (`uvicorn service.api.app:create_app`), LibreTranslate-compatible route."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSMT_")}

    def start(name: str) -> AbstractContextManager[Server]:
        env = {**base, **ctx.peer["newsmt_env"], "NEWSMT_CACHE_DIR": str(ctx.work_dir / f"peer-newsmt-{name}")}
        return serve(NEWSMT_FACTORY, env, ctx.work_dir / "server-peer-newsmt.log", ready_path=None)

    return measure(ctx, start, cached=True, segments=newsmt_segments)


def run_libretranslate(ctx: Context, *, tuned: bool) -> Outcome:
    """`libretranslate` as its package installs it (waitress, 4 threads), as shipped or tuned."""
    home = ctx.work_dir / "libretranslate-home"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"),
           "ARGOS_PACKAGES_DIR": ctx.peer["packages"], "PYTHONPATH": str(PEER_SITE),
           **(TUNED_ENV if tuned else {})}
    executable = str(Path(ctx.peer["python"]).with_name("libretranslate"))
    flags = TUNED_FLAGS if tuned else ()
    label = "tuned" if tuned else "shipped"

    def start(name: str) -> AbstractContextManager[Server]:
        return launch(lambda port: [executable, "--host", "127.0.0.1", "--port", str(port), *flags], env,
                      ctx.work_dir / f"server-libretranslate-{label}.log", ready_path=None)

    return measure(ctx, start, cached=tuned, segments=libretranslate_segments)

