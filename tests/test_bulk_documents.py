"""The bulk CLI on formatted files: NAME.en.EXT beside NAME.en.txt, and a hostile file recorded as a failed
article while the others complete."""

from __future__ import annotations

import io
from pathlib import Path

import docx
from typer.testing import CliRunner

from service.cli import app as cli
from service.config import Settings
from tests.conftest import env_for
from tests.test_cli import records
from tests.test_http_documents import _xxe, docx_bytes, sentences, word_document


def test_translate_writes_each_format_beside_its_text(settings: Settings, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    original = word_document()
    (inputs / "report.docx").write_bytes(docx_bytes(original))
    lines = sentences("000", 1, 2)
    (inputs / "clip.srt").write_text(f"1\n00:00:01,000 --> 00:00:02,000\n{lines[0]}\n\n"
                                     f"2\n00:00:02,500 --> 00:00:04,000\n{lines[1]}\n", encoding="utf-8")
    (inputs / "page.html").write_text(f"<p>{sentences('002', 1, 1)[0]}</p><p><b>2024</b></p>\n", encoding="utf-8")
    (inputs / "notes.md").write_text(sentences("003", 1, 1)[0], encoding="utf-8")
    (inputs / "hostile.docx").write_bytes(_xxe(docx_bytes(original)))
    run = CliRunner().invoke(cli, ["translate", str(inputs), "--out", str(out)], env=env_for(settings))
    assert run.exit_code == 1, run.output  # the hostile file failed; every other one is written
    results = records(out)
    assert results["hostile"]["status"] == "error" and results["hostile"]["error"]["code"] == "unsafe_document"
    assert not (out / "hostile.en.docx").exists() and not (out / "hostile.en.txt").exists()
    for name, suffix in (("report", ".docx"), ("clip", ".srt"), ("page", ".html"), ("notes", ".md")):
        record = results[name]
        assert record["status"] == "ok" and record["output"] == f"{name}.en.txt", record
        assert (out / f"{name}.en.txt").read_text(encoding="utf-8") == record["translation"] + "\n"
        assert (out / f"{name}{suffix}").exists() is False and (out / f"{name}.en{suffix}").is_file()
    assert results["report"]["detected_language"] == "ar" and results["clip"]["detected_language"] == "he"
    assert results["report"]["segments"] > 6 and results["report"]["cache_misses"] > 0
    written = docx.Document(io.BytesIO((out / "report.en.docx").read_bytes()))
    assert [p.style.name for p in written.paragraphs] == [p.style.name for p in original.paragraphs]
    srt = (out / "clip.en.srt").read_text(encoding="utf-8").split("\n")
    assert srt[:2] == ["1", "00:00:01,000 --> 00:00:02,000"] and srt[4:6] == ["2", "00:00:02,500 --> 00:00:04,000"]
    assert (out / "notes.en.md").read_text(encoding="utf-8") == (out / "notes.en.txt").read_text(encoding="utf-8")
