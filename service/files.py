"""Atomic file writes, the one way newsmt replaces a file that someone may be reading: bulk outputs, results.jsonl,
reports, and the model store's registry and manifests.

A temp file in the same folder, fsynced, then renamed over the target: readers (and a rerun after a kill) see the old
file or the new one, never half of either. The temp name is unique (`.NAME.XXXXXXXX.tmp`), so two writers never
share one, and it never looks like the final name, so a kill mid-write leaves no partial output that passes for one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Finished files are ordinary shareable files (mkstemp would leave them 0600).
FILE_MODE = 0o644
TEMP_SUFFIX = ".tmp"
#: `write_atomic`'s temp names: tempfile.mkstemp puts 8 characters of [a-z0-9_] between prefix and suffix.
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def write_atomic(path: Path, content: str | bytes) -> None:
    """Replace `path` with `content` (text as UTF-8; bytes as they are, e.g. a .docx) atomically, creating its
    folder if needed."""
    with open_atomic(path, binary=isinstance(content, bytes)) as fh:
        fh.write(content)


@contextmanager
def open_atomic(path: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """`write_atomic` for a file written piece by piece (results.jsonl, streamed as a bulk run goes): `path` is
    replaced when the block ends, and left as it was if the block raises. Text (UTF-8) unless `binary`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
