"""Model installation and resolution: import for real, pull at the download boundary, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest

from service.config import Settings
from service.engines.manager import ModelManager
from service.errors import ModelLoadError, ModelNotInstalled
from service.store.model_store import MANIFEST, DownloadFailed, ModelStore, fingerprint

REPO_ID = "Helsinki-NLP/opus-mt-tc-big-he-en"


def _bare_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, models_dir=tmp_path / "models", cache_dir=tmp_path / "cache",  # type: ignore[call-arg]
                    **overrides)


def test_default_models_are_not_installed_and_say_how(tmp_path: Path) -> None:
    store = ModelStore(_bare_settings(tmp_path))
    with pytest.raises(ModelNotInstalled, match="newsmt models pull translate:he-en"):
        store.resolve("translate:he-en")
    rows = {r.task: r for r in store.listing()}
    ar = rows["translate:ar-en"]
    assert not ar.installed and "models pull translate:ar-en" in (ar.problem or "")


def test_import_registers_a_directory_and_the_manager_loads_it(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    settings = _bare_settings(tmp_path)
    store = ModelStore(settings)
    found = store.import_dir("translate:he-en", tiny_models["he"])
    assert found.origin == "imported" and found.revision == fingerprint(tiny_models["he"])
    assert store.resolve("translate:he-en").path == tiny_models["he"].resolve()
    assert json.loads((tmp_path / "models" / "imported.json").read_text())["translate:he-en"] == str(
        tiny_models["he"].resolve())
    with ModelManager(settings).lease("translate:he-en") as engine:
        assert engine.generate(["שלום לכולם"], _gen())[0]
    # An explicitly configured model wins over the imported one.
    explicit = _bare_settings(tmp_path, he_en_model=str(tiny_models["ar"]))
    assert ModelStore(explicit).resolve("translate:he-en").origin == "local"


def test_a_model_installed_by_another_process_is_found_by_a_running_manager(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    """A server's manager looks for a missing model again after MISSING_RECHECK_SECONDS, so a model pulled or
    imported from the command line while the server runs is used without a restart."""
    import time

    from service.engines.manager import MISSING_RECHECK_SECONDS

    settings = _bare_settings(tmp_path)
    manager = ModelManager(settings)
    for _ in range(2):  # the second answer comes from the memo, and is the same clear error
        with pytest.raises(ModelNotInstalled, match="newsmt models pull translate:he-en"):
            manager.resolve("translate:he-en")
    ModelStore(settings).import_dir("translate:he-en", tiny_models["he"])  # "another process": its own store
    time.sleep(MISSING_RECHECK_SECONDS + 0.1)
    assert manager.resolve("translate:he-en").path == tiny_models["he"].resolve()


def _gen():  # type: ignore[no-untyped-def]
    from service.engines.base import GenerationSettings

    return GenerationSettings(beam_size=1, max_output_tokens=8, max_input_tokens=64)


def test_fingerprint_follows_file_contents(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["ar"], copy)
    assert fingerprint(copy) == fingerprint(tiny_models["ar"])  # same bytes, same revision
    config = json.loads((copy / "config.json").read_text())
    config["num_beams"] = 3
    (copy / "config.json").write_text(json.dumps(config))
    assert fingerprint(copy) != fingerprint(tiny_models["ar"])


def test_import_rejects_what_is_not_a_model(tmp_path: Path) -> None:
    store = ModelStore(_bare_settings(tmp_path))
    with pytest.raises(ModelLoadError, match="does not exist"):
        store.import_dir("translate:ar-en", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"config\.json is missing"):
        store.import_dir("translate:ar-en", tmp_path / "empty")


def test_broken_weights_are_a_clear_load_error(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["ar"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    manager = ModelManager(_bare_settings(tmp_path, ar_en_model=str(broken), he_en_model=str(tiny_models["he"])))
    with pytest.raises(ModelLoadError, match=r"cannot load model from .*broken"):
        manager.load("translate:ar-en")
    assert manager.load("translate:he-en")["task"] == "translate:he-en"  # the other task still works


class _FakeHub:
    """Stands in for the Hugging Face hub at the network boundary: serves a local directory as a repo."""

    def __init__(self, source: Path, sha: str = "0123456789abcdef0123456789abcdef01234567"):
        self.source, self.sha, self.calls = source, sha, []

    def model_info(self, repo_id: str, revision: str | None = None) -> SimpleNamespace:
        names = [p.name for p in self.source.iterdir()] + ["README.md", "tf_model.h5"]
        return SimpleNamespace(sha=self.sha, siblings=[SimpleNamespace(rfilename=n) for n in names])

    def snapshot_download(self, repo_id: str, *, revision: str, local_dir: Path, allow_patterns: list[str]) -> str:
        import fnmatch

        self.calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for f in self.source.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, Path(local_dir) / f.name)
        return str(local_dir)


def _install_fake_hub(monkeypatch: pytest.MonkeyPatch, hub: _FakeHub) -> None:
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)


def test_pull_downloads_runtime_files_and_pins_the_commit(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = _FakeHub(tiny_models["he"])
    _install_fake_hub(monkeypatch, hub)
    settings = _bare_settings(tmp_path)
    dest = ModelStore(settings).pull("translate:he-en")
    assert dest == tmp_path / "models" / "Helsinki-NLP--opus-mt-tc-big-he-en"
    assert hub.calls[0]["revision"] == hub.sha and "*.safetensors" in hub.calls[0]["allow_patterns"]
    assert not any("bin" in p for p in hub.calls[0]["allow_patterns"])  # safetensors present: no pickles
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["revision"] == hub.sha and manifest["repo_id"] == REPO_ID
    resolved = ModelStore(settings).resolve("translate:he-en")
    assert (resolved.origin, resolved.revision, resolved.model_id) == ("hub", hub.sha, REPO_ID)


def test_pull_converts_legacy_pickle_weights_to_safetensors(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForSeq2SeqLM

    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_models["ar"], legacy)
    model = AutoModelForSeq2SeqLM.from_pretrained(legacy)
    (legacy / "model.safetensors").unlink()
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")  # how pre-2023 OPUS-MT repos ship weights
    assert (legacy / "pytorch_model.bin").exists()
    hub = _FakeHub(legacy)
    _install_fake_hub(monkeypatch, hub)
    settings = _bare_settings(tmp_path)
    dest = ModelStore(settings).pull("translate:ar-en")
    assert (dest / "model.safetensors").exists() and not (dest / "pytorch_model.bin").exists()
    with ModelManager(settings).lease("translate:ar-en") as engine:
        assert engine.generate(["مرحبا بكم"], _gen())[0]


def test_pull_without_hub_access_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed, match="newsmt models import TASK DIR"):
        ModelStore(_bare_settings(tmp_path)).pull("translate:ar-en")
    with pytest.raises(DownloadFailed, match="neither a task"):
        ModelStore(_bare_settings(tmp_path)).pull("../../etc")


def test_fingerprint_is_recorded_beside_the_model_and_read_back_while_files_are_unchanged(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    import os

    from service.store import model_store

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["ar"], copy)
    value = fingerprint(copy)
    record = copy / model_store.FINGERPRINT_RECORD
    assert json.loads(record.read_text())["fingerprint"] == value
    # A new process (no memo) takes the record as it is, without hashing: a doctored value shows it was read.
    model_store._fingerprints.clear()
    doctored = json.loads(record.read_text()) | {"fingerprint": "sha256:from-the-record"}
    record.write_text(json.dumps(doctored))
    assert fingerprint(copy) == "sha256:from-the-record"
    # A weights file touched since (new mtime) is hashed again, and the record follows.
    model_store._fingerprints.clear()
    weights = copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert fingerprint(copy) == value and json.loads(record.read_text())["fingerprint"] == value
    # A record copied along with the files names another directory: ignored.
    moved = tmp_path / "moved"
    shutil.copytree(copy, moved)
    model_store._fingerprints.clear()
    record.write_text(json.dumps(doctored))
    shutil.copy2(record, moved / model_store.FINGERPRINT_RECORD)
    assert fingerprint(moved) == value
