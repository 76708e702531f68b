"""Jobs over a real uvicorn: a corpus submitted at once, progress, results.jsonl identical to the bulk CLI's,
cancellation, per-key ownership, and a server SIGKILLed mid-job that resumes with nothing translated twice."""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from service.cli import app as cli
from service.config import Settings
from service.text.cleaning import clean_document, split_sentences
from tests.conftest import SEEDS, LiveServer, env_for, settings_for
from tests.test_reliability_faults import free_port, start_serve, wait_until

#: Fields of a record that say how and when it was made rather than what it says.
RUN_FIELDS = ("elapsed_ms", "cache_hits", "cache_misses", "output")


def arabic_words() -> list[str]:
    words = {w.strip(".,،؛:()\"'") for path in sorted(SEEDS.glob("*.txt"))[1:] for w in path.read_text().split()}
    return sorted(w for w in words if len(w) > 2 and all("\u0600" <= c <= "\u06ff" for c in w))


def corpus(count: int, seed: int) -> list[dict[str, str]]:
    """`count` short Arabic articles of two made-up sentences each: every sentence distinct, so every sentence is a
    cache miss exactly once whichever article it is in."""
    rng, words = random.Random(seed), arabic_words()
    return [{"id": f"n{i:04d}", "text": " ".join(" ".join(rng.sample(words, 7)) + "." for _ in range(2))}
            for i in range(count)]


def jsonl(articles: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles).encode()


def submit(url: str, articles: list[dict[str, str]], key: str | None = None, name: str = "corpus.jsonl") -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{url}/v1/jobs", files={"file": (name, jsonl(articles))}, data={"source": "auto"},
                          headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def job(url: str, job_id: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=30)


def finished(url: str, job_id: str, timeout: float = 120) -> dict:
    wait_until(lambda: job(url, job_id).json()["status"] not in ("queued", "running"), f"job {job_id}", timeout)
    return job(url, job_id).json()


def results(url: str, job_id: str, **params: str) -> list[dict]:
    response = httpx.get(f"{url}/v1/jobs/{job_id}/results", params=params, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def bulk_records(settings: Settings, folder: Path, articles: list[dict[str, str]]) -> list[dict]:
    """`newsmt translate corpus.jsonl` run in `folder` (the current directory), so its source paths read
    `corpus.jsonl:N` as the job's do."""
    (folder / "corpus.jsonl").write_bytes(jsonl(articles))
    run = CliRunner().invoke(cli, ["translate", "corpus.jsonl", "--out", "out"], env=env_for(settings))
    assert run.exit_code == 1, run.output  # the two bad articles
    return [json.loads(line) for line in (folder / "out" / "results.jsonl").read_text().splitlines()]


def without_run_fields(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in RUN_FIELDS} for r in records]


@pytest.fixture(scope="module")
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def test_a_job_of_generated_articles_has_the_bulk_clis_records(server: LiveServer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    articles = corpus(300, seed=1)
    articles[7]["text"] = "   "  # failed articles are records too, as in the bulk CLI
    articles[9]["text"] = "Le ministre a rencontré hier son homologue à Paris pour parler de la région et du monde."
    started = submit(server.url, articles)
    assert started["status"] in ("queued", "running") and started["done"] == 0 and started["total"] == 300
    streamed = results(server.url, started["id"], follow="true")  # held open until the job ends
    status = finished(server.url, started["id"])
    assert (status["status"], status["done"], status["failed"]) == ("done", 300, 2)
    assert status["segments"] == 596 and status["eta_seconds"] is None and status["finished_at"]
    records = results(server.url, started["id"])
    assert records == streamed and [r["id"] for r in records] == [f"corpus/{a['id']}" for a in articles]
    assert sum(r["cache_misses"] for r in records) == 596  # every distinct sentence translated exactly once
    monkeypatch.chdir(tmp_path)
    reference = bulk_records(server.settings, tmp_path, articles)  # the server's settings, cache included
    assert without_run_fields(records) == without_run_fields(reference)
    assert sum(r["cache_misses"] for r in reference) == 0  # the job left every sentence in the shared cache
    assert status["cache_hit_rate"] == 0.0 and status["segments"] == sum(r["segments"] for r in records)


def test_json_jobs_cancel_and_list(server: LiveServer) -> None:
    articles = [{"id": f"x{i}", "text": a["text"]} for i, a in enumerate(corpus(400, seed=2))]
    response = httpx.post(f"{server.url}/v1/jobs", json={"articles": articles, "name": "batch"}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    cancelled = httpx.delete(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()
    assert cancelled["status"] == "cancelled"
    kept = results(server.url, job_id)
    assert len(kept) < 400 and all(r["id"].startswith("x") and r["source_path"].startswith("batch:") for r in kept)
    assert job_id in [j["id"] for j in httpx.get(f"{server.url}/v1/jobs", timeout=30).json()]
    bad = httpx.post(f"{server.url}/v1/jobs", json={"articles": []}, timeout=30)
    assert bad.status_code == 422 and "articles" in bad.json()["error"]["message"]
    dup = httpx.post(f"{server.url}/v1/jobs", json={"articles": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
                     timeout=30)
    assert dup.status_code == 422 and "same article id 'a'" in dup.json()["error"]["message"]
    broken = httpx.post(f"{server.url}/v1/jobs", files={"file": ("c.jsonl", b'{"text": "a"}\nnot json\n')},
                        timeout=30)
    assert broken.status_code == 422 and "c.jsonl:2: expected a JSON object" in broken.json()["error"]["message"]
    wrong = httpx.post(f"{server.url}/v1/jobs", files={"file": ("c.csv", b"text\n")}, timeout=30)
    assert wrong.status_code == 415
    assert httpx.get(f"{server.url}/v1/jobs/{'0' * 32}", timeout=30).status_code == 404


def test_each_key_sees_only_its_own_jobs(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(api_keys="alpha-key,beta-key")
    mine = submit(server.url, corpus(3, seed=3), key="alpha-key")
    assert job(server.url, mine["id"], "alpha-key").status_code == 200
    assert job(server.url, mine["id"], "beta-key").status_code == 404
    listing = httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer beta-key"}, timeout=30)
    assert listing.json() == []
    cancel = httpx.delete(f"{server.url}/v1/jobs/{mine['id']}", headers={"Authorization": "Bearer beta-key"})
    assert cancel.status_code == 404
    assert httpx.get(f"{server.url}/v1/jobs", timeout=30).status_code == 401


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_sigkilled_server_resumes_the_job_and_translates_nothing_twice(tmp_path: Path,
                                                                       tiny_models: dict[str, Path]) -> None:
    settings = settings_for(tmp_path, tiny_models)
    articles = corpus(120, seed=4)
    sentences = sum(len(split_sentences(clean_document(a["text"]).paragraphs[0], "ar")) for a in articles)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_serve(settings, port)
    try:
        job_id = submit(url, articles)["id"]
        wait_until(lambda: job(url, job_id).json()["done"] >= 16, "the job to get going", timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    before = (settings.jobs_dir / job_id / "results.jsonl").read_text().count("\n")
    assert 16 <= before < 120, "the kill came after the job ended: nothing to resume"

    second = start_serve(settings, port)
    try:
        status = finished(url, job_id)
        records = results(url, job_id)
        model_work = metric(url, "newsmt_inference_batch_segments_sum")  # segments the second server translated
    finally:
        second.terminate()
        second.wait(timeout=60)
    assert (status["status"], status["done"], status["failed"]) == ("done", 120, 0)
    assert [r["id"] for r in records] == [f"corpus/{a['id']}" for a in articles]  # each exactly once, in order
    misses = [r["cache_misses"] for r in records]
    # Every sentence is in one article only, so a sentence translated by both servers would count twice here.
    assert sum(misses[:before]) > 0 and sum(misses) <= sentences
    # The second server sent the model only its own records' misses: nothing the first one had stored ...
    assert model_work == sum(misses[before:])
    # ... and resumed rather than started over.
    assert 0 < model_work < sentences
