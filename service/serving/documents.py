"""Translated files waiting for their download: one folder per file under NEWSMT_DOCUMENTS_DIR, deleted on expiry.

LibreTranslate answers `/translate_file` with a URL rather than the file, and clients fetch it afterwards, so the
file has to outlive the request. Each lives in `DIR/<id>/` next to a small `meta.json` (name, media type, expiry);
the id is 128 random bits, so the download URL is the capability to fetch it, as LibreTranslate's is. Expired
folders are removed whenever a file is stored and when the server starts; a request for one answers 404.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from service.errors import NotFound
from service.files import write_atomic

_ID = re.compile(r"^[0-9a-f]{32}$")
_META = "meta.json"


@dataclass(frozen=True)
class StoredDocument:
    id: str
    filename: str
    media_type: str
    expires_at: float

    def path(self, root: Path) -> Path:
        return root / self.id / self.filename


class DocumentStore:
    def __init__(self, root: Path, ttl_seconds: int):
        self.root = root
        self.ttl = ttl_seconds

    def put(self, filename: str, media_type: str, content: bytes) -> StoredDocument:
        """Keep `content` for `ttl` seconds under a new id; expired files go first."""
        self.sweep()
        stored = StoredDocument(secrets.token_hex(16), filename, media_type, time.time() + self.ttl)
        write_atomic(stored.path(self.root), content)
        write_atomic(self.root / stored.id / _META, json.dumps(asdict(stored)))  # last: a folder without it is junk
        return stored

    def get(self, document_id: str) -> StoredDocument:
        """The stored file `document_id` names, if it has not expired."""
        meta = self.root / document_id / _META
        if not _ID.match(document_id) or not meta.is_file():
            raise NotFound("no translated file with that id: it expired or never existed")
        stored = StoredDocument(**json.loads(meta.read_text(encoding="utf-8")))
        if stored.expires_at <= time.time() or not stored.path(self.root).is_file():
            raise NotFound("the translated file has expired; translate the document again")
        return stored

    def sweep(self) -> None:
        """Delete expired files and folders a killed server left without their meta.json."""
        if not self.root.is_dir():
            return
        now = time.time()
        for folder in self.root.iterdir():
            meta = folder / _META
            try:
                expired = json.loads(meta.read_text(encoding="utf-8"))["expires_at"] <= now
            except (OSError, ValueError, KeyError, TypeError):
                expired = folder.stat().st_mtime + self.ttl <= now  # half-written: give it the ttl, then remove it
            if expired:
                shutil.rmtree(folder, ignore_errors=True)
